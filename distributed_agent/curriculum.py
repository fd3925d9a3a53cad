"""Curricula: which stage each episode of a training batch comes from.

one_stage: the tutorial's fixed list, one stage per batch: update u (1-based) trains stage
          TUTORIAL_SCHEDULE[min((u-1)//10, 5)], so after update 50 only stage 2 is trained.
mixed:    stages unlock on that same schedule, but every batch mixes all stages unlocked so far
          in equal shares, so earlier stages keep being replayed.
mastery:  the next stage unlocks when greedy success on the newest one reaches the threshold;
          every batch mixes all unlocked stages in equal shares.
"""

from __future__ import annotations

import torch

from .env import NUM_STAGES

TUTORIAL_SCHEDULE = (0, 0, 0, 1, 1, 2)
UPDATES_PER_SCHEDULE_ENTRY = 10


def tutorial_stage(update: int) -> int:
    return TUTORIAL_SCHEDULE[min((update - 1) // UPDATES_PER_SCHEDULE_ENTRY, len(TUTORIAL_SCHEDULE) - 1)]


class Curriculum:
    """`kind` is one of config.CURRICULA (checked there)."""

    def __init__(self, kind: str, threshold: float = 0.95, num_stages: int = NUM_STAGES):
        self.kind = kind
        self.threshold = threshold
        self.num_stages = num_stages
        self.unlocked = 1  # mastery only: stages 0..unlocked-1 are trained
        self.unlocked_at_episode = [0]  # mastery only: episodes trained when each stage unlocked

    def batch_stages(self, update: int, batch_size: int, device=None) -> torch.Tensor:
        """LongTensor[B] of the stage of each episode in the batch of `update` (1-based)."""
        if self.kind == "one_stage":
            return torch.full((batch_size,), tutorial_stage(update), dtype=torch.long, device=device)
        available = tutorial_stage(update) + 1 if self.kind == "mixed" else self.unlocked
        # Contiguous, equal (within one) blocks: deterministic and without sampling noise.
        return torch.arange(batch_size, device=device) * available // batch_size

    def observe(self, success_by_stage: list[float], episodes: int) -> None:
        """Called after each greedy evaluation; unlocks the next stage once the newest is mastered."""
        if self.kind != "mastery" or self.unlocked >= self.num_stages:
            return
        if success_by_stage[self.unlocked - 1] >= self.threshold:
            self.unlocked += 1
            self.unlocked_at_episode.append(episodes)

    def newest_stage(self, update: int) -> int:
        return self.unlocked - 1 if self.kind == "mastery" else tutorial_stage(update)

    def state_dict(self) -> dict:
        return {"unlocked": self.unlocked, "unlocked_at_episode": list(self.unlocked_at_episode)}

    def load_state_dict(self, state: dict) -> None:
        self.unlocked = int(state["unlocked"])
        self.unlocked_at_episode = list(state["unlocked_at_episode"])
