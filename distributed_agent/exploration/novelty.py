"""Count-based novelty bonus: each episode earns, per step, 1/sqrt(1 + n), where n is how often
its (stage, step, machine state) was seen before; then the batch's visits are counted.

The machine states (env.py, declared variant) say which registers are in use and how many
operands were read, not their values, so the bonus knows nothing of any task's solution.
Config: novelty_bonus (its weight; 0 = off). Seam: reward_bonus. State: the visit counts.
`CountBonus` is the counting itself, shared with action_novelty.py (counts of other cells).
"""

from __future__ import annotations

import torch

from ..env import MACHINE_STATES, NUM_STAGES
from .base import Exploration


class CountBonus(Exploration):
    """weight * sum over an episode's counted steps of 1/sqrt(1 + visits of the step's cell)."""

    checkpoint_key = "state_visits"
    weight_field = "novelty_bonus"

    def __init__(self, cells: int, device):
        self.visits = torch.zeros(cells, dtype=torch.float64, device=device)

    def cells(self, batch) -> tuple[torch.Tensor, torch.Tensor]:
        """(LongTensor[B, T] the cell of each step, BoolTensor[B, T] the steps that count)."""
        raise NotImplementedError

    def reward_bonus(self, run, batch) -> torch.Tensor:
        cells, counted = self.cells(batch)
        bonus = (self.visits[cells] + 1).rsqrt() * counted
        self.visits.index_add_(0, cells[counted], torch.ones_like(cells[counted], dtype=torch.float64))
        return getattr(run.config, self.weight_field) * bonus.sum(1).float()  # read at each update: schedules

    def state_dict(self) -> torch.Tensor:
        return self.visits

    def load_state_dict(self, state: torch.Tensor) -> None:
        self.visits.copy_(state)


class NoveltyBonus(CountBonus):
    def __init__(self, steps: int, device):
        super().__init__(NUM_STAGES * steps * MACHINE_STATES, device)

    @classmethod
    def build(cls, config, env, device):
        return cls(env.max_len, device) if config.novelty_bonus else None

    def cells(self, batch) -> tuple[torch.Tensor, torch.Tensor]:
        machine_states, stages = batch.outcome.machine_states, batch.stages
        steps = machine_states.shape[1]
        step_cells = stages.unsqueeze(1) * steps + torch.arange(steps, device=stages.device)
        return step_cells * MACHINE_STATES + machine_states.clamp_min(0), machine_states >= 0
