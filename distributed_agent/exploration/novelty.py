"""Count-based novelty bonus: each episode earns, per step, 1/sqrt(1 + n), where n is how often
its (stage, step, machine state) was seen before; then the batch's visits are counted.

The machine states (env.py, declared variant) say which registers are in use and how many
operands were read, not their values, so the bonus knows nothing of any task's solution.
Config: novelty_bonus (its weight; 0 = off). Seam: reward_bonus. State: the visit counts.
"""

from __future__ import annotations

import torch

from ..env import MACHINE_STATES, NUM_STAGES
from .base import Exploration


class NoveltyBonus(Exploration):
    checkpoint_key = "state_visits"

    def __init__(self, steps: int, device):
        self.visits = torch.zeros(NUM_STAGES * steps * MACHINE_STATES, dtype=torch.float64, device=device)

    @classmethod
    def build(cls, config, env, device):
        return cls(env.max_len, device) if config.novelty_bonus else None

    def reward_bonus(self, run, batch) -> torch.Tensor:
        machine_states, stages = batch.outcome.machine_states, batch.stages
        steps = machine_states.shape[1]
        visited = machine_states >= 0
        cells = (
            stages.unsqueeze(1) * steps + torch.arange(steps, device=stages.device)
        ) * MACHINE_STATES + machine_states.clamp_min(0)
        bonus = (self.visits[cells] + 1).rsqrt() * visited
        self.visits.index_add_(0, cells[visited], torch.ones_like(cells[visited], dtype=torch.float64))
        return run.config.novelty_bonus * bonus.sum(1).float()

    def state_dict(self) -> torch.Tensor:
        return self.visits

    def load_state_dict(self, state: torch.Tensor) -> None:
        self.visits.copy_(state)
