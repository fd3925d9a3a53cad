"""The stage-aware GRU actor-critic that writes a program of tool tokens, one token per step."""

from __future__ import annotations

import functools
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from .env import CTX, EOS, NUM_STAGES, VOCAB_SIZE

INITS = ("episode", "tutorial")
POLICY_HEADS = ("shared", "per_stage")


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
    policy_head="per_stage" gives each stage its own block of V policy outputs, so that what stages
    0 and 1 learn does not set the token preferences of stage 2 (the GRU is still shared).
    """

    def __init__(self, hidden_size: int = 96, init: str = "episode", num_stages: int = NUM_STAGES,
                 vocab_size: int = VOCAB_SIZE, policy_head: str = "shared"):
        super().__init__()
        if init not in INITS:
            raise ValueError(f"init must be one of {list(INITS)}, got {init!r}")
        if policy_head not in POLICY_HEADS:
            raise ValueError(f"policy_head must be one of {list(POLICY_HEADS)}, got {policy_head!r}")
        self.init = init
        self.vocab_size = vocab_size
        self.head_blocks = num_stages if policy_head == "per_stage" else 1
        self.token_embedding = nn.Embedding(vocab_size, hidden_size)
        self.stage_embedding = nn.Embedding(num_stages, hidden_size)
        self.gru = nn.GRUCell(hidden_size, hidden_size)
        self.policy_head = nn.Linear(hidden_size, vocab_size * self.head_blocks)
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
                action_mask: torch.Tensor | None = None, epsilon: float = 0.0,
                replay: torch.Tensor | None = None) -> Rollout:
        """Emit `steps` tokens: sampled (Gumbel-max with `generator`) or, if greedy, the argmax.

        action_mask: BoolTensor[V] of allowed tokens (None: all allowed).
        epsilon: when sampling, each token is instead drawn uniformly from the allowed ones with
        this probability (exploration that reaches tokens the policy has nearly stopped sampling;
        the loss still treats them as the policy's own, as epsilon-greedy methods do).
        replay: LongTensor[B, T] of actions to feed instead of sampling (teacher forcing), to score
        earlier episodes under the current policy (self-imitation).

        The same numbers as `forward_reference` (checked by a test), computed faster: the GRU
        steps run inside one autograd Function with a hand-written backward (FusedRollout), the
        input projection of every token is computed once and looked up per step, the value head
        runs once on all hidden states, and the sampling noise is drawn once.
        """
        batch = context.shape[0]
        hidden = self.initial_state(context, stage)
        input_table = F.linear(self.token_embedding.weight, self.gru.weight_ih, self.gru.bias_ih)  # [V, 3d]
        logits_bias = self.policy_head.bias
        if action_mask is not None:
            logits_bias = logits_bias.masked_fill(~action_mask.repeat(self.head_blocks), float("-inf"))
        noise = None if greedy else self._gumbel(steps, batch, generator, context.device)
        forced = None if replay is None else replay.t().contiguous()
        if replay is None and not greedy and epsilon > 0:
            allowed = torch.arange(self.vocab_size, device=context.device)
            allowed = allowed if action_mask is None else allowed[action_mask]
            explore = torch.rand((steps, batch), generator=generator, device=context.device) < epsilon
            pick = torch.randint(0, len(allowed), (steps, batch), generator=generator, device=context.device)
            forced = torch.where(explore, allowed[pick], -1)
        actions, logits, hiddens = FusedRollout.apply(input_table, hidden, self.gru.weight_hh, self.gru.bias_hh,
                                                      self.policy_head.weight, logits_bias, noise, steps,
                                                      self._head_columns(stage), forced)
        # Batch-major rows for the value head: time-major ones would round its sums differently and
        # change every published number (a copy, ~0.2 ms at batch 192).
        return Rollout(actions, logits, self.value_head(hiddens.transpose(0, 1)).squeeze(-1))

    def forward_reference(self, context: torch.Tensor, stage: torch.Tensor, steps: int, *,
                          greedy: bool = False, generator: torch.Generator | None = None,
                          action_mask: torch.Tensor | None = None, noise: torch.Tensor | None = None) -> Rollout:
        """The straightforward rollout with nn.GRUCell, kept as the specification of `forward`.

        noise: the Gumbel noise [T, B, V] to sample with instead of drawing it from `generator`
        (torch.compile cannot trace a generator: benchmarks/compile_probe.py)."""
        batch = context.shape[0]
        hidden = self.initial_state(context, stage)
        token = torch.full((batch,), CTX, dtype=torch.long, device=context.device)
        if noise is None and not greedy:
            noise = self._gumbel(steps, batch, generator, context.device)
        actions, logits_per_step, values = [], [], []
        for t in range(steps):
            hidden = self.gru(self.token_embedding(token), hidden)
            logits = self.policy_head(hidden)
            if self.head_blocks > 1:
                logits = logits.gather(1, self._head_columns(stage))
            if action_mask is not None:
                logits = logits.masked_fill(~action_mask, float("-inf"))
            token = logits.argmax(-1) if greedy else (logits.detach() + noise[t]).argmax(-1)
            actions.append(token)
            logits_per_step.append(logits)
            values.append(self.value_head(hidden).squeeze(-1))
        return Rollout(torch.stack(actions, 1), torch.stack(logits_per_step, 1), torch.stack(values, 1))

    def _head_columns(self, stage: torch.Tensor) -> torch.Tensor | None:
        """LongTensor[B, V]: the policy outputs of each episode's stage (None: one shared head)."""
        if self.head_blocks == 1:
            return None
        return stage.unsqueeze(1) * self.vocab_size + torch.arange(self.vocab_size, device=stage.device)

    def _gumbel(self, steps: int, batch: int, generator, device) -> torch.Tensor:
        uniform = torch.rand((steps, batch, self.vocab_size), generator=generator, device=device)
        return uniform.clamp_min_(1e-20).log_().neg_().log_().neg_()  # -log(-log(u)), in place


class FusedRollout(torch.autograd.Function):
    """`steps` GRU-cell steps feeding each sampled token back in, with backpropagation through
    time written by hand: per step a few tensor operations instead of autograd's bookkeeping, and
    the weight gradients as one large matrix product over all steps after the loop.

    Inputs: input_table [V, 3d] (W_ih applied to every token embedding, plus b_ih), hidden [B, d],
    W_hh [3d, d], b_hh [3d], W_pi [V, d], b_pi [V] (-inf where masked), noise [T, B, V] or None
    (greedy), head_columns [B, V] or None (which rows of W_pi each episode uses, for per-stage
    heads), forced [T, B] or None (a token that replaces the sampled one where >= 0).
    Outputs: actions [B, T], logits [B, T, V], hiddens [T, B, d] (time-major).
    Gate order and formulas are nn.GRUCell's: r, z, n; h' = n + z (h - n).
    """

    @staticmethod
    def forward(ctx, input_table, hidden, w_hh, b_hh, w_pi, b_pi, noise, steps, head_columns, forced=None):
        batch, size = hidden.shape
        # Every per-step result is written straight into its slot of a [T, ...] buffer (out=):
        # stacking lists afterwards cost more than the arithmetic at these sizes.
        new = functools.partial(torch.empty, dtype=hidden.dtype, device=hidden.device)
        tokens = torch.empty(steps + 1, batch, dtype=torch.long, device=hidden.device)
        tokens[0] = CTX
        from_hidden, gates = new(steps, batch, 3 * size), new(steps, batch, 2 * size)
        vocab = w_pi.shape[0] if head_columns is None else head_columns.shape[1]
        candidates, hiddens, logits = new(steps, batch, size), new(steps + 1, batch, size), new(steps, batch, vocab)
        hiddens[0] = hidden
        w_hh_t, w_pi_t = w_hh.t(), w_pi.t()
        for t in range(steps):
            from_input = input_table.index_select(0, tokens[t])
            torch.addmm(b_hh, hiddens[t], w_hh_t, out=from_hidden[t])
            torch.sigmoid(from_input[:, :2 * size] + from_hidden[t, :, :2 * size], out=gates[t])
            # tanh(x) = 2 sigmoid(2x) - 1: the same value, and 3x faster than torch.tanh on CPU here.
            pre_candidate = torch.addcmul(from_input[:, 2 * size:], gates[t, :, :size], from_hidden[t, :, 2 * size:])
            torch.sigmoid(pre_candidate.mul_(2), out=candidates[t]).mul_(2).sub_(1)
            torch.addcmul(candidates[t], gates[t, :, size:], hiddens[t] - candidates[t], out=hiddens[t + 1])
            if head_columns is None:
                torch.addmm(b_pi, hiddens[t + 1], w_pi_t, out=logits[t])
            else:
                torch.gather(torch.addmm(b_pi, hiddens[t + 1], w_pi_t), 1, head_columns, out=logits[t])
            torch.argmax(logits[t] if noise is None else logits[t] + noise[t], -1, out=tokens[t + 1])
            if forced is not None:  # exploration: tokens drawn outside the policy
                torch.where(forced[t] >= 0, forced[t], tokens[t + 1], out=tokens[t + 1])
        ctx.save_for_backward(input_table, w_hh, w_pi, tokens, from_hidden, gates, candidates, hiddens, head_columns)
        actions = tokens[1:].t()
        ctx.mark_non_differentiable(actions)
        return actions, logits.transpose(0, 1), hiddens[1:]

    @staticmethod
    def backward(ctx, _grad_actions, grad_logits, grad_hiddens):
        input_table, w_hh, w_pi, tokens, from_hidden, gates, candidates, hiddens, head_columns = ctx.saved_tensors
        steps, batch, size = candidates.shape
        previous = hiddens[:-1]
        grad_logits = grad_logits.transpose(0, 1)                       # [T, B, V]
        if head_columns is not None:  # back to all rows of W_pi, zero for other stages' heads
            grad_logits = torch.zeros(steps, batch, w_pi.shape[0], dtype=grad_logits.dtype, device=grad_logits.device) \
                .scatter_(2, head_columns.expand(steps, -1, -1), grad_logits)
        # Every step's hidden state receives its own gradient plus the policy head's.
        grad_hidden_out = torch.baddbmm(grad_hiddens, grad_logits, w_pi.expand(steps, -1, -1))
        reset, update = gates[..., :size], gates[..., size:]
        # The factors that do not depend on the incoming gradient, for all steps at once.
        to_pre_candidate = (1 - update) * (1 - candidates * candidates)
        to_pre_update = (previous - candidates) * update * (1 - update)
        to_pre_reset = from_hidden[..., 2 * size:] * reset * (1 - reset)
        carry = torch.zeros_like(previous[0])
        # d(W_hh h + b_hh) per step, its three gate blocks written in place (no per-step cat), and
        # d(pre-candidate), which is d(W_ih x + b_ih)'s third block (n is taken before the reset gate).
        grad_from_hidden = torch.empty_like(from_hidden)
        grad_reset, grad_update, grad_candidate_part = grad_from_hidden.split(size, -1)
        grad_pre_candidate = torch.empty_like(candidates)
        for t in reversed(range(steps)):
            grad_h = grad_hidden_out[t] + carry
            torch.mul(grad_h, to_pre_candidate[t], out=grad_pre_candidate[t])
            torch.mul(grad_pre_candidate[t], to_pre_reset[t], out=grad_reset[t])
            torch.mul(grad_h, to_pre_update[t], out=grad_update[t])
            torch.mul(grad_pre_candidate[t], reset[t], out=grad_candidate_part[t])
            carry = torch.addmm(grad_h * update[t], grad_from_hidden[t], w_hh)
        grad_input = torch.cat([grad_from_hidden[..., :2 * size], grad_pre_candidate], -1)
        flat_grad_hidden = grad_from_hidden.reshape(-1, 3 * size)
        grad_w_hh = flat_grad_hidden.t().mm(previous.reshape(-1, size))
        grad_b_hh = flat_grad_hidden.sum(0)
        flat_logits = grad_logits.reshape(-1, grad_logits.shape[-1])
        grad_w_pi = flat_logits.t().mm(hiddens[1:].reshape(-1, size))
        grad_b_pi = flat_logits.sum(0)
        grad_table = torch.zeros_like(input_table).index_add_(0, tokens[:-1].reshape(-1), grad_input.reshape(-1, 3 * size))
        return grad_table, carry, grad_w_hh, grad_b_hh, grad_w_pi, grad_b_pi, None, None, None, None
