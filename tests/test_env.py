import itertools
import sys
from pathlib import Path

import pytest
import torch

from distributed_agent.config import ConfigError, TrainConfig
from distributed_agent.env import (
    ADD,
    ANS,
    CTX,
    EOS,
    MUL,
    RCL,
    STO,
    SUB,
    TOOL_TOKENS,
    VOCAB_SIZE,
    ToolEnv,
    declared_target,
    tokens_to_text,
)

# ---- independent plain-Python implementations of the rules, written from SPEC.md / the docstring ----

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from tutorial_reference import tutorial_score as tutorial_reference  # noqa: E402


def declared_reference(actions, operands, stage):
    """The declared variant's table (env.py docstring), one episode at a time."""
    shown = list(operands[: (3, 4, 5)[stage]])
    acc = mem = pending = None
    cursor = 0
    for act in actions:
        if act in (MUL, ADD, SUB):
            if acc is None:
                if act == MUL and cursor + 2 <= len(shown):
                    acc = shown[cursor] * shown[cursor + 1]
                    cursor += 2
                continue
            if pending is not None:
                right, pending = pending, None
            elif cursor < len(shown):
                right = shown[cursor]
                cursor += 1
            else:
                continue
            acc = acc * right if act == MUL else acc + right if act == ADD else acc - right
        elif act == STO and acc is not None:
            mem, acc = acc, None
        elif act == RCL and mem is not None:
            pending, acc = acc, mem
        elif act == ANS:
            a, b, c, d, e = operands
            target = [a * b + c, a * b + c - d, a * b + c - d * e][stage]
            g0, g1 = a * b, a * b + c
            goals = [g0, g1, g1 - d, d * e, g1 - d * e]
            eq = [acc is not None and acc == g for g in goals]
            shaped = [
                0.25 * eq[0] + 0.5 * eq[1],
                0.25 * eq[0] + 0.5 * eq[1] + 0.75 * eq[2],
                0.2 * eq[0] + 0.4 * eq[1] + 0.6 * eq[4] + 0.6 * eq[3],
            ][stage]
            correct = acc is not None and acc == target
            return float(correct) + 0.2 * (0.0 + shaped), correct
    return 0.0, False


def random_programs(n, length, generator):
    """Mostly tool tokens (so that the interesting paths are hit), some other tokens."""
    tools = torch.tensor(TOOL_TOKENS)
    tool_actions = tools[torch.randint(0, len(TOOL_TOKENS), (n, length), generator=generator)]
    any_actions = torch.randint(0, VOCAB_SIZE, (n, length), generator=generator)
    use_any = torch.rand((n, length), generator=generator) < 0.15
    return torch.where(use_any, any_actions, tool_actions)


@pytest.mark.parametrize(
    "variant,reference,length",
    [
        ("shifted", tutorial_reference, 6),
        ("shifted", tutorial_reference, 9),  # beyond the tutorial's 7-step cut-off
        ("declared", declared_reference, 8),
    ],
)
def test_score_matches_plain_python_rules_on_100k_sequences(variant, reference, length):
    env = ToolEnv(variant)
    generator = torch.Generator().manual_seed(123)
    n = 102_000 if length != 9 else 30_000
    actions = random_programs(n, length, generator)
    operands = torch.randint(0, 10, (n, 5), generator=generator)
    stages = torch.arange(n) % 3
    reward, correct = env.score(actions, operands, stages)
    expected = [reference(a, o, s) for a, o, s in zip(actions.tolist(), operands.tolist(), stages.tolist())]
    expected_reward = torch.tensor([r for r, _ in expected], dtype=torch.float32)
    expected_correct = torch.tensor([c for _, c in expected])
    assert reward.dtype == torch.float32 and correct.dtype == torch.bool
    assert int((reward != expected_reward).sum()) == 0  # bit for bit
    assert int((correct != expected_correct).sum()) == 0
    # The test is only meaningful if the sequences cover many outcomes.
    assert 0.02 < correct.float().mean() < 0.9
    assert len(set(expected_reward.tolist())) >= 8


def test_score_with_an_integer_stage_equals_a_stage_tensor():
    env = ToolEnv("shifted")
    generator = torch.Generator().manual_seed(0)
    actions = random_programs(500, 6, generator)
    operands = torch.randint(0, 10, (500, 5), generator=generator)
    for stage in range(3):
        by_int = env.score(actions, operands, stage)
        by_tensor = env.score(actions, operands, torch.full((500,), stage))
        assert torch.equal(by_int[0], by_tensor[0]) and torch.equal(by_int[1], by_tensor[1])


def all_operands():
    return torch.tensor(list(itertools.product(range(10), repeat=5)))


SHORTEST = {0: [MUL, ADD, ANS], 1: [MUL, ADD, SUB, ANS], 2: [MUL, ADD, STO, MUL, RCL, SUB, ANS]}


@pytest.mark.parametrize("stage", [0, 1, 2])
def test_every_declared_target_is_reached_by_its_shortest_program_for_all_operands(stage):
    env = ToolEnv("declared")
    operands = all_operands()  # all 100,000 combinations
    program = SHORTEST[stage] + [EOS] * (env.max_len - len(SHORTEST[stage]))
    actions = torch.tensor(program).repeat(len(operands), 1)
    outcome = env.run(actions, operands, stage)
    assert bool(outcome.correct.all())
    assert torch.equal(outcome.answer, declared_target(operands, stage))


def test_stage2_needs_memory_no_program_without_sto_rcl_is_always_right():
    env = ToolEnv("declared")
    generator = torch.Generator().manual_seed(7)
    operands = torch.randint(0, 10, (1000, 5), generator=generator)
    programs = [list(p) + [ANS] for k in range(env.max_len) for p in itertools.product((MUL, ADD, SUB), repeat=k)]
    actions = torch.tensor([p + [EOS] * (env.max_len - len(p)) for p in programs])
    rows = actions.repeat_interleave(len(operands), 0)
    correct = env.run(rows, operands.repeat(len(programs), 1), 2).correct.view(len(programs), len(operands))
    assert not bool(correct.all(1).any())  # each memory-free program fails on some operands
    # The best of them (a*b+c, right when d*e = 0) is right on about 19% of episodes, so a greedy
    # success >= 0.99 on stage 2 (as the memory studies report) means the agent uses its memory.
    assert 0.15 < correct.float().mean(1).max() < 0.25
    with_memory = torch.tensor([SHORTEST[2] + [EOS]]).repeat(len(operands), 1)
    assert bool(env.run(with_memory, operands, 2).correct.all())


def test_declared_invalid_actions_do_nothing_but_cost_a_step():
    env = ToolEnv("declared")
    operands = torch.tensor([[3, 4, 5, 6, 7]])

    def answer(program, stage=2):
        program = program + [EOS] * (env.max_len - len(program))
        outcome = env.run(torch.tensor([program]), operands, stage)
        return outcome.answer.item() if outcome.answer_set.item() else None

    assert answer([ADD, SUB, STO, ANS]) is None  # nothing to add to, store or answer
    assert answer([RCL, MUL, ANS]) == 12  # RCL with empty memory: no-op
    assert answer([MUL, ADD, SUB, ANS], stage=0) == 17  # stage 0 shows no d: SUB is a no-op
    assert answer([MUL, MUL, MUL, MUL, ANS]) == 12 * 5 * 6 * 7  # runs out of operands: no-op
    # A token after ANS changes nothing; without ANS the episode earns nothing.
    assert answer([MUL, ANS, ADD]) == 12
    reward, correct = env.score(torch.tensor([[MUL, ADD] + [EOS] * 6]), operands, 0)
    assert reward.item() == 0.0 and not correct.item()
    # Invalid actions cost their step: 8 tokens of which 2 invalid leave no room for the program.
    late = torch.tensor([[ADD, STO, MUL, ADD, STO, MUL, RCL, SUB]])
    assert not env.score(late, operands, 2)[1].item()


def test_tutorial_scoring_has_the_shifted_targets():
    env = ToolEnv("shifted")
    operands = torch.tensor([[3, 4, 5, 6, 7]])
    declared_programs = {0: [MUL, ADD, ANS], 1: [MUL, ADD, SUB, ANS]}
    for stage, program in declared_programs.items():
        actions = torch.tensor([program + [EOS] * (6 - len(program))])
        assert not env.score(actions, operands, stage)[1].item()  # the declared program is "wrong"
    shifted = torch.tensor([[MUL, ANS, EOS, EOS, EOS, EOS]])
    reward, correct = env.score(shifted, operands, 0)
    assert correct.item() and reward.item() == pytest.approx(1.05)


def test_sample_pads_each_row_with_ctx_then_eos():
    env = ToolEnv("shifted")
    generator = torch.Generator().manual_seed(1)
    operands, context = env.sample(3, torch.tensor([0, 1, 2]), generator)
    assert operands.shape == (3, 5) and context.shape == (3, 6)
    assert context[0].tolist() == operands[0, :3].tolist() + [CTX, EOS, EOS]
    assert context[1].tolist() == operands[1, :4].tolist() + [CTX, EOS]
    assert context[2].tolist() == operands[2].tolist() + [CTX]
    _, single_stage = env.sample(4, 0, generator)
    assert single_stage.shape == (4, 4) and bool((single_stage[:, 3] == CTX).all())
    assert int(operands.min()) >= 0 and int(operands.max()) <= 9


def test_tokens_to_text_and_bad_arguments():
    assert tokens_to_text([MUL, ADD, STO, RCL, ANS, 7]) == "MUL ADD STO RCL ANS 7"
    assert tokens_to_text(torch.tensor([SUB, EOS, CTX])) == "SUB EOS CTX"
    with pytest.raises(ConfigError, match="variant: must be one of shifted, declared"):
        TrainConfig(variant="easy")  # the config checks the rules' values; the environment takes them
    with pytest.raises(ValueError, match="stage"):
        ToolEnv("shifted").score(torch.zeros(1, 6, dtype=torch.long), torch.zeros(1, 5, dtype=torch.long), 3)


def test_path_shaping_rewards_the_stage2_solution_states_only_when_answering():
    plain, shaped = ToolEnv("declared"), ToolEnv("declared", path_shaping=0.3)
    operands = torch.tensor([[3, 4, 5, 6, 7]] * 4)
    programs = torch.tensor(
        [
            SHORTEST[2] + [EOS],  # all three states, correct
            [MUL, ADD, STO, RCL, ANS, EOS, EOS, EOS],  # memory held a*b+c only
            [MUL, ADD, STO, MUL, RCL, SUB, EOS, EOS],  # all three states but no ANS
            [MUL, ADD, SUB, ANS, EOS, EOS, EOS, EOS],  # none
        ]
    )
    base, _ = plain.score(programs, operands, 2)
    bonus = shaped.score(programs, operands, 2)[0] - base
    assert torch.allclose(bonus, torch.tensor([0.3, 0.1, 0.0, 0.0]), atol=1e-6)
    for stage in (0, 1):  # no bonus outside stage 2
        assert torch.equal(shaped.score(programs, operands, stage)[0], plain.score(programs, operands, stage)[0])


def test_invalid_action_rule_end_stops_the_episode_without_an_answer():
    operands = torch.tensor([[3, 4, 5, 6, 7]])
    program = torch.tensor([[ADD, MUL, ADD, ANS, EOS, EOS, EOS, EOS]])  # ADD on an empty accumulator
    reward, correct = ToolEnv("declared").score(program, operands, 0)
    assert correct.item() and reward.item() > 1
    reward, correct = ToolEnv("declared", invalid_action="end").score(program, operands, 0)
    assert not correct.item() and reward.item() == 0.0
    valid = torch.tensor([SHORTEST[2] + [EOS]])
    assert ToolEnv("declared", invalid_action="end").score(valid, operands, 2)[1].item()  # tokens after ANS are free
    with pytest.raises(ConfigError, match="invalid_action: applies to variant declared only"):
        TrainConfig(invalid_action="end")  # the config checks the rules' values; the environment takes them
