"""Self-imitation learning (Oh et al. 2018): replay the newest correct episodes of each stage and
raise the log-probability of their actions where they did better than the value predicts.

Config: self_imitation (the loss weight; 0 = off), self_imitation_batch, self_imitation_capacity.
Seam: extra_loss, after the batch's reward (bonuses included) is final. State: the replay buffer.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..a2c import steps_that_count
from ..env import NUM_STAGES
from ..model import Rollout
from .base import Exploration


class SelfImitation(Exploration):
    checkpoint_key = "replay"

    def __init__(self, capacity: int, steps: int, device):
        self.replay = ReplayBuffer(NUM_STAGES, capacity, steps, device)

    @classmethod
    def build(cls, config, env, device):
        return cls(config.self_imitation_capacity, env.max_len, device) if config.self_imitation else None

    def extra_loss(self, run, batch) -> torch.Tensor | None:
        config = run.config  # weights read at each update: a schedule may change them
        self.replay.add(batch.operands, batch.stages, batch.rollout.actions, batch.reward, batch.outcome.correct)
        replayed = self.replay.sample(config.self_imitation_batch, run.generator)
        if replayed is None:  # no correct episode yet
            return None
        operands, stages, actions, reward = replayed
        rollout = batch.policy(run.env.context(operands, stages), stages, actions.shape[1], forced=actions)
        return config.self_imitation * self_imitation_loss(rollout, reward, config.value_coef)

    def state_dict(self) -> dict:
        return self.replay.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.replay.load_state_dict(state)


def self_imitation_loss(rollout: Rollout, reward: torch.Tensor, value_coef: float) -> torch.Tensor:
    """Raise log pi(a) where the episode did better than the value predicts, max(R - V, 0), and
    fit V to that gap."""
    log_probs = F.log_softmax(rollout.logits, -1).gather(-1, rollout.actions.unsqueeze(-1)).squeeze(-1)
    counts = steps_that_count(rollout.actions).to(reward.dtype)
    gap = (reward.unsqueeze(1) - rollout.values).clamp_min(0)
    policy = -(log_probs * gap.detach() * counts).sum(1).mean()
    value = 0.5 * ((gap**2) * counts).sum() / counts.sum()
    return policy + value_coef * value


class ReplayBuffer:
    """The newest correct episodes of each stage (operands, actions, reward). Sampling takes the
    same number from every stage that has some, so the rare successes of the newest stage are
    replayed as often as the common ones of the stages already learnt."""

    def __init__(self, stages: int, capacity: int, steps: int, device):
        self.operands = torch.zeros(stages, capacity, 5, dtype=torch.long, device=device)
        self.actions = torch.zeros(stages, capacity, steps, dtype=torch.long, device=device)
        self.reward = torch.zeros(stages, capacity, device=device)
        self.filled = [0] * stages
        self.next = [0] * stages

    def add(self, operands, stages, actions, reward, keep) -> None:
        capacity = self.reward.shape[1]
        for stage in range(len(self.filled)):
            rows = (keep & (stages == stage)).nonzero().squeeze(1)[-capacity:]
            slots = (self.next[stage] + torch.arange(len(rows), device=rows.device)) % capacity
            self.operands[stage, slots] = operands[rows]
            self.actions[stage, slots] = actions[rows]
            self.reward[stage, slots] = reward[rows].detach()
            self.next[stage] = (self.next[stage] + len(rows)) % capacity
            self.filled[stage] = min(capacity, self.filled[stage] + len(rows))

    def sample(self, count: int, generator):
        stages = [s for s, n in enumerate(self.filled) if n]
        if not stages:
            return None
        per_stage = max(1, count // len(stages))
        picks = [
            (s, torch.randint(0, self.filled[s], (per_stage,), generator=generator, device=generator.device))
            for s in stages
        ]
        stage_ids = torch.cat([torch.full((per_stage,), s, device=self.reward.device) for s, _ in picks])
        return (
            torch.cat([self.operands[s, i] for s, i in picks]),
            stage_ids.long(),
            torch.cat([self.actions[s, i] for s, i in picks]),
            torch.cat([self.reward[s, i] for s, i in picks]),
        )

    def state_dict(self) -> dict:
        return {
            "operands": self.operands,
            "actions": self.actions,
            "reward": self.reward,
            "filled": list(self.filled),
            "next": list(self.next),
        }

    def load_state_dict(self, state: dict) -> None:
        self.operands.copy_(state["operands"])
        self.actions.copy_(state["actions"])
        self.reward.copy_(state["reward"])
        self.filled, self.next = list(state["filled"]), list(state["next"])
