"""Random network distillation (Burda et al. 2019) on the agent's own states: each episode earns,
per step, how badly a trained predictor matches a fixed random network at the state the agent
reached, in units of the error on the first batch; then the predictor learns that batch.

The states (config rnd_states) are either the agent's GRU hidden states, which summarise what it
saw (its context, operands included) and did (its tokens so far) and move as it learns, or those of
a fixed random GRU over the stage and the tokens emitted so far (`HistoryEmbedding`): the action
history alone, embedded the same way all run long. States seen often are predicted well and earn
little; nothing of the environment's machine is read. Unlike counts of action sequences
(action_novelty.py), the predictor generalises between similar states, and the bonus fades in
absolute terms as it learns (it is not renormalised).
Both networks are small MLPs (d -> 64 -> 32; the predictor one layer deeper), drawn from their own
generator (the run's seed), trained by Adam (lr 1e-3) on the states of the steps that count
(up to the episode's last token), never sending gradient into the agent.
Config: rnd_bonus (its weight; 0 = off), rnd_states. Seam: reward_bonus. State: the networks, Adam,
the scale.
"""

from __future__ import annotations

import torch

from ..env import NUM_STAGES, VOCAB_SIZE
from .base import Exploration

WIDTH, OUTPUT, LR = 64, 32, 1e-3
SEED_OFFSET = 7919  # the networks' generator: the run's seed plus this, apart from the run's own streams


class RandomNetworkDistillation(Exploration):
    checkpoint_key = "rnd"

    def __init__(self, hidden_size: int, seed: int, device, states: str = "agent"):
        generator = torch.Generator().manual_seed(seed + SEED_OFFSET)

        def layer(inputs, outputs):
            return [_uniform(generator, device, inputs, outputs, inputs), _uniform(generator, device, inputs, outputs)]

        self.target = layer(hidden_size, WIDTH) + layer(WIDTH, OUTPUT)
        self.predictor = [
            p.requires_grad_() for p in layer(hidden_size, WIDTH) + layer(WIDTH, WIDTH) + layer(WIDTH, OUTPUT)
        ]
        self.optimizer = torch.optim.Adam(self.predictor, lr=LR)
        self.scale = torch.zeros((), dtype=torch.float64, device=device)  # the first batch's mean error
        # Drawn after the networks, so that rnd_states: agent keeps the numbers it had before this option.
        self.history = HistoryEmbedding(hidden_size, generator, device) if states == "history" else None

    @classmethod
    def build(cls, config, env, device):
        return cls(config.hidden_size, config.seed, device, config.rnd_states) if config.rnd_bonus else None

    def states(self, batch) -> torch.Tensor:
        """[B, T, d]: the states the networks read at each step (config rnd_states)."""
        if self.history is None:
            return batch.rollout.hiddens.detach()
        return self.history(batch.stages, batch.rollout.actions)

    def errors(self, states: torch.Tensor) -> torch.Tensor:
        """[...]: the predictor's squared error, averaged over outputs, at states [..., d]."""
        return (_mlp(self.predictor, states) - _mlp(self.target, states).detach()).pow(2).mean(-1)

    def reward_bonus(self, run, batch) -> torch.Tensor:
        states = self.states(batch)
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
        } | ({} if self.history is None else {"history": self.history.tensors})

    def load_state_dict(self, state: dict) -> None:
        for mine, saved in zip(self.target, state["target"]):
            mine.copy_(saved)
        with torch.no_grad():
            for mine, saved in zip(self.predictor, state["predictor"]):
                mine.copy_(saved)
        self.optimizer.load_state_dict(state["optimizer"])
        self.scale.copy_(state["scale"])
        if self.history is not None:
            for mine, saved in zip(self.history.tensors, state["history"]):
                mine.copy_(saved)


class HistoryEmbedding:
    """A fixed random GRU over an episode's stage and the tokens it emitted: [B, T, d] states, the
    one at step t a function of (stage, tokens 1..t) alone. Embeddings are N(0, 1), the cell's
    weights nn.GRUCell's default range; nothing here learns."""

    def __init__(self, size: int, generator: torch.Generator, device):
        self.tokens = torch.randn(VOCAB_SIZE, size, generator=generator).to(device)
        self.stages = torch.randn(NUM_STAGES, size, generator=generator).to(device)
        weights, biases = (3 * size, size), (3 * size,)
        # w_ih, w_hh, b_ih, b_hh: torch.gru_cell's arguments after the input and the state.
        self.cell = [_uniform(generator, device, size, *shape) for shape in (weights, weights, biases, biases)]

    @property
    def tensors(self) -> list[torch.Tensor]:
        return [self.tokens, self.stages, *self.cell]

    def __call__(self, stages: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        hidden, states = torch.tanh(self.stages[stages]), []
        for tokens in actions.unbind(1):
            hidden = torch.gru_cell(self.tokens[tokens], hidden, *self.cell)
            states.append(hidden)
        return torch.stack(states, 1)


def _uniform(generator: torch.Generator, device, fan_in: int, *shape: int) -> torch.Tensor:
    """U(-1/sqrt(fan_in), 1/sqrt(fan_in)) of the given shape: nn.Linear's and nn.GRUCell's default range."""
    return ((torch.rand(*shape, generator=generator) * 2 - 1) * fan_in**-0.5).to(device)


def _mlp(layers: list[torch.Tensor], states: torch.Tensor) -> torch.Tensor:
    """ReLU between affine layers given as [weight, bias, weight, bias, ...]."""
    for i in range(0, len(layers), 2):
        states = torch.nn.functional.linear(states, layers[i], layers[i + 1])
        if i + 2 < len(layers):
            states = states.relu()
    return states
