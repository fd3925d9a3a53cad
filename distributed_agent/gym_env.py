"""The tool environment as a Gymnasium environment: one task per episode, scored by ToolEnv itself.

    import gymnasium
    import distributed_agent.gym_env  # registers the ids below

    env = gymnasium.make("distributed_agent/ToolUse-declared-v0", stage=2, invalid_action="end")

Ids: `distributed_agent/ToolUse-shifted-v0` (the tutorial's scoring) and
`distributed_agent/ToolUse-declared-v0`; every ToolEnv option is a keyword (max_len,
answer_shaping, path_shaping, invalid_action), as are action_space, stage and observe_step.

Episode: one task of one stage: the `stage` keyword, `reset(options={"stage": k})`, or a
CurriculumStages wrapper that draws it from a training curriculum. Each step emits one token. The
episode terminates at ANS, at an invalid token under invalid_action="end", or when the tokens that
are read run out (max_len; at most 7 under the tutorial's rules), and its one reward comes then:
ToolEnv.run's reward for the program emitted, the number ToolEnv.score gives that program.

Observation: MultiDiscrete, one flat vector of integers:

| index | what                                                       | values                 |
|-------|------------------------------------------------------------|------------------------|
| 0     | stage                                                      | 0..2                   |
| 1..5  | operands a..e; 10 where the stage does not show one        | 0..10                  |
| 6     | the previous token; 18 before the first                    | 0..18                  |
| 7     | tokens emitted so far (observe_step=True only)             | 0..steps read          |

The previous token, not the whole program: a policy without memory cannot tell the two MULs of
the stage-2 program apart (observe_step gives it a clock; a recurrent policy needs none).
Action: Discrete(18), a token; with action_space="tools", Discrete(6): MUL ADD SUB ANS STO RCL.

ToolVectorEnv runs N such episodes as one batch of torch tensors (a gymnasium VectorEnv that resets
a finished episode in the same step; its last observation is in info["final_obs"]).
"""

from __future__ import annotations

from collections.abc import Callable

import gymnasium
import numpy as np
import torch
from gymnasium import spaces
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space

from .config import VARIANTS, ConfigError, TrainConfig
from .curriculum import Curriculum
from .env import EOS, NUM_STAGES, OPERANDS_SHOWN, TOOL_TOKENS, VOCAB_SIZE, ToolEnv, tokens_to_text

NOT_SHOWN = 10  # the observation of an operand the stage does not show
NO_TOKEN = VOCAB_SIZE  # the previous token before the first
ENV_IDS = {variant: f"distributed_agent/ToolUse-{variant}-v0" for variant in VARIANTS}
SHOWN_PER_STAGE = torch.tensor(OPERANDS_SHOWN)
StageSource = Callable[[torch.Tensor], torch.Tensor]  # episode numbers LongTensor[k] -> their stages


def tool_env(
    variant: str = "shifted",
    max_len: int | None = None,
    answer_shaping: float = 0.2,
    path_shaping: float = 0.0,
    invalid_action: str = "noop",
    action_space: str = "all",
) -> ToolEnv:
    """The ToolEnv of these options, checked by TrainConfig (one ConfigError line on a bad one)."""
    config = TrainConfig(
        variant=variant,
        max_len=max_len,
        answer_shaping=answer_shaping,
        path_shaping=path_shaping,
        invalid_action=invalid_action,
        action_space=action_space,
    )
    return ToolEnv.of(config)


def checked_stage(stage) -> int:
    if isinstance(stage, bool) or not isinstance(stage, int | np.integer) or stage not in range(NUM_STAGES):
        raise ConfigError(f"stage: must be one of {', '.join(map(str, range(NUM_STAGES)))} (got {stage!r})")
    return int(stage)


class Episodes:
    """N episodes played one token at a time, as torch tensors: the state behind both environments.
    Each step scores every program so far with ToolEnv.run; an episode is over once its program has
    used every token it emitted (Outcome.length), which no later token can change."""

    def __init__(self, env: ToolEnv, count: int, action_space: str = "all", observe_step: bool = False):
        self.env = env
        self.count = count
        self.observe_step = observe_step
        self.tokens = torch.tensor(TOOL_TOKENS) if action_space == "tools" else torch.arange(VOCAB_SIZE)
        self.generator = torch.Generator()
        self.operands = torch.zeros((count, 5), dtype=torch.long)
        self.stages = torch.zeros(count, dtype=torch.long)
        self.actions = torch.full((count, env.steps_read), EOS, dtype=torch.long)
        self.steps = torch.zeros(count, dtype=torch.long)
        self.over = torch.zeros(count, dtype=torch.bool)

    def observation_space(self) -> spaces.MultiDiscrete:
        sizes = [NUM_STAGES, *[NOT_SHOWN + 1] * 5, NO_TOKEN + 1]
        return spaces.MultiDiscrete(sizes + [self.env.steps_read + 1] * self.observe_step)

    def action_space(self) -> spaces.Discrete:
        return spaces.Discrete(len(self.tokens))

    def start(self, slots: torch.Tensor, stages: torch.Tensor, operands: torch.Tensor | None = None) -> None:
        """New tasks in `slots` (BoolTensor[N]): these stages, these operands or fresh draws."""
        if operands is None:
            operands = torch.randint(0, 10, (int(slots.sum()), 5), generator=self.generator)
        self.operands[slots] = operands
        self.stages[slots] = stages
        self.actions[slots] = EOS
        self.steps[slots] = 0
        self.over[slots] = False

    def observations(self) -> np.ndarray:
        shown = torch.arange(5) < SHOWN_PER_STAGE[self.stages][:, None]
        operands = torch.where(shown, self.operands, NOT_SHOWN)
        last = self.actions.gather(1, (self.steps - 1).clamp(min=0)[:, None])[:, 0]
        previous = torch.where(self.steps > 0, last, NO_TOKEN)
        columns = [self.stages[:, None], operands, previous[:, None]] + [self.steps[:, None]] * self.observe_step
        return torch.cat(columns, 1).numpy()

    def act(self, actions) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Emit one token per live episode (`actions`: indices into the action space); returns
        (reward float32[N], over bool[N], correct bool[N]), reward and correct 0 until over."""
        live = ~self.over
        tokens = self.tokens[torch.as_tensor(np.asarray(actions), dtype=torch.long)]
        rows = torch.arange(self.count)[live]
        self.actions[rows, self.steps[live]] = tokens[live]
        self.steps += live
        outcome = self.env.run(self.actions, self.operands, self.stages)
        ending = live & (outcome.length <= self.steps)
        self.over |= ending
        reward = torch.where(ending, outcome.reward, 0.0)
        return reward.numpy(), ending.numpy(), (ending & outcome.correct).numpy()


class ToolGymEnv(gymnasium.Env):
    """One task per episode; see the module's doc for the spaces and the keywords."""

    metadata = {"render_modes": ["ansi"]}

    def __init__(
        self,
        variant: str = "shifted",
        max_len: int | None = None,
        answer_shaping: float = 0.2,
        path_shaping: float = 0.0,
        invalid_action: str = "noop",
        action_space: str = "all",
        stage: int = 0,
        observe_step: bool = False,
        render_mode: str | None = None,
    ):
        if render_mode not in (None, "ansi"):
            raise ConfigError(f"render_mode: must be ansi or None (got {render_mode!r})")
        env = tool_env(variant, max_len, answer_shaping, path_shaping, invalid_action, action_space)
        self.stage = checked_stage(stage)
        self.render_mode = render_mode
        self.episodes = Episodes(env, 1, action_space, bool(observe_step))
        self.observation_space = self.episodes.observation_space()
        self.action_space = self.episodes.action_space()

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        if seed is not None or not hasattr(self, "_seeded"):  # the tasks follow gymnasium's seeding
            self.episodes.generator.manual_seed(int(self.np_random.integers(2**63 - 1)))
            self._seeded = True
        stage = checked_stage((options or {}).get("stage", self.stage))
        self.episodes.start(torch.ones(1, dtype=torch.bool), torch.tensor([stage]))
        return self.episodes.observations()[0], {"stage": stage}

    def step(self, action):
        if not self.action_space.contains(action):
            raise ConfigError(f"action: must be an integer in 0..{self.action_space.n - 1} (got {action!r})")
        if self.episodes.over[0]:
            raise RuntimeError("the episode is over: call reset()")
        reward, over, correct = self.episodes.act([action])
        info = {"correct": bool(correct[0])} if over[0] else {}
        return self.episodes.observations()[0], float(reward[0]), bool(over[0]), False, info

    def render(self):
        if self.render_mode == "ansi":
            episodes, steps = self.episodes, int(self.episodes.steps[0])
            shown = episodes.operands[0, : OPERANDS_SHOWN[int(episodes.stages[0])]].tolist()
            return f"stage {int(episodes.stages[0])} operands {shown}: {tokens_to_text(episodes.actions[0, :steps])}"
        return None


def constant_stage(stage: int) -> StageSource:
    stage = checked_stage(stage)
    return lambda numbers: torch.full_like(numbers, stage)


def curriculum_stages(curriculum: Curriculum, batch_size: int) -> StageSource:
    """Episode n's stage as the curriculum gives it to the (n mod batch_size)-th episode of batch
    n // batch_size: the stages, and their shares, our agent trains on after as many episodes."""

    def stages(numbers: torch.Tensor) -> torch.Tensor:
        updates = numbers // batch_size + 1
        result = torch.empty_like(numbers)
        for update in updates.unique().tolist():  # one batch's stages per update the episodes fall in
            here = updates == update
            result[here] = curriculum.batch_stages(update, batch_size)[numbers[here] % batch_size]
        return result

    return stages


class CurriculumStages(gymnasium.Wrapper):
    """Each episode's stage drawn by a training curriculum (see curriculum_stages)."""

    def __init__(self, env: gymnasium.Env, curriculum: Curriculum, batch_size: int):
        super().__init__(env)
        self.curriculum = curriculum
        self.source = curriculum_stages(curriculum, batch_size)
        self.episodes_started = 0

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        stage = int(self.source(torch.tensor([self.episodes_started]))[0])
        self.episodes_started += 1
        return self.env.reset(seed=seed, options={**(options or {}), "stage": stage})


class ToolVectorEnv(VectorEnv):
    """`num_envs` episodes at once (torch, batched); a finished one is reset in the same step, its
    last observation in info["final_obs"]. Each new episode's stage comes from `stages`, given the
    episode's number (0, 1, ... in the order they start); `stage` fixes it."""

    metadata = {"autoreset_mode": AutoresetMode.SAME_STEP}

    def __init__(
        self,
        num_envs: int,
        variant: str = "shifted",
        stage: int = 0,
        observe_step: bool = False,
        stages: StageSource | None = None,
        **rules,
    ):
        """`rules`: tool_env's other keywords (max_len, answer_shaping, ..., action_space)."""
        if isinstance(num_envs, bool) or not isinstance(num_envs, int) or num_envs < 1:
            raise ConfigError(f"num_envs: must be an integer >= 1 (got {num_envs!r})")
        env = tool_env(variant, **rules)
        self.num_envs = num_envs
        self.episodes = Episodes(env, num_envs, rules.get("action_space", "all"), bool(observe_step))
        self.stages = constant_stage(stage) if stages is None else stages
        self.single_observation_space = self.episodes.observation_space()
        self.single_action_space = self.episodes.action_space()
        self.observation_space = batch_space(self.single_observation_space, num_envs)
        self.action_space = batch_space(self.single_action_space, num_envs)
        self.episodes_started = 0
        self.episodes_finished = 0

    def _start(self, slots: torch.Tensor) -> None:
        count = int(slots.sum())
        numbers = torch.arange(self.episodes_started, self.episodes_started + count)
        self.episodes.start(slots, self.stages(numbers))
        self.episodes_started += count

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        if seed is not None:
            self.episodes.generator.manual_seed(seed)
        self._start(torch.ones(self.num_envs, dtype=torch.bool))
        return self.episodes.observations(), {}

    def step(self, actions):
        reward, over, correct = self.episodes.act(actions)
        info = {}
        if over.any():
            info = {"final_obs": self.episodes.observations(), "_final_obs": over, "correct": correct, "_correct": over}
            self.episodes_finished += int(over.sum())
            self._start(torch.from_numpy(over))
        terminated = over.copy()
        return self.episodes.observations(), reward, terminated, np.zeros_like(terminated), info


for _variant, _id in ENV_IDS.items():
    if _id not in gymnasium.registry:
        gymnasium.register(_id, entry_point="distributed_agent.gym_env:ToolGymEnv", kwargs={"variant": _variant})
