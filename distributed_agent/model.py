"""The stage-aware GRU actor-critic that writes a program of tool tokens, one token per step.

`ActorCritic.rollout` is the readable rollout and the specification; training runs the fused
kernel of fused_rollout.py, which computes the same numbers for a whole population of models at
once (`population_rollout`); calling one model (`forward`) runs it as a population of one.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn

from .env import CTX, EOS, NUM_STAGES, VOCAB_SIZE
from .fused_rollout import StackedWeights, head_columns, population_rollout


@dataclass
class Rollout:
    """One model's episodes; a population's have a leading member axis [K, ...] on each."""

    actions: torch.Tensor  # LongTensor[B, T]
    logits: torch.Tensor  # FloatTensor[B, T, V], after the action mask
    values: torch.Tensor  # FloatTensor[B, T]
    hiddens: torch.Tensor | None = None  # FloatTensor[B, T, d]: the GRU state after each step

    def member(self, k: int) -> Rollout:
        return Rollout(
            self.actions[k], self.logits[k], self.values[k], None if self.hiddens is None else self.hiddens[k]
        )


def population_forward(weights: StackedWeights, contexts, stage, steps, *, noise=None, action_mask=None, forced=None):
    """Rollout [K, ...] of every member of a population (fused_rollout.population_rollout)."""
    return Rollout(*population_rollout(weights, contexts, stage, steps, noise, action_mask, forced))


class ActorCritic(nn.Module):
    """Token and stage embeddings, one GRU layer, a policy head and a value head.

    init="batch_mean" reproduces the tutorial's initial state, which (by a broadcasting slip) starts
    every episode from the *batch-average* context embedding plus its own stage embedding.
    init="episode" starts each episode from its own context (mean over its non-padding tokens).
    policy_head="per_stage" gives each stage its own block of V policy outputs, so that what stages
    0 and 1 learn does not set the token preferences of stage 2 (the GRU is still shared).
    The option names are config.INITS and config.POLICY_HEADS (checked there).
    """

    def __init__(
        self,
        hidden_size: int = 96,
        init: str = "episode",
        num_stages: int = NUM_STAGES,
        vocab_size: int = VOCAB_SIZE,
        policy_head: str = "shared",
    ):
        super().__init__()
        self.init = init
        self.vocab_size = vocab_size
        self.head_blocks = num_stages if policy_head == "per_stage" else 1
        self.token_embedding = nn.Embedding(vocab_size, hidden_size)
        self.stage_embedding = nn.Embedding(num_stages, hidden_size)
        self.gru = nn.GRUCell(hidden_size, hidden_size)
        self.policy_head = nn.Linear(hidden_size, vocab_size * self.head_blocks)
        self.value_head = nn.Linear(hidden_size, 1)

    def initial_state(self, context: torch.Tensor, stage: torch.Tensor) -> torch.Tensor:
        embedded = self.token_embedding(context)  # [B, L, d]
        if self.init == "batch_mean":
            # The tutorial computes tanh(mean_j(ctx_mean[j] + stage[i])) through a [B, B, d] tensor;
            # the mean over j of ctx_mean[j] is the batch mean, so this is the same value in O(B).
            context_mean = embedded.mean(1).mean(0, keepdim=True)
        else:
            real = (context != EOS).unsqueeze(-1).to(embedded.dtype)
            context_mean = (embedded * real).sum(1) / real.sum(1)
        return torch.tanh(context_mean + self.stage_embedding(stage))

    def rollout(
        self,
        context: torch.Tensor,
        stage: torch.Tensor,
        steps: int,
        *,
        noise: torch.Tensor | None = None,
        action_mask: torch.Tensor | None = None,
        forced: torch.Tensor | None = None,
    ) -> Rollout:
        """Emit `steps` tokens, each fed back as the next input, starting from CTX.

        noise: Gumbel noise [T, B, V] (`gumbel_noise`): each token is argmax(logits + noise), a sample
        of the policy; None: greedy, the argmax of the logits.
        action_mask: BoolTensor[V] of the tokens the policy may emit (None: all).
        forced: LongTensor[B, T] of tokens that replace the chosen ones where >= 0 (exploration
        draws them; replaying an earlier episode forces all of them). The logits and values are
        still the policy's own at every step.
        """
        batch = context.shape[0]
        hidden = self.initial_state(context, stage)
        token = torch.full((batch,), CTX, dtype=torch.long, device=context.device)
        actions, logits_per_step, values, hiddens = [], [], [], []
        for t in range(steps):
            hidden = self.gru(self.token_embedding(token), hidden)
            hiddens.append(hidden)
            logits = self.policy_head(hidden)
            if self.head_blocks > 1:
                logits = logits.gather(1, self.head_columns(stage))
            if action_mask is not None:
                logits = logits.masked_fill(~action_mask, float("-inf"))
            token = logits.argmax(-1) if noise is None else (logits.detach() + noise[t]).argmax(-1)
            if forced is not None:
                token = torch.where(forced[:, t] >= 0, forced[:, t], token)
            actions.append(token)
            logits_per_step.append(logits)
            values.append(self.value_head(hidden).squeeze(-1))
        return Rollout(*(torch.stack(x, 1) for x in (actions, logits_per_step, values, hiddens)))

    def forward(
        self,
        context: torch.Tensor,
        stage: torch.Tensor,
        steps: int,
        *,
        noise: torch.Tensor | None = None,
        action_mask: torch.Tensor | None = None,
        forced: torch.Tensor | None = None,
    ) -> Rollout:
        """`rollout(...)`, computed by the fused kernel (fused_rollout.py) as a population of one."""
        return population_forward(
            StackedWeights.of([self]),
            [context],
            stage.unsqueeze(0),
            steps,
            noise=None if noise is None else noise.unsqueeze(0),
            action_mask=action_mask,
            forced=None if forced is None else forced.unsqueeze(0),
        ).member(0)

    def head_columns(self, stage: torch.Tensor) -> torch.Tensor | None:
        """LongTensor[B, V]: the policy outputs of each episode's stage (None: one shared head)."""
        return head_columns(stage, self.vocab_size, self.head_blocks)

    def gumbel_noise(self, steps: int, batch: int, generator: torch.Generator) -> torch.Tensor:
        """Gumbel noise [T, B, V] that makes argmax(logits + noise) a sample of softmax(logits)."""
        uniform = torch.rand((steps, batch, self.vocab_size), generator=generator, device=generator.device)
        return uniform.clamp_min_(1e-20).log_().neg_().log_().neg_()  # -log(-log(u)), in place
