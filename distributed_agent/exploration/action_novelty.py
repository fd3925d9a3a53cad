"""Count-based novelty over the agent's own actions: each episode earns, per step, 1/sqrt(1 + n),
where n is how often its stage and its prefix of actions so far (this step's token included) were
seen before; then the batch's prefixes are counted.

Unlike novelty.py it reads nothing of the environment's machine, only what the agent itself
emitted (and so observes: each token is fed back in) and the stage its context shows. Prefixes
are hashed into a fixed table (a rolling hash modulo a prime, ~1M cells, 8 MB): two prefixes may
share a cell, rarely while the agent tries few programs. Steps after the episode's last token
(ANS, or an ending invalid token) do not count.
Config: action_novelty_bonus (its weight; 0 = off). Seam: reward_bonus. State: the prefix counts.
"""

from __future__ import annotations

import torch

from ..env import VOCAB_SIZE
from .novelty import CountBonus

CELLS = 1_048_573  # a prime: the rolling hash spreads prefixes over every cell


class ActionNovelty(CountBonus):
    checkpoint_key = "prefix_visits"
    weight_field = "action_novelty_bonus"

    @classmethod
    def build(cls, config, env, device):
        return cls(CELLS, device) if config.action_novelty_bonus else None

    def cells(self, batch) -> tuple[torch.Tensor, torch.Tensor]:
        actions, stages = batch.rollout.actions, batch.stages
        # code(stage, a_1..a_t) = (code(stage, a_1..a_t-1) * (V + 1) + a_t + 1) mod CELLS, from stage + 1:
        # digits never 0, so prefixes of different lengths or stages differ before the modulus.
        codes, code = [], stages + 1
        for token in actions.unbind(1):
            code = (code * (VOCAB_SIZE + 1) + token + 1) % CELLS
            codes.append(code)
        steps = torch.arange(actions.shape[1], device=actions.device)
        return torch.stack(codes, 1), steps < batch.outcome.length.unsqueeze(1)

    def state_dict(self) -> dict:
        visited = self.visits.nonzero().squeeze(1)  # a few thousand cells of the million: kept sparse
        return {"cells": visited, "visits": self.visits[visited]}

    def load_state_dict(self, state: dict) -> None:
        self.visits.zero_()
        self.visits[state["cells"]] = state["visits"]
