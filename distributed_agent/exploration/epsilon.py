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
    def __init__(self, epsilon: float, decay_episodes: int | None):
        self.epsilon, self.decay_episodes = epsilon, decay_episodes

    @classmethod
    def build(cls, config, env, device):
        return cls(config.explore_epsilon, config.explore_decay_episodes) if config.explore_epsilon > 0 else None

    def current(self, episodes: int) -> float:
        if self.decay_episodes is None:
            return self.epsilon
        return self.epsilon * max(0.0, 1 - episodes / self.decay_episodes)

    def forced_tokens(self, run, steps: int, batch: int) -> torch.Tensor | None:
        epsilon = self.current(run.episodes)
        if epsilon <= 0:
            return None
        device = run.generator.device
        allowed = torch.arange(VOCAB_SIZE, device=device)
        allowed = allowed if run.action_mask is None else allowed[run.action_mask]
        explore = torch.rand((steps, batch), generator=run.generator, device=device) < epsilon
        pick = torch.randint(0, len(allowed), (steps, batch), generator=run.generator, device=device)
        return torch.where(explore, allowed[pick], -1).t()
