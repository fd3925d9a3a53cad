"""The stage-aware GRU actor-critic that writes a program of tool tokens, one token per step."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn

from .env import CTX, EOS, NUM_STAGES, VOCAB_SIZE

INITS = ("episode", "tutorial")


@dataclass
class Rollout:
    actions: torch.Tensor  # LongTensor[B, T]
    logits: torch.Tensor   # FloatTensor[B, T, V], after the action mask
    values: torch.Tensor   # FloatTensor[B, T]


class ActorCritic(nn.Module):
    """Token and stage embeddings, one GRU layer, a policy head and a value head.

    init="tutorial" reproduces the tutorial's initial state, which (by a broadcasting slip) starts
    every episode from the *batch-average* context embedding plus its own stage embedding.
    init="episode" starts each episode from its own context (mean over its non-padding tokens).
    """

    def __init__(self, hidden_size: int = 96, init: str = "episode", num_stages: int = NUM_STAGES,
                 vocab_size: int = VOCAB_SIZE):
        super().__init__()
        if init not in INITS:
            raise ValueError(f"init must be one of {list(INITS)}, got {init!r}")
        self.init = init
        self.token_embedding = nn.Embedding(vocab_size, hidden_size)
        self.stage_embedding = nn.Embedding(num_stages, hidden_size)
        self.gru = nn.GRUCell(hidden_size, hidden_size)
        self.policy_head = nn.Linear(hidden_size, vocab_size)
        self.value_head = nn.Linear(hidden_size, 1)

    def initial_state(self, context: torch.Tensor, stage: torch.Tensor) -> torch.Tensor:
        embedded = self.token_embedding(context)                       # [B, L, d]
        if self.init == "tutorial":
            # The tutorial computes tanh(mean_j(ctx_mean[j] + stage[i])) through a [B, B, d] tensor;
            # the mean over j of ctx_mean[j] is the batch mean, so this is the same value in O(B).
            context_mean = embedded.mean(1).mean(0, keepdim=True)
        else:
            real = (context != EOS).unsqueeze(-1).to(embedded.dtype)
            context_mean = (embedded * real).sum(1) / real.sum(1)
        return torch.tanh(context_mean + self.stage_embedding(stage))

    def forward(self, context: torch.Tensor, stage: torch.Tensor, steps: int, *,
                greedy: bool = False, generator: torch.Generator | None = None,
                action_mask: torch.Tensor | None = None) -> Rollout:
        """Emit `steps` tokens: sampled (Gumbel-max with `generator`) or, if greedy, the argmax.

        action_mask: BoolTensor[V] of allowed tokens (None: all allowed).
        """
        batch = context.shape[0]
        hidden = self.initial_state(context, stage)
        token = torch.full((batch,), CTX, dtype=torch.long, device=context.device)
        if not greedy:
            uniform = torch.rand((steps, batch, self.policy_head.out_features), generator=generator,
                                 device=context.device)
            gumbel = -torch.log(-torch.log(uniform.clamp_min(1e-20)))
        actions, logits_per_step, values = [], [], []
        for t in range(steps):
            hidden = self.gru(self.token_embedding(token), hidden)
            logits = self.policy_head(hidden)
            if action_mask is not None:
                logits = logits.masked_fill(~action_mask, float("-inf"))
            token = logits.argmax(-1) if greedy else (logits.detach() + gumbel[t]).argmax(-1)
            actions.append(token)
            logits_per_step.append(logits)
            values.append(self.value_head(hidden).squeeze(-1))
        return Rollout(torch.stack(actions, 1), torch.stack(logits_per_step, 1), torch.stack(values, 1))
