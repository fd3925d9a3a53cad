"""Exploration methods, one module each, joined to the update (update.py) at one seam each.

A method is a class with `build(config, env, device)`, which returns None when the config leaves
it off, and the hooks it needs of `Exploration` (base.py); the update calls each hook once per update:

    forced_tokens  tokens drawn outside the policy, before the rollout   (epsilon.py)
    reward_bonus   a per-episode bonus added to the reward               (novelty.py, action_novelty.py, rnd.py)
    extra_loss     a term added to the A2C loss                          (self_imitation.py)

What a method must carry across a checkpoint it returns from `state_dict` (saved under its
`checkpoint_key`). A new method is one module here plus its config fields (config.py), and one
entry in METHODS.
"""

from __future__ import annotations

from . import action_novelty, epsilon, novelty, rnd, self_imitation
from .base import Exploration

__all__ = ["Exploration", "METHODS", "build_methods"]

METHODS = (
    epsilon.EpsilonExploration,
    novelty.NoveltyBonus,
    action_novelty.ActionNovelty,
    rnd.RandomNetworkDistillation,
    self_imitation.SelfImitation,
)


def build_methods(config, env, device) -> list[Exploration]:
    """The methods this config switches on, in the fixed order of METHODS."""
    return [method for cls in METHODS if (method := cls.build(config, env, device)) is not None]
