"""The interface of an exploration method (see exploration/__init__.py)."""

from __future__ import annotations

import torch


class Exploration:
    checkpoint_key: str | None = None  # where a checkpoint keeps state_dict(); None: no state

    def forced_tokens(self, run, steps: int, batch: int) -> torch.Tensor | None:
        """LongTensor[B, T]: a token that replaces the policy's where >= 0 (None: none)."""
        return None

    def reward_bonus(self, run, batch) -> torch.Tensor | None:
        """FloatTensor[B] added to the batch's reward (None: nothing)."""
        return None

    def extra_loss(self, run, batch) -> torch.Tensor | None:
        """A scalar added to the loss, after the batch's reward is final (None: nothing)."""
        return None

    def state_dict(self) -> dict | torch.Tensor | None:
        return None

    def load_state_dict(self, state) -> None:
        pass
