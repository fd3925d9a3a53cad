"""Random network distillation (Burda et al. 2019) on the agent's own GRU states: each episode
earns, per step, how badly a trained predictor matches a fixed random network at the hidden state
the agent reached, in units of the error on the first batch; then the predictor learns that batch.

The hidden state summarises what the agent saw (its context) and did (its tokens so far), so states
it has been in often are predicted well and earn little; nothing of the environment's machine is
read. Unlike counts of action sequences (action_novelty.py), the predictor generalises between
similar states, and the bonus fades in absolute terms as it learns (it is not renormalised).
Both networks are small MLPs (d -> 64 -> 32; the predictor one layer deeper), drawn from their own
generator (the run's seed), trained by Adam (lr 1e-3) on the states of the steps that count
(up to the episode's last token), never sending gradient into the agent.
Config: rnd_bonus (its weight; 0 = off). Seam: reward_bonus. State: both networks, Adam, the scale.
"""

from __future__ import annotations

import torch

from .base import Exploration

WIDTH, OUTPUT, LR = 64, 32, 1e-3
SEED_OFFSET = 7919  # the networks' generator: the run's seed plus this, apart from the run's own streams


class RandomNetworkDistillation(Exploration):
    checkpoint_key = "rnd"

    def __init__(self, hidden_size: int, seed: int, device):
        generator = torch.Generator().manual_seed(seed + SEED_OFFSET)

        def layer(inputs, outputs):
            bound = inputs**-0.5  # nn.Linear's default range
            weight = (torch.rand(outputs, inputs, generator=generator) * 2 - 1) * bound
            bias = (torch.rand(outputs, generator=generator) * 2 - 1) * bound
            return [weight.to(device), bias.to(device)]

        self.target = layer(hidden_size, WIDTH) + layer(WIDTH, OUTPUT)
        self.predictor = [
            p.requires_grad_() for p in layer(hidden_size, WIDTH) + layer(WIDTH, WIDTH) + layer(WIDTH, OUTPUT)
        ]
        self.optimizer = torch.optim.Adam(self.predictor, lr=LR)
        self.scale = torch.zeros((), dtype=torch.float64, device=device)  # the first batch's mean error

    @classmethod
    def build(cls, config, env, device):
        return cls(config.hidden_size, config.seed, device) if config.rnd_bonus else None

    def errors(self, states: torch.Tensor) -> torch.Tensor:
        """[...]: the predictor's squared error, averaged over outputs, at states [..., d]."""
        return (_mlp(self.predictor, states) - _mlp(self.target, states).detach()).pow(2).mean(-1)

    def reward_bonus(self, run, batch) -> torch.Tensor:
        states = batch.rollout.hiddens.detach()
        counted = batch.outcome.steps_used(states.shape[1])
        errors = self.errors(states)
        loss = errors[counted].mean()
        if self.scale == 0:
            self.scale.fill_(loss.item())
        bonus = (errors.detach() / self.scale.float() * counted).sum(1)
        self.optimizer.zero_grad()
        loss.backward()
        self.optimizer.step()
        return run.config.rnd_bonus * bonus  # the weight read at each update: a schedule may change it

    def state_dict(self) -> dict:
        return {
            "target": self.target,
            "predictor": [p.detach() for p in self.predictor],
            "optimizer": self.optimizer.state_dict(),
            "scale": self.scale,
        }

    def load_state_dict(self, state: dict) -> None:
        for mine, saved in zip(self.target, state["target"]):
            mine.copy_(saved)
        with torch.no_grad():
            for mine, saved in zip(self.predictor, state["predictor"]):
                mine.copy_(saved)
        self.optimizer.load_state_dict(state["optimizer"])
        self.scale.copy_(state["scale"])


def _mlp(layers: list[torch.Tensor], states: torch.Tensor) -> torch.Tensor:
    """ReLU between affine layers given as [weight, bias, weight, bias, ...]."""
    for i in range(0, len(layers), 2):
        states = torch.nn.functional.linear(states, layers[i], layers[i + 1])
        if i + 2 < len(layers):
            states = states.relu()
    return states
