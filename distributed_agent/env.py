"""Batched tool-use environment: arithmetic tasks solved by a program of tool tokens.

Tokens (vocabulary of 18): digits 0-9 are ids 0-9; CTX=10, MUL=11, ADD=12, SUB=13, ANS=14,
STO=15, RCL=16, EOS=17. Five operands a, b, c, d, e are drawn uniformly from 0..9.

| stage | context shown | declared target      |
|-------|---------------|----------------------|
| 0     | a b c         | a*b + c              |
| 1     | a b c d       | (a*b + c) - d        |
| 2     | a b c d e     | (a*b + c) - (d*e)    |

The agent emits a fixed number of action tokens; they are read left to right, every token is one
step, and ANS ends the episode with the current value as the answer. No ANS: reward 0, not correct.
Reward = correct + answer_shaping * shaped, where `shaped` is the tutorial's partial credit for
answering one of the intermediate values g0=a*b, g1=g0+c, g2=g1-d, g3=d*e, g4=g1-g3:
stage 0: 0.25*[g0] + 0.5*[g1]; stage 1: 0.25*[g0] + 0.5*[g1] + 0.75*[g2];
stage 2: 0.2*[g0] + 0.4*[g1] + 0.6*[g4] + 0.6*[g3].

variant="shifted" (the tutorial's scoring, bit for bit, defects included): state `last` and `mem`
(both empty at start); at most 7 tokens are read.

| token | effect                                                                                   |
|-------|------------------------------------------------------------------------------------------|
| MUL   | last = a*b if last is empty, else last * (d if stage > 0 else 1)                         |
| ADD   | if last is set: last += c                                                                |
| SUB   | if last is set: last -= (e if stage == 2 and mem is set else (d if stage > 0 else 0))    |
| STO   | mem is set                                                                               |
| RCL   | if mem is set: last = d*e if stage == 2, else (last if last is set and non-zero, else 0) |
| ANS   | answer = last; correct = (answer == [g0, g1, g2][stage]), i.e. the *shifted* targets     |
| other | nothing                                                                                  |

variant="declared" (each stage scored against its declared target): a small register machine
with an accumulator `acc`, a memory `mem` and a `pending` operand (all empty at start) and a
cursor over the operands shown. A binary tool takes its right-hand operand from `pending` if
set (clearing it), else the next unread operand shown.

| token | effect                                                                                 |
|-------|----------------------------------------------------------------------------------------|
| MUL   | acc empty: acc = next * next (two operands read); else acc = acc * right-hand operand    |
| ADD   | acc set: acc = acc + right-hand operand                                                |
| SUB   | acc set: acc = acc - right-hand operand                                                |
| STO   | acc set: mem = acc, acc becomes empty                                                  |
| RCL   | mem set: pending = acc (empty if acc is empty), acc = mem (mem is kept)                |
| ANS   | answer = acc; correct = (answer == declared target)                                    |
| other | nothing                                                                                |

A tool whose condition fails, or that needs an operand when none is left, is invalid, as is a
non-tool token: it does nothing but still costs its step (invalid_action="noop", the default), or
it ends the episode without an answer (invalid_action="end").

Path shaping (declared only, weight path_shaping, default 0): a stage-2 episode that answers earns
path_shaping x (the share of these solution states it passed through): memory stored a*b+c; the
accumulator held d*e with the memory set; RCL made d*e the pending operand. It hands the agent the
solution's intermediate states, so results with it are not "emergent" memory use.
Shortest programs: stage 0 MUL ADD ANS; stage 1 MUL ADD SUB ANS; stage 2 MUL ADD STO MUL RCL SUB
ANS (7 tokens, so the declared variant emits 8 by default).
Without STO and RCL no program reaches (a*b+c)-(d*e) for every operand.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import torch

CTX, MUL, ADD, SUB, ANS, STO, RCL, EOS = 10, 11, 12, 13, 14, 15, 16, 17
VOCAB_SIZE = 18
NUM_STAGES = 3
TOOL_TOKENS = (MUL, ADD, SUB, ANS, STO, RCL)
OPERANDS_SHOWN = (3, 4, 5)  # per stage
MACHINE_STATES = 2 * 2 * 2 * 6  # declared: which of acc, mem, pending are set, x operands read (0-5)
DEFAULT_MAX_LEN = {"shifted": 6, "declared": 8}
TUTORIAL_MAX_STEPS = 7  # the tutorial stops reading after 7 tokens; with its 6 it never cuts in

TOKEN_NAMES = {
    **{i: str(i) for i in range(10)},
    CTX: "CTX",
    MUL: "MUL",
    ADD: "ADD",
    SUB: "SUB",
    ANS: "ANS",
    STO: "STO",
    RCL: "RCL",
    EOS: "EOS",
}
TARGET_FORMULAS = ("a*b+c", "(a*b+c)-d", "(a*b+c)-(d*e)")
TUTORIAL_SCORED_FORMULAS = ("a*b", "a*b+c", "(a*b+c)-d")


def tokens_to_text(tokens) -> str:
    """`[11, 12, 14]` -> 'MUL ADD ANS' (accepts a list or a 1-D tensor)."""
    if isinstance(tokens, torch.Tensor):
        tokens = tokens.tolist()
    return " ".join(TOKEN_NAMES[int(t)] for t in tokens)


def intermediate_goals(operands: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """g0=a*b, g1=g0+c, g2=g1-d, g3=d*e, g4=g1-g3 for a LongTensor[B, 5]."""
    a, b, c, d, e = operands.unbind(1)
    g0 = a * b
    g1 = g0 + c
    return g0, g1, g1 - d, d * e, g1 - d * e


def declared_target(operands: torch.Tensor, stage) -> torch.Tensor:
    g0, g1, g2, g3, g4 = intermediate_goals(operands)
    stage = _stage_tensor(stage, operands)
    return torch.where(stage == 0, g1, torch.where(stage == 1, g2, g4))


def _stage_tensor(stage, operands: torch.Tensor) -> torch.Tensor:
    if isinstance(stage, torch.Tensor):
        return stage.to(operands.device)
    if stage not in range(NUM_STAGES):
        raise ValueError(f"stage must be one of {list(range(NUM_STAGES))}, got {stage!r}")
    return torch.full((operands.shape[0],), stage, dtype=torch.long, device=operands.device)


@dataclass
class Outcome:
    """Everything the scoring of one batch knows, per episode."""

    reward: torch.Tensor  # FloatTensor[B]
    correct: torch.Tensor  # BoolTensor[B]
    answered: torch.Tensor  # BoolTensor[B]: ANS was emitted (within the steps read)
    answer: torch.Tensor  # LongTensor[B]: value at ANS (meaningless where answer_set is False)
    answer_set: torch.Tensor  # BoolTensor[B]: ANS found a value to give
    target: torch.Tensor  # LongTensor[B]: what `correct` compares the answer with
    length: torch.Tensor  # LongTensor[B]: tokens used, its ending one (ANS, an ending invalid token) included
    machine_states: torch.Tensor | None = None  # declared: LongTensor[B, T], MACHINE_STATES codes, -1 once over

    def rows(self, start: int, stop: int) -> Outcome:
        """The outcome of episodes start..stop-1 (views): one member's share of a population's batch."""
        values = (getattr(self, f.name) for f in fields(self))
        return Outcome(*(None if value is None else value[start:stop] for value in values))

    def steps_used(self, steps: int) -> torch.Tensor:
        """BoolTensor[B, steps]: the steps of each episode up to and including its ending token."""
        return torch.arange(steps, device=self.length.device) < self.length.unsqueeze(1)


class ToolEnv:
    """The rules of one TrainConfig (which checked the values: see config.py)."""

    def __init__(
        self,
        variant: str = "shifted",
        max_len: int | None = None,
        answer_shaping: float = 0.2,
        path_shaping: float = 0.0,
        invalid_action: str = "noop",
    ):
        self.variant = variant
        self.max_len = DEFAULT_MAX_LEN[variant] if max_len is None else int(max_len)
        self.answer_shaping = answer_shaping
        self.path_shaping = path_shaping
        self.invalid_action = invalid_action

    @classmethod
    def of(cls, config) -> ToolEnv:
        """The rules a TrainConfig names."""
        return cls(config.variant, config.max_len, config.answer_shaping, config.path_shaping, config.invalid_action)

    @property
    def steps_read(self) -> int:
        """Tokens of a program that are read: max_len, at most 7 under the tutorial's rules."""
        return min(self.max_len, TUTORIAL_MAX_STEPS) if self.variant == "shifted" else self.max_len

    def sample(self, batch: int, stage, generator: torch.Generator):
        """Operands LongTensor[B, 5] and the padded context LongTensor[B, L].

        Each row shows its stage's operands, then CTX, then EOS up to the longest row.
        """
        operands = torch.randint(0, 10, (batch, 5), generator=generator, device=generator.device)
        return operands, self.context(operands, stage)

    @staticmethod
    def context(operands: torch.Tensor, stage) -> torch.Tensor:
        """The padded context LongTensor[B, L] that shows these operands at these stages."""
        stage = _stage_tensor(stage, operands)
        shown = torch.tensor(OPERANDS_SHOWN, device=operands.device)[stage]  # [B]
        width = int(shown.max()) + 1
        position = torch.arange(width, device=operands.device).unsqueeze(0)  # [1, L]
        padded_operands = torch.cat([operands, operands[:, :1]], 1)[:, :width]  # width <= 6
        return torch.where(
            position < shown[:, None], padded_operands, torch.where(position == shown[:, None], CTX, EOS)
        )

    def score(self, actions: torch.Tensor, operands: torch.Tensor, stage):
        """(reward FloatTensor[B], correct BoolTensor[B]) of action sequences LongTensor[B, T]."""
        outcome = self.run(actions, operands, stage)
        return outcome.reward, outcome.correct

    def run(self, actions: torch.Tensor, operands: torch.Tensor, stage) -> Outcome:
        stage = _stage_tensor(stage, operands)
        if self.variant == "shifted":
            answer, answer_set, answered, length = self._run_shifted(actions, operands, stage)
            g0, g1, g2, _, _ = intermediate_goals(operands)
            target = torch.where(stage == 0, g0, torch.where(stage == 1, g1, g2))
        else:
            answer, answer_set, answered, length, path_progress, machine_states = self._run_declared(
                actions, operands, stage
            )
            target = declared_target(operands, stage)
        correct = answered & answer_set & (answer == target)
        reward = self._reward(correct, answer, answer_set & answered, operands, stage)
        if self.path_shaping:
            # Stage-2 episodes that answer earn a share of the bonus per solution state reached.
            bonus = self.path_shaping * path_progress * (answered & (stage == 2))
            reward = reward + bonus.float()
        return Outcome(
            reward,
            correct,
            answered,
            answer,
            answer_set,
            target,
            length,
            machine_states if self.variant == "declared" else None,
        )

    def _reward(self, correct, answer, has_value, operands, stage):
        # Computed in float64 in the tutorial's order of operations, then rounded once to float32,
        # exactly as the tutorial builds its Python-float rewards into a float tensor.
        g0, g1, g2, g3, g4 = intermediate_goals(operands)

        def hit(goal):
            return (has_value & (answer == goal)).double()

        shaped = torch.where(
            stage == 0,
            0.25 * hit(g0) + 0.5 * hit(g1),
            torch.where(
                stage == 1,
                0.25 * hit(g0) + 0.5 * hit(g1) + 0.75 * hit(g2),
                0.2 * hit(g0) + 0.4 * hit(g1) + 0.6 * hit(g4) + 0.6 * hit(g3),
            ),
        )
        return (correct.double() + self.answer_shaping * (0.0 + shaped)).float()

    def _run_shifted(self, actions, operands, stage):
        a, b, c, d, e = operands.unbind(1)
        # The value of an empty `last` is never read (MUL then starts from a*b, RCL from 0, ANS
        # compares nothing), so ADD and SUB may change it freely; only `last_set` must be exact.
        last = torch.zeros_like(a)
        last_set = torch.zeros_like(a, dtype=torch.bool)
        mem_set, done = last_set.clone(), last_set.clone()
        product, multiplier = a * b, torch.where(stage > 0, d, 1)
        subtrahend = torch.where(stage > 0, d, 0)
        subtrahend_with_mem = torch.where(stage == 2, e, subtrahend)
        stage2, de = stage == 2, d * e
        length = torch.zeros_like(a)
        for t in range(min(actions.shape[1], TUTORIAL_MAX_STEPS)):
            length += ~done
            token = torch.where(done, EOS, actions[:, t])  # after ANS every token is a no-op
            is_mul, is_rcl = token == MUL, (token == RCL) & mem_set
            last = torch.where(is_mul, torch.where(last_set, last * multiplier, product), last)
            last = torch.where(token == ADD, last + c, last)
            last = torch.where(token == SUB, last - torch.where(mem_set, subtrahend_with_mem, subtrahend), last)
            # RCL: d*e on stage 2, else `last if last else 0`, which is `last` when set, else 0.
            last = torch.where(is_rcl, torch.where(stage2, de, last * last_set), last)
            last_set = last_set | is_mul | is_rcl
            mem_set = mem_set | (token == STO)
            done = done | (token == ANS)
        return last, last_set, done, length

    def _run_declared(self, actions, operands, stage):
        batch, steps = actions.shape
        shown = torch.tensor(OPERANDS_SHOWN, device=operands.device)[stage]
        # Two spare columns so that reads past the shown operands index safely; they are masked.
        padded = torch.cat([operands, torch.zeros_like(operands[:, :2])], 1)
        rows = torch.arange(batch, device=operands.device)
        g1, de = operands[:, 0] * operands[:, 1] + operands[:, 2], operands[:, 3] * operands[:, 4]
        acc = torch.zeros_like(operands[:, 0])
        mem, pending = acc.clone(), acc.clone()
        acc_set = torch.zeros_like(acc, dtype=torch.bool)
        mem_set, pending_set, done, ended_invalid = (acc_set.clone() for _ in range(4))
        milestones = torch.zeros((batch, 3), dtype=torch.bool, device=operands.device)
        cursor, length = torch.zeros_like(acc), torch.zeros_like(acc)
        machine_states = torch.full((batch, steps), -1, dtype=torch.long, device=operands.device)
        for t in range(steps):
            token = actions[:, t]
            live = ~done
            length += live
            binary = live & acc_set & ((token == MUL) | (token == ADD) | (token == SUB))
            right_from_context = binary & ~pending_set & (cursor < shown)
            right = torch.where(pending_set, pending, padded[rows, cursor])
            apply_binary = binary & (pending_set | right_from_context)
            result = torch.where(token == MUL, acc * right, torch.where(token == ADD, acc + right, acc - right))

            load_product = live & ~acc_set & (token == MUL) & (cursor + 1 < shown)
            product = padded[rows, cursor] * padded[rows, cursor + 1]

            store = live & acc_set & (token == STO)
            recall = live & mem_set & (token == RCL)
            answer = live & (token == ANS)
            invalid = live & ~(apply_binary | load_product | store | recall | answer)

            acc_next = torch.where(apply_binary, result, torch.where(load_product, product, acc))
            acc_next = torch.where(recall, mem, acc_next)
            pending = torch.where(recall, acc, pending)  # its value only matters while pending_set
            pending_set = torch.where(recall, acc_set, pending_set & ~apply_binary)
            mem = torch.where(store, acc, mem)
            mem_set = mem_set | store
            acc_set = (acc_set & ~store) | load_product | recall
            cursor = cursor + right_from_context.long() + 2 * load_product.long()
            acc = acc_next
            # The states the stage-2 solution passes through (for path shaping only).
            milestones[:, 0] |= store & (mem == g1)
            milestones[:, 1] |= live & acc_set & (acc == de) & mem_set
            milestones[:, 2] |= recall & pending_set & (pending == de)
            if self.invalid_action == "end":
                ended_invalid = ended_invalid | invalid
                done = done | invalid
            done = done | answer
            # What the machine looks like after this step, without its values (for novelty bonuses).
            code = acc_set.long() + 2 * mem_set.long() + 4 * pending_set.long() + 8 * cursor
            machine_states[:, t] = torch.where(live, code, -1)
        answered = done & ~ended_invalid
        return acc, acc_set, answered, length, milestones.float().mean(1), machine_states
