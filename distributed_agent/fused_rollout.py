"""The fused rollout: an optimisation of `ActorCritic.rollout` (model.py), which specifies it.

The same numbers (checked by tests/test_model_and_loss.py), about 3x faster on CPU: the GRU steps
run inside one autograd Function with a hand-written backward, the input projection of every token
is computed once and looked up per step, the value head runs once on all hidden states.
"""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F

from .env import CTX


def fused_rollout(
    model,
    context: torch.Tensor,
    stage: torch.Tensor,
    steps: int,
    noise: torch.Tensor | None,
    action_mask: torch.Tensor | None,
    forced: torch.Tensor | None,
):
    """(actions, logits, values) of `model.rollout(...)`, computed with FusedRollout."""
    hidden = model.initial_state(context, stage)
    input_table = F.linear(model.token_embedding.weight, model.gru.weight_ih, model.gru.bias_ih)  # [V, 3d]
    logits_bias = model.policy_head.bias
    if action_mask is not None:
        logits_bias = logits_bias.masked_fill(~action_mask.repeat(model.head_blocks), float("-inf"))
    forced = None if forced is None else forced.t().contiguous()
    actions, logits, hiddens = FusedRollout.apply(
        input_table,
        hidden,
        model.gru.weight_hh,
        model.gru.bias_hh,
        model.policy_head.weight,
        logits_bias,
        noise,
        steps,
        model.head_columns(stage),
        forced,
    )
    # Batch-major rows for the value head: time-major ones would round its sums differently and
    # change every published number (a copy, ~0.2 ms at batch 192).
    return actions, logits, model.value_head(hiddens.transpose(0, 1)).squeeze(-1)


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
            torch.sigmoid(from_input[:, : 2 * size] + from_hidden[t, :, : 2 * size], out=gates[t])
            # tanh(x) = 2 sigmoid(2x) - 1: the same value, and 3x faster than torch.tanh on CPU here.
            pre_candidate = torch.addcmul(from_input[:, 2 * size :], gates[t, :, :size], from_hidden[t, :, 2 * size :])
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
        grad_logits = grad_logits.transpose(0, 1)  # [T, B, V]
        if head_columns is not None:  # back to all rows of W_pi, zero for other stages' heads
            grad_logits = torch.zeros(
                steps, batch, w_pi.shape[0], dtype=grad_logits.dtype, device=grad_logits.device
            ).scatter_(2, head_columns.expand(steps, -1, -1), grad_logits)
        # Every step's hidden state receives its own gradient plus the policy head's.
        grad_hidden_out = torch.baddbmm(grad_hiddens, grad_logits, w_pi.expand(steps, -1, -1))
        reset, update = gates[..., :size], gates[..., size:]
        # The factors that do not depend on the incoming gradient, for all steps at once.
        to_pre_candidate = (1 - update) * (1 - candidates * candidates)
        to_pre_update = (previous - candidates) * update * (1 - update)
        to_pre_reset = from_hidden[..., 2 * size :] * reset * (1 - reset)
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
        grad_input = torch.cat([grad_from_hidden[..., : 2 * size], grad_pre_candidate], -1)
        flat_grad_hidden = grad_from_hidden.reshape(-1, 3 * size)
        grad_w_hh = flat_grad_hidden.t().mm(previous.reshape(-1, size))
        grad_b_hh = flat_grad_hidden.sum(0)
        flat_logits = grad_logits.reshape(-1, grad_logits.shape[-1])
        grad_w_pi = flat_logits.t().mm(hiddens[1:].reshape(-1, size))
        grad_b_pi = flat_logits.sum(0)
        grad_table = torch.zeros_like(input_table).index_add_(
            0, tokens[:-1].reshape(-1), grad_input.reshape(-1, 3 * size)
        )
        return grad_table, carry, grad_w_hh, grad_b_hh, grad_w_pi, grad_b_pi, None, None, None, None
