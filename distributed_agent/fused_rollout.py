"""The fused rollout of a population: an optimisation of `ActorCritic.rollout` (model.py), which
specifies it, for K models of one shape at once.

The members' parameters are stacked on a leading member axis (`StackedWeights.of`, differentiable,
so each member's gradient lands in its own parameters) and every operation runs on all members
together: per step a few batched tensor operations whatever K is, which is where a population
saves the Python dispatch and kernel launches that dominate one small model's update.

Bit for bit: on the CPU (one thread) each member's slice of a batched matrix product equals the
member's own product (benchmarks/batched_identity_probe.py), so a member trained in a population
gets the numbers of the same seed trained alone (tests/test_population.py). The one exception
found, a batched product with a single output column (the value head), runs per member.
Tested against the readable rollout in tests/test_model_and_loss.py; about 3x faster than it.

The elementwise work of a cell step is `cell_forward_reference` and `cell_backward_reference`
(torch operations, the specification and the path on other devices); on the CPU it runs as C++
kernels with the same roundings (gru_kernels, gru_cell.cpp), one pass over memory each instead of a
dozen operations (benchmarks/population.py --torch-cell compares them).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, fields

import torch
import torch.nn.functional as F

from . import gru_kernels
from .env import CTX, EOS


@dataclass
class StackedWeights:
    """The parameters of K ActorCritics of one shape, each stacked on a leading axis [K, ...]."""

    token_embedding: torch.Tensor  # [K, V, d]
    stage_embedding: torch.Tensor  # [K, S, d]
    w_ih: torch.Tensor  # [K, 3d, d]
    b_ih: torch.Tensor  # [K, 3d]
    w_hh: torch.Tensor  # [K, 3d, d]
    b_hh: torch.Tensor  # [K, 3d]
    w_pi: torch.Tensor  # [K, V * head_blocks, d]
    b_pi: torch.Tensor  # [K, V * head_blocks]
    w_v: torch.Tensor  # [K, 1, d]
    b_v: torch.Tensor  # [K, 1]
    init: str
    head_blocks: int

    @classmethod
    def of(cls, models) -> StackedWeights:
        first = models[0]

        def stack(parameter):
            return torch.stack([parameter(m) for m in models])

        return cls(
            stack(lambda m: m.token_embedding.weight),
            stack(lambda m: m.stage_embedding.weight),
            stack(lambda m: m.gru.weight_ih),
            stack(lambda m: m.gru.bias_ih),
            stack(lambda m: m.gru.weight_hh),
            stack(lambda m: m.gru.bias_hh),
            stack(lambda m: m.policy_head.weight),
            stack(lambda m: m.policy_head.bias),
            stack(lambda m: m.value_head.weight),
            stack(lambda m: m.value_head.bias),
            first.init,
            first.head_blocks,
        )

    @property
    def members(self) -> int:
        return self.w_hh.shape[0]

    def member(self, k: int) -> StackedWeights:
        """Member k alone (K = 1), still a view of the stack, so gradients reach the same tensors."""
        tensors = {
            f.name: getattr(self, f.name)[k : k + 1] for f in fields(self) if f.name not in ("init", "head_blocks")
        }
        return StackedWeights(**tensors, init=self.init, head_blocks=self.head_blocks)


def population_rollout(
    weights: StackedWeights,
    contexts: list[torch.Tensor],
    stage: torch.Tensor,
    steps: int,
    noise: torch.Tensor | None = None,
    action_mask: torch.Tensor | None = None,
    forced: torch.Tensor | None = None,
):
    """(actions [K, B, T], logits [K, B, T, V], values [K, B, T], hidden states [K, B, T, d]) of
    every member's `rollout(...)` (the hidden states after each step, a view that carries gradient).

    contexts: K tensors [B, L_k] (members' batches may show different stages, so differ in width),
    stage [K, B], noise [K, T, B, V] or None (greedy), action_mask [V] or None, forced [K, B, T] or
    None: member k's arguments of ActorCritic.rollout, stacked.
    """
    vocab = weights.token_embedding.shape[1]
    hidden = initial_state(weights, contexts, stage)
    input_table = torch.baddbmm(weights.b_ih.unsqueeze(1), weights.token_embedding, weights.w_ih.transpose(1, 2))
    logits_bias = weights.b_pi
    if action_mask is not None:
        logits_bias = logits_bias.masked_fill(~action_mask.repeat(weights.head_blocks), float("-inf"))
    columns = head_columns(stage, vocab, weights.head_blocks)
    actions, logits, hiddens = FusedRollout.apply(
        input_table,
        hidden,
        weights.w_hh,
        weights.b_hh,
        weights.w_pi,
        logits_bias,
        None if noise is None else noise.transpose(0, 1),
        steps,
        columns,
        None if forced is None else forced.permute(2, 0, 1).contiguous(),
    )
    # The value head per member, on its batch-major view [B, T, d]: a batched product with one
    # output column, time-major rows, or a contiguous copy each round the sums (of the output or
    # of the bias gradient) differently, and would change every published number.
    # (unbind: one gradient for all members; indexing would add a full-size zero tensor per member)
    values = torch.stack(
        [
            F.linear(h.transpose(0, 1), w, b)
            for h, w, b in zip(hiddens.unbind(), weights.w_v.unbind(), weights.b_v.unbind())
        ]
    )
    return actions, logits, values.squeeze(-1), hiddens.transpose(1, 2)


def head_columns(stage: torch.Tensor, vocab: int, head_blocks: int) -> torch.Tensor | None:
    """LongTensor[..., V]: the policy outputs of each episode's stage (None: one shared head)."""
    if head_blocks == 1:
        return None
    return stage.unsqueeze(-1) * vocab + torch.arange(vocab, device=stage.device)


def initial_state(weights: StackedWeights, contexts: list[torch.Tensor], stage: torch.Tensor) -> torch.Tensor:
    """[K, B, d]: ActorCritic.initial_state of every member (see there for the two inits)."""
    widths = {context.shape[1] for context in contexts}
    if len(widths) > 1 and weights.init == "batch_mean":
        # batch_mean averages over the padding too, so each member keeps its own batch's width.
        return torch.cat([initial_state(weights.member(k), [c], stage[k : k + 1]) for k, c in enumerate(contexts)])
    # EOS padding is masked out of the episode init exactly (it adds zeros to the sums).
    context = torch.stack([F.pad(c, (0, max(widths) - c.shape[1]), value=EOS) for c in contexts])
    embedded = _lookup(weights.token_embedding, context)  # [K, B, L, d]
    if weights.init == "batch_mean":
        context_mean = embedded.mean(2).mean(1, keepdim=True)
    else:
        real = (context != EOS).unsqueeze(-1).to(embedded.dtype)
        context_mean = (embedded * real).sum(2) / real.sum(2)
    return torch.tanh(context_mean + _lookup(weights.stage_embedding, stage))


def _lookup(table: torch.Tensor, indices: torch.Tensor) -> torch.Tensor:
    """table [K, N, d] looked up per member at indices [K, ...] -> [K, ..., d] (one embedding call)."""
    members, rows = table.shape[:2]
    offsets = torch.arange(members, device=indices.device).view(members, *[1] * (indices.dim() - 1)) * rows
    return F.embedding(indices + offsets, table.reshape(members * rows, -1))


class FusedRollout(torch.autograd.Function):
    """`steps` GRU-cell steps of K members feeding each sampled token back in, with
    backpropagation through time written by hand: per step a few batched tensor operations instead
    of autograd's bookkeeping, and the weight gradients as one batched matrix product over all
    steps after the loop.

    Inputs (K members, batch B, hidden d, vocabulary V): input_table [K, V, 3d] (W_ih applied to
    every token embedding, plus b_ih), hidden [K, B, d], W_hh [K, 3d, d], b_hh [K, 3d], W_pi
    [K, V', d], b_pi [K, V'] (-inf where masked), noise [T, K, B, V] or None (greedy),
    head_columns [K, B, V] or None (which rows of W_pi each episode uses, for per-stage heads),
    forced [T, K, B] or None (a token that replaces the sampled one where >= 0).
    Outputs: actions [K, B, T], logits [K, B, T, V], hiddens [K, T, B, d].
    Gate order and formulas are nn.GRUCell's: r, z, n; h' = n + z (h - n).

    The hidden states and the gate gradients are kept member-major [K, T, B, ...], written per step
    through strided views, so that the weight gradients read each member's (step, episode) rows in
    place (benchmarks/population.py --phases: the copies they replace were a third of the backward).
    On the CPU the time loops run over chunks of CPU_LOOP_MEMBERS members (`member_chunks`).
    """

    @staticmethod
    def forward(ctx, input_table, hidden, w_hh, b_hh, w_pi, b_pi, noise, steps, head_columns, forced=None):
        members, batch, size = hidden.shape
        table_rows = input_table.shape[1]
        # Every per-step result is written straight into its slot of a buffer (out=): stacking
        # lists afterwards cost more than the arithmetic at these sizes.
        new = functools.partial(torch.empty, dtype=hidden.dtype, device=hidden.device)
        tokens = torch.empty(steps + 1, members, batch, dtype=torch.long, device=hidden.device)
        tokens[0] = CTX
        # Member k's rows of the flattened input table start at k * V.
        table_offsets = torch.arange(members, device=hidden.device).unsqueeze(1) * table_rows
        flat_table = input_table.reshape(members * table_rows, -1)
        # hiddens member-major, for the weight gradients; the gates time-major, as their batched
        # product may write to them directly (into a member-major view it runs member by member).
        from_hidden, gates = new(steps, members, batch, 3 * size), new(steps, members, batch, 2 * size)
        vocab = w_pi.shape[1] if head_columns is None else head_columns.shape[-1]
        candidates, hiddens = new(steps, members, batch, size), new(members, steps + 1, batch, size)
        logits = new(steps, members, batch, vocab)
        hiddens[:, 0] = hidden
        b_hh_rows, b_pi_rows = b_hh.unsqueeze(1), b_pi.unsqueeze(1)
        w_hh_t, w_pi_t = w_hh.transpose(1, 2), w_pi.transpose(1, 2)
        # Chosen once per rollout, so that its backward runs the same kind of step.
        cell_forward, ctx.cell_backward = cell_steps(hidden)
        for chunk in member_chunks(members, hidden.device):
            for t in range(steps):
                previous, next_hidden = hiddens[chunk, t], hiddens[chunk, t + 1]
                torch.baddbmm(b_hh_rows[chunk], previous, w_hh_t[chunk], out=from_hidden[t, chunk])
                fed_in = tokens[t, chunk] + table_offsets[chunk]  # rows of flat_table
                cell_forward(
                    flat_table,
                    fed_in,
                    from_hidden[t, chunk],
                    previous,
                    gates[t, chunk],
                    candidates[t, chunk],
                    next_hidden,
                )
                step_logits = logits[t, chunk]
                if head_columns is None:
                    torch.baddbmm(b_pi_rows[chunk], next_hidden, w_pi_t[chunk], out=step_logits)
                else:
                    scores = torch.baddbmm(b_pi_rows[chunk], next_hidden, w_pi_t[chunk])
                    torch.gather(scores, 2, head_columns[chunk], out=step_logits)
                chosen = step_logits if noise is None else step_logits + noise[t, chunk]
                next_tokens = tokens[t + 1, chunk]
                torch.argmax(chosen, -1, out=next_tokens)
                if forced is not None:  # exploration: tokens drawn outside the policy
                    torch.where(forced[t, chunk] >= 0, forced[t, chunk], next_tokens, out=next_tokens)
        ctx.save_for_backward(input_table, w_hh, w_pi, tokens, from_hidden, gates, candidates, hiddens, head_columns)
        actions = tokens[1:].permute(1, 2, 0)
        ctx.mark_non_differentiable(actions)
        return actions, logits.permute(1, 2, 0, 3), hiddens[:, 1:]

    @staticmethod
    def backward(ctx, _grad_actions, grad_logits, grad_hiddens):
        input_table, w_hh, w_pi, tokens, from_hidden, gates, candidates, hiddens, head_columns = ctx.saved_tensors
        steps, members, batch, size = candidates.shape
        table_rows = input_table.shape[1]
        grad_logits = grad_logits.transpose(1, 2)  # [K, T, B, V]
        if head_columns is not None:  # back to all rows of W_pi, zero for other stages' heads
            grad_logits = torch.zeros(
                members, steps, batch, w_pi.shape[1], dtype=grad_logits.dtype, device=grad_logits.device
            ).scatter_(3, head_columns.unsqueeze(1).expand(-1, steps, -1, -1), grad_logits)
        # Each member's rows in (step, episode) order, as the weight gradients read them.
        flat_logits = grad_logits.reshape(members, steps * batch, -1)
        # Every step's hidden state receives its own gradient plus the policy head's.
        grad_hidden_out = torch.baddbmm(
            grad_hiddens.reshape(members * steps, batch, size),
            flat_logits.view(members * steps, batch, -1),
            w_pi.unsqueeze(1).expand(-1, steps, -1, -1).reshape(members * steps, -1, size),
        ).view(members, steps, batch, size)
        # One buffer of four blocks per row, written in place: d reset, d update, d(W_hn h + b_hn)
        # (the first three are d(W_hh h + b_hh)) and d pre-candidate; d(W_ih x + b_ih) is blocks 1, 2
        # and 4 (n is taken before the reset gate). Neither gradient then needs a copy.
        grad_gates = hiddens.new_empty(members, steps, batch, 4 * size)
        grad_from_hidden = grad_gates[..., : 3 * size]
        carries = []
        for chunk in member_chunks(members, hiddens.device):
            carry = torch.zeros_like(hiddens[chunk, 0])
            for t in reversed(range(steps)):
                # One step at a time, so that its factors are computed while they are still in cache.
                direct = ctx.cell_backward(
                    grad_hidden_out[chunk, t],
                    carry,
                    gates[t, chunk],
                    candidates[t, chunk],
                    hiddens[chunk, t],
                    from_hidden[t, chunk],
                    grad_gates[chunk, t],
                )
                carry = direct.baddbmm_(grad_from_hidden[chunk, t], w_hh[chunk])  # in place: no copy of `direct`
            carries.append(carry)
        carry = torch.cat(carries)

        flat_grad_hidden = grad_from_hidden.reshape(members, steps * batch, 3 * size)
        grad_w_hh = torch.bmm(flat_grad_hidden.transpose(1, 2), hiddens[:, :-1].reshape(members, steps * batch, size))
        grad_b_hh = flat_grad_hidden.sum(1)
        grad_w_pi = torch.bmm(flat_logits.transpose(1, 2), hiddens[:, 1:].reshape(members, steps * batch, size))
        grad_b_pi = flat_logits.sum(1)
        # The input table's gradient: d(W_ih x + b_ih) is (d reset, d update, d pre-candidate),
        # summed into the rows of the tokens fed in, member k's rows offset by k * V.
        table_offsets = torch.arange(members, device=tokens.device).view(members, 1, 1) * table_rows
        rows = (tokens[:-1].transpose(0, 1) + table_offsets).reshape(-1)
        grad_table = torch.zeros(members * table_rows, 4 * size, dtype=input_table.dtype, device=input_table.device)
        grad_table.index_add_(0, rows, grad_gates.view(-1, 4 * size))
        grad_table = torch.cat([grad_table[:, : 2 * size], grad_table[:, 3 * size :]], -1)
        return (
            grad_table.view_as(input_table),
            carry,
            grad_w_hh,
            grad_b_hh,
            grad_w_pi,
            grad_b_pi,
            None,
            None,
            None,
            None,
        )


# Members stepped together through each time loop on the CPU: a chunk's per-step tensors [k, B, 3d]
# and weights stay in a core's cache from one step to the next, while the rest of the update runs
# on all members at once (one Python dispatch per operation). Other devices run every member at once.
CPU_LOOP_MEMBERS = 4


def member_chunks(members: int, device: torch.device) -> list[slice]:
    """The members of a time loop, in the chunks it steps together (any chunking: the same numbers)."""
    size = CPU_LOOP_MEMBERS if device.type == "cpu" else members
    return [slice(start, start + size) for start in range(0, members, size)]


def cell_forward_reference(table, row_index, from_hidden, previous, gates, candidate, next_hidden) -> None:
    """One GRU-cell step of K members (nn.GRUCell's formulas), written into gates [K, B, 2d] (reset,
    update), candidate [K, B, d] and next_hidden [K, B, d].

    table [K * V, 3d]: W_ih x + b_ih of every member's tokens, row_index [K, B]: the rows fed in,
    from_hidden [K, B, 3d]: W_hh h + b_hh, previous [K, B, d]: h. The specification of the CPU
    kernels (gru_kernels.cell_forward_kernels), and the path on other devices.
    """
    size = previous.shape[-1]
    from_input = table.index_select(0, row_index.view(-1)).view(*row_index.shape, -1)
    torch.sigmoid(from_input[..., : 2 * size] + from_hidden[..., : 2 * size], out=gates)
    pre_candidate = torch.addcmul(from_input[..., 2 * size :], gates[..., :size], from_hidden[..., 2 * size :])
    # tanh(x) = 2 sigmoid(2x) - 1: the same value, and 3x faster than torch.tanh on CPU here.
    torch.sigmoid(pre_candidate.mul_(2), out=candidate).mul_(2).sub_(1)
    torch.addcmul(candidate, gates[..., size:], previous - candidate, out=next_hidden)


def cell_backward_reference(grad_out, carry, gates, candidate, previous, from_hidden, grad_gates) -> torch.Tensor:
    """One step of backpropagation through the cell: writes grad_gates [K, B, 4d] (d reset,
    d update, d(W_hn h + b_hn), d pre-candidate) and returns the part of d previous that does not
    go through W_hh. grad_out: the step's own gradient, carry: what came back from the next step;
    the rest as cell_forward_reference saved them. Specification of gru_kernels.cell_backward_kernels.
    """
    size = candidate.shape[-1]
    reset, update = gates[..., :size], gates[..., size:]
    grad_reset, grad_update, grad_candidate_part, grad_pre_candidate = grad_gates.split(size, -1)
    grad_h = grad_out + carry
    torch.mul(grad_h, (1 - update) * (1 - candidate * candidate), out=grad_pre_candidate)
    torch.mul(grad_pre_candidate, from_hidden[..., 2 * size :] * reset * (1 - reset), out=grad_reset)
    torch.mul(grad_h, (previous - candidate) * update * (1 - update), out=grad_update)
    torch.mul(grad_pre_candidate, reset, out=grad_candidate_part)
    return grad_h * update


def cell_steps(tensor: torch.Tensor):
    """(forward, backward) cell steps for a tensor's device: the CPU kernels where they load, else
    the references."""
    kernels = gru_kernels.for_tensor(tensor)
    if kernels is None:
        return cell_forward_reference, cell_backward_reference
    return (
        functools.partial(gru_kernels.cell_forward_kernels, kernels),
        functools.partial(gru_kernels.cell_backward_kernels, kernels),
    )
