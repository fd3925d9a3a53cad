"""Advantage actor-critic losses for one batch of token programs with a single terminal reward.

loss="summed_baseline" is the tutorial's loss exactly: every emitted token counts (also after ANS), the
baseline is the *sum* of the per-step values, and the value loss fits that sum to the reward.
loss="masked" is the corrected one: tokens after ANS get no credit, entropy or value; each step
has its own baseline V(s_t) of the (undiscounted, terminal) reward; advantages optionally
normalised over the batch.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .config import LOSSES
from .env import ANS
from .model import Rollout


@dataclass
class LossTerms:
    total: torch.Tensor  # [K], one per member
    policy: torch.Tensor
    value: torch.Tensor
    entropy: torch.Tensor  # mean entropy of the steps that count (a positive number)


def steps_that_count(actions: torch.Tensor) -> torch.Tensor:
    """BoolTensor[..., B, T]: True up to and including the first ANS of each episode."""
    answered_before = torch.cumsum((actions == ANS).long(), -1) - (actions == ANS).long()
    return answered_before == 0


def a2c_loss(
    rollout: Rollout,
    reward: torch.Tensor,
    *,
    loss: str,
    entropy_coef: float | torch.Tensor,
    value_coef: float,
    normalize_advantage: bool = False,
) -> LossTerms:
    """The loss of each member of a population: rollout [K, B, ...], reward [K, B] -> terms [K].

    entropy_coef: one number, or one per episode ([K, B]). Every mean is taken per member, over
    its own batch, so a member's loss is the loss of the same batch trained alone.
    """
    per_episode_coef = torch.as_tensor(entropy_coef, dtype=reward.dtype, device=reward.device).expand(reward.shape)
    log_probs_all = F.log_softmax(rollout.logits, -1)
    log_probs = log_probs_all.gather(-1, rollout.actions.unsqueeze(-1)).squeeze(-1)  # [K, B, T]
    probs = log_probs_all.exp()
    if loss == "summed_baseline":
        # The tutorial's entropy is -(p * log(p + 1e-9)), which is kept to reproduce it exactly.
        entropy = -(probs * torch.log(probs + 1e-9)).sum(-1)
        value_sum = rollout.values.sum(-1)
        advantage = (reward - value_sum).detach()
        policy_loss = -(log_probs.sum(-1) * advantage).mean(-1)
        # F.mse_loss per member: its backward rounds as the tutorial's did; a mean of squares does not.
        value_loss = torch.stack([F.mse_loss(v, r) for v, r in zip(value_sum, reward)])
        mean_entropy = entropy.mean((-2, -1))
        entropy_term = (per_episode_coef.unsqueeze(-1) * entropy).mean((-2, -1))
    elif loss == "masked":
        # Tokens removed by an action mask have log-prob -inf; clamping keeps 0 * log 0 = 0 and its
        # gradient finite.
        entropy = -(probs * log_probs_all.clamp_min(torch.finfo(probs.dtype).min)).sum(-1)
        counts = steps_that_count(rollout.actions).to(reward.dtype)
        n_counted = counts.sum((-2, -1))

        def counted_mean(per_step):  # [K, B, T] -> [K]: the mean over each member's counted steps
            return (per_step * counts).sum((-2, -1)) / n_counted

        advantage = (reward.unsqueeze(-1) - rollout.values).detach()
        if normalize_advantage:
            mean = counted_mean(advantage)[:, None, None]
            std = counted_mean((advantage - mean) ** 2).sqrt()[:, None, None]
            advantage = (advantage - mean) / (std + 1e-8)
        policy_loss = -(log_probs * advantage * counts).sum(-1).mean(-1)
        value_loss = counted_mean((rollout.values - reward.unsqueeze(-1)) ** 2)
        mean_entropy = counted_mean(entropy)
        entropy_term = counted_mean(per_episode_coef.unsqueeze(-1) * entropy)
    else:
        raise ValueError(f"loss must be one of {list(LOSSES)}, got {loss!r}")
    total = policy_loss + value_coef * value_loss - entropy_term
    return LossTerms(total, policy_loss, value_loss, mean_entropy)
