"""Epsilon exploration: each training token is, with probability epsilon, drawn uniformly from the
allowed tokens instead of from the policy. It reaches tokens the policy has nearly stopped
sampling; the loss still treats them as the policy's own, as epsilon-greedy methods do.

Config: explore_epsilon (0 = off), explore_decay_episodes (linear decay to 0; null = constant).
Seam: forced_tokens, drawn after the rollout's sampling noise.
"""

from __future__ import annotations

import torch

from ..env import VOCAB_SIZE
from .base import Exploration


class EpsilonExploration(Exploration):
    @classmethod
    def build(cls, config, env, device):
        return cls() if config.explore_epsilon > 0 else None

    @staticmethod
    def current(config, episodes: int) -> float:
        """epsilon after `episodes` (read from the run's config, which a schedule may change)."""
        if config.explore_decay_episodes is None:
            return config.explore_epsilon
        return config.explore_epsilon * max(0.0, 1 - episodes / config.explore_decay_episodes)

    def forced_tokens(self, run, steps: int, batch: int) -> torch.Tensor | None:
        epsilon = self.current(run.config, run.episodes)
        if epsilon <= 0:
            return None
        device = run.generator.device
        allowed = torch.arange(VOCAB_SIZE, device=device)
        allowed = allowed if run.action_mask is None else allowed[run.action_mask]
        explore = torch.rand((steps, batch), generator=run.generator, device=device) < epsilon
        pick = torch.randint(0, len(allowed), (steps, batch), generator=run.generator, device=device)
        return torch.where(explore, allowed[pick], -1).t()
