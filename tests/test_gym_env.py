"""The Gymnasium environment: gymnasium's own checker, and the rewards and correctness of ToolEnv."""

import numpy as np
import pytest
import torch

gymnasium = pytest.importorskip("gymnasium", reason="the baselines extra is not installed")
from gymnasium.utils.env_checker import check_env  # noqa: E402

from distributed_agent.config import ConfigError  # noqa: E402
from distributed_agent.curriculum import Curriculum  # noqa: E402
from distributed_agent.env import ANS, MUL, TOOL_TOKENS, ToolEnv  # noqa: E402
from distributed_agent.gym_env import (  # noqa: E402
    ENV_IDS,
    CurriculumStages,
    ToolGymEnv,
    ToolVectorEnv,
    curriculum_stages,
)

RULES = [  # (variant, invalid_action, path_shaping)
    ("shifted", "noop", 0.0),
    ("declared", "noop", 0.0),
    ("declared", "end", 0.0),
    ("declared", "noop", 0.5),
]


@pytest.mark.parametrize("variant", ["shifted", "declared"])
def test_registered_ids_pass_gymnasiums_checker(variant):
    env = gymnasium.make(ENV_IDS[variant], stage=2)
    check_env(env.unwrapped, skip_render_check=True)
    check_env(ToolGymEnv(variant, action_space="tools", observe_step=True, stage=1, max_len=5), skip_render_check=True)


def random_programs(count: int, steps: int, seed: int) -> torch.Tensor:
    """Half uniform over all 18 tokens, half over the six tools (these answer correctly far more often)."""
    generator = torch.Generator().manual_seed(seed)
    tokens = torch.randint(0, 18, (count, steps), generator=generator)
    tools = torch.tensor(TOOL_TOKENS)[torch.randint(0, 6, (count, steps), generator=generator)]
    return torch.where(torch.arange(count)[:, None] % 2 == 0, tokens, tools)


@pytest.mark.parametrize("variant, invalid_action, path_shaping", RULES)
def test_vector_env_rewards_and_correctness_equal_toolenv_score_on_100000_random_programs(
    variant, invalid_action, path_shaping
):
    count = 100_000
    vector = ToolVectorEnv(
        count, variant, invalid_action=invalid_action, path_shaping=path_shaping, stages=lambda numbers: numbers % 3
    )
    vector.reset(seed=7)
    operands, stages = vector.episodes.operands.clone(), vector.episodes.stages.clone()
    programs = random_programs(count, vector.episodes.env.steps_read, seed=11)
    reward, correct = np.zeros(count, np.float32), np.zeros(count, bool)
    done, length = np.zeros(count, bool), np.zeros(count, int)
    for t in range(programs.shape[1]):
        _, step_reward, terminated, truncated, info = vector.step(programs[:, t].numpy())
        assert not truncated.any()
        ending = terminated & ~done
        assert (step_reward[~terminated] == 0).all()  # the only reward comes at the end
        reward[ending], correct[ending], length[ending] = step_reward[ending], info["correct"][ending], t + 1
        done |= terminated
    assert done.all()
    expected_reward, expected_correct = ToolEnv(variant, None, 0.2, path_shaping, invalid_action).score(
        programs, operands, stages
    )
    assert np.array_equal(reward, expected_reward.numpy())
    assert np.array_equal(correct, expected_correct.numpy())
    assert correct.sum() > 100  # the comparison covers correct programs too
    if invalid_action == "end":
        assert (length < programs.shape[1]).mean() > 0.5  # invalid tokens end most episodes early


@pytest.mark.parametrize("variant, invalid_action, path_shaping", RULES[:3])
def test_single_env_plays_a_program_as_toolenv_scores_it(variant, invalid_action, path_shaping):
    env = ToolGymEnv(variant, invalid_action=invalid_action, path_shaping=path_shaping)
    rules = ToolEnv(variant, None, 0.2, path_shaping, invalid_action)
    programs = random_programs(600, rules.steps_read, seed=3)
    for i, program in enumerate(programs):
        observation, _ = env.reset(seed=i, options={"stage": i % 3})
        operands = env.unwrapped.episodes.operands.clone()
        assert observation[0] == i % 3
        for token in program.tolist():
            observation, reward, terminated, truncated, info = env.step(token)
            assert observation[6] == token  # the previous token
            if terminated:
                break
        expected_reward, expected_correct = rules.score(program[None, : int(env.episodes.steps[0])], operands, i % 3)
        assert reward == pytest.approx(expected_reward.item(), abs=0)
        assert info["correct"] == bool(expected_correct.item())


def test_observation_shows_the_stages_operands_only_and_the_tools_space_maps_to_tool_tokens():
    env = ToolGymEnv("declared", action_space="tools", observe_step=True, stage=0)
    observation, _ = env.reset(seed=1)
    assert observation[0] == 0 and (observation[4:6] == 10).all() and observation[6] == 18 and observation[7] == 0
    observation, *_ = env.step(TOOL_TOKENS.index(MUL))
    assert observation[6] == MUL and observation[7] == 1
    _, _, terminated, _, _ = env.step(TOOL_TOKENS.index(ANS))
    assert terminated


def test_curriculum_stages_give_each_episode_the_stage_our_agent_trains_it_on():
    curriculum = Curriculum("mixed")
    stages = curriculum_stages(curriculum, batch_size=8)
    numbers = torch.arange(8 * 60)
    expected = torch.cat([curriculum.batch_stages(update, 8) for update in range(1, 61)])
    assert torch.equal(stages(numbers), expected)
    wrapped = CurriculumStages(ToolGymEnv("shifted"), Curriculum("one_stage"), batch_size=2)
    seen = [wrapped.reset(seed=n)[0][0] for n in range(62)]
    assert seen[:60] == [0] * 60 and seen[60:] == [1, 1]  # update 31: the schedule's stage 1


@pytest.mark.parametrize(
    "keywords, field",
    [
        ({"variant": "nope"}, "variant"),
        ({"stage": 3}, "stage"),
        ({"invalid_action": "end"}, "invalid_action"),  # declared only
        ({"action_space": "some"}, "action_space"),
        ({"max_len": 0}, "max_len"),
    ],
)
def test_bad_keywords_are_one_line_naming_the_field(keywords, field):
    with pytest.raises(ConfigError, match=rf"^{field}: "):
        ToolGymEnv(**keywords)


def test_stepping_after_the_end_or_outside_the_action_space_is_refused():
    env = ToolGymEnv("shifted", stage=0)
    env.reset(seed=0)
    with pytest.raises(ConfigError, match="^action: "):
        env.step(18)
    env.step(ANS)
    with pytest.raises(RuntimeError, match="reset"):
        env.step(ANS)
