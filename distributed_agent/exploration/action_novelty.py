"""Count-based novelty over the agent's own actions: each episode earns, per step, 1/sqrt(1 + n),
where n is how often the step's cell was seen before; then the batch's cells are counted. A cell is
the stage and what the agent has emitted so far (this step's token included), in one of three
abstractions (config action_novelty_cells):

    prefix  the whole sequence of tokens so far                 (exact history; never saturates)
    set     the step and the set of distinct tokens used so far (order forgotten)
    last    the step and this step's token                      (a count per action and step)

Unlike novelty.py it reads nothing of the environment's machine, only what the agent itself
emitted (and so observes: each token is fed back in) and the stage its context shows. Cells are
hashed into a fixed table (modulo a prime, ~1M cells, 8 MB): two may share a cell, rarely while the
agent tries few programs. Steps after the episode's last token (ANS, or an ending invalid token)
do not count.
Config: action_novelty_bonus (its weight; 0 = off), action_novelty_cells. Seam: reward_bonus.
State: the counts.
"""

from __future__ import annotations

import torch

from ..env import VOCAB_SIZE
from .novelty import CountBonus

CELLS = 1_048_573  # a prime: the hash spreads codes over every cell


class ActionNovelty(CountBonus):
    checkpoint_key = "action_visits"
    weight_field = "action_novelty_bonus"

    def __init__(self, abstraction: str, device):
        super().__init__(CELLS, device)
        self.abstraction = abstraction

    @classmethod
    def build(cls, config, env, device):
        return cls(config.action_novelty_cells, device) if config.action_novelty_bonus else None

    def cells(self, batch) -> tuple[torch.Tensor, torch.Tensor]:
        actions, stages = batch.rollout.actions, batch.stages
        if self.abstraction == "prefix":
            # code(stage, a_1..a_t) = code(stage, a_1..a_t-1) * (V + 1) + a_t + 1, from stage + 1:
            # digits never 0, so prefixes of different lengths or stages differ before the modulus.
            codes, code = [], stages + 1
            for token in actions.unbind(1):
                code = (code * (VOCAB_SIZE + 1) + token + 1) % CELLS
                codes.append(code)
            cells = torch.stack(codes, 1)
        else:
            steps = torch.arange(actions.shape[1], device=actions.device)
            stage_steps = stages.unsqueeze(1) * actions.shape[1] + steps
            if self.abstraction == "set":
                used = _running_or(torch.ones_like(actions) << actions)
                cells = (stage_steps * (1 << VOCAB_SIZE) + used) % CELLS
            else:  # last
                cells = stage_steps * VOCAB_SIZE + actions
        return cells, batch.outcome.steps_used(actions.shape[1])

    def state_dict(self) -> dict:
        visited = self.visits.nonzero().squeeze(1)  # a few thousand cells of the million: kept sparse
        return {"cells": visited, "visits": self.visits[visited]}

    def load_state_dict(self, state: dict) -> None:
        self.visits.zero_()
        self.visits[state["cells"]] = state["visits"]


def _running_or(bits: torch.Tensor) -> torch.Tensor:
    """LongTensor[B, T]: the bitwise OR of bits[:, :t + 1] at every t."""
    out = bits.clone()
    for t in range(1, bits.shape[1]):
        out[:, t] |= out[:, t - 1]
    return out
