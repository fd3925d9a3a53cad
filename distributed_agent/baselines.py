"""Baselines: Stable-Baselines3 PPO and A2C, and sb3-contrib's RecurrentPPO, trained on the Gymnasium
environment (gym_env.py) under our conventions, so that sweeps, reports and comparisons take them
as they take our agent (`agent: ppo` in a spec; the [baselines] extra).

- Budget and curriculum: `updates x batch_size` episodes; episode n's stage is the one our agent's
  curriculum gives the same episode (gym_env.curriculum_stages), and `update` counts blocks of
  batch_size episodes finished. SB3 learns one rollout at a time, so a run may overrun its budget
  by less than one rollout (the episodes it used are what it reports).
- Evaluation: after the rollout that crosses each eval_every-th update, greedily on the same tasks
  as our agent's (evaluation.py draws them; greedy_rollouts below plays them).
- Numbers depend on the config and seed only: each run keeps its own global random streams (SB3
  draws actions from torch's and minibatches from numpy's), restored around every piece of its work.
- Checkpoints hold weights, optimizer, random streams, the episodes in flight and the counters as
  tensors and plain values (checkpoint.py reads them with weights_only=True: data, never code;
  SB3's own zip files unpickle code and are not used). A resumed run equals one run straight through.
- Baselines train on the CPU (SB3's advice for MLP policies), whatever `device` says.
"""

from __future__ import annotations

import importlib
import math
import random
import time
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np
import torch
from stable_baselines3.common.logger import Logger
from stable_baselines3.common.torch_layers import FlattenExtractor
from stable_baselines3.common.vec_env.base_vec_env import VecEnv

from .checkpoint import load_progress, progress_state
from .config import TrainConfig
from .curriculum import Curriculum
from .env import ToolEnv
from .evaluation import evaluate
from .gym_env import Episodes, ToolVectorEnv, curriculum_stages
from .state import Evaluation

RULES = ("max_len", "answer_shaping", "path_shaping", "invalid_action", "action_space")  # tool_env's keywords
ALGORITHMS = {  # agent: (module, class, policy)
    "ppo": ("stable_baselines3", "PPO", "MlpPolicy"),
    "a2c": ("stable_baselines3", "A2C", "MlpPolicy"),
    "recurrent_ppo": ("sb3_contrib", "RecurrentPPO", "MlpLstmPolicy"),
}
SB3_NAMES = {  # our field: SB3's keyword (None values leave SB3's default)
    "lr": "learning_rate",
    "entropy_coef": "ent_coef",
    "value_coef": "vf_coef",
    "grad_clip": "max_grad_norm",
    "rollout_steps": "n_steps",
    "minibatch_size": "batch_size",
    "epochs": "n_epochs",
    "clip_range": "clip_range",
    "gamma": "gamma",
    "gae_lambda": "gae_lambda",
}


class Sb3VecEnv(VecEnv):
    """SB3's VecEnv interface over a ToolVectorEnv (SB3 does not take gymnasium's vector envs)."""

    def __init__(self, vector: ToolVectorEnv):
        self.vector = vector
        super().__init__(vector.num_envs, vector.single_observation_space, vector.single_action_space)

    def reset(self):
        observations, _ = self.vector.reset(seed=self._seeds[0])
        self._reset_seeds()
        self._reset_options()
        return observations

    def step_async(self, actions):
        self._actions = actions

    def step_wait(self):
        observations, reward, terminated, truncated, info = self.vector.step(self._actions)
        dones = terminated | truncated
        infos = [{} for _ in range(self.num_envs)]
        for i in np.flatnonzero(dones):  # the task ended (no time limit: nothing to bootstrap)
            infos[i] = {"terminal_observation": info["final_obs"][i], "is_success": bool(info["correct"][i])}
        return observations, reward, dones, infos

    def close(self):
        pass

    def get_attr(self, attr_name, indices=None):
        return [getattr(self.vector, attr_name)] * len(self._get_indices(indices))

    def set_attr(self, attr_name, value, indices=None):
        setattr(self.vector, attr_name, value)

    def env_method(self, method_name, *method_args, indices=None, **method_kwargs):
        return [getattr(self.vector, method_name)(*method_args, **method_kwargs)] * len(self._get_indices(indices))

    def env_is_wrapped(self, wrapper_class, indices=None):
        return [False] * len(self._get_indices(indices))


class OneHotFeatures(FlattenExtractor):
    """SB3's own features of a MultiDiscrete observation (one one-hot block per entry), their
    count as a Python int: SB3 computes a numpy integer, which torch's LSTM refuses."""

    def __init__(self, observation_space):
        super().__init__(observation_space)
        self._features_dim = int(self._features_dim)


@dataclass
class BaselineRun:
    """One baseline's run: the fields train.py and trainable.py read of a TrainState, and SB3's model."""

    config: TrainConfig
    device: torch.device
    env: ToolEnv
    vector: ToolVectorEnv
    model: object  # the SB3 algorithm
    curriculum: Curriculum
    random: dict  # the run's own global random streams (see own_random_streams)
    update: int = 0
    episodes: int = 0
    seconds: float = 0.0
    last_loss: float = math.nan
    history: list[Evaluation] = field(default_factory=list)
    changes: list[dict] = field(default_factory=list)  # never any: a schedule is ours only


def random_streams() -> dict:
    """The process's global random streams, as tensors and plain values (checkpointable)."""
    _, keys, position, has_gauss, cached = np.random.get_state()
    version, python_state, gauss = random.getstate()
    return {
        "torch": torch.get_rng_state(),
        "numpy": [torch.from_numpy(keys.astype(np.int64)), int(position), int(has_gauss), float(cached)],
        "python": [version, list(python_state), gauss],
    }


def set_random_streams(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    keys, position, has_gauss, cached = state["numpy"]
    np.random.set_state(("MT19937", keys.numpy().astype(np.uint32), position, has_gauss, cached))
    version, python_state, gauss = state["python"]
    random.setstate((version, tuple(python_state), gauss))


@contextmanager
def own_random_streams(run: BaselineRun | None = None):
    """Run the block on `run`'s random streams (None: on copies of the caller's), then give the
    caller its own back: the members of a population never draw from each other's streams."""
    caller = random_streams()
    if run is not None:
        set_random_streams(run.random)
    try:
        yield
    finally:
        if run is not None:
            run.random = random_streams()
        set_random_streams(caller)


def new_run(config: TrainConfig) -> BaselineRun:
    """A baseline at update 0; SB3 seeds its weights, the action draws and the tasks from config.seed."""
    module, class_name, policy = ALGORITHMS[config.agent]
    algorithm = getattr(importlib.import_module(module), class_name)
    curriculum = Curriculum(config.curriculum, config.mastery_threshold)
    vector = ToolVectorEnv(
        config.parallel_envs,
        config.variant,
        observe_step=config.observe_step,
        stages=curriculum_stages(curriculum, config.batch_size),
        **{name: getattr(config, name) for name in RULES},
    )
    width = config.hidden_size
    policy_kwargs = {"net_arch": [width, width], "features_extractor_class": OneHotFeatures}
    if config.agent == "recurrent_ppo":
        policy_kwargs.update(lstm_hidden_size=width, net_arch=[width])
    hyperparameters = {sb3: getattr(config, ours) for ours, sb3 in SB3_NAMES.items()}
    # None leaves SB3's default; A2C's are always None (config.py refuses PPO-only values for it).
    hyperparameters = {name: value for name, value in hyperparameters.items() if value is not None}
    with own_random_streams():
        model = algorithm(
            policy,
            Sb3VecEnv(vector),
            seed=config.seed,
            device="cpu",
            policy_kwargs=policy_kwargs,
            verbose=0,
            **hyperparameters,
        )
        # No output; its values stay readable (loss below). A Logger of no formats, not
        # configure(None, []): that makes an empty /tmp/SB3-<time> folder per model.
        model.set_logger(Logger(folder=None, output_formats=[]))
        streams = random_streams()
    return BaselineRun(config, torch.device("cpu"), vector.episodes.env, vector, model, curriculum, streams)


def rollout_steps(run: BaselineRun) -> int:
    return run.model.n_steps * run.model.n_envs


def last_loss(run: BaselineRun) -> float:
    values = run.model.logger.name_to_value
    if "train/loss" in values:
        return float(values["train/loss"])
    if "train/policy_loss" in values:  # A2C logs the parts of its loss
        config = run.config
        return float(
            values["train/policy_loss"]
            + config.value_coef * values["train/value_loss"]
            + config.entropy_coef * values["train/entropy_loss"]
        )
    return math.nan


def run_updates(members: list[BaselineRun], callback=None, until: int | None = None) -> None:
    """train.run_updates for baselines: each member learns rollout after rollout up to its next
    evaluation (or `until`), is evaluated, then the callback sees every member."""
    from .train import solved

    config = members[0].config
    until = config.updates if until is None else min(until, config.updates)
    while active := [run for run in members if run.update < until and not solved(run)]:
        for run in active:
            started = time.perf_counter()
            next_evaluation = min((run.update // config.eval_every + 1) * config.eval_every, until)
            with own_random_streams(run):
                while run.update < next_evaluation:
                    run.model.learn(rollout_steps(run), reset_num_timesteps=False, log_interval=None)
                    run.episodes = run.vector.episodes_finished
                    run.update = min(run.episodes // config.batch_size, config.updates)
                    run.last_loss = last_loss(run)
                ((success, reward),) = evaluate([run], config.eval_episodes, tag=run.update)
            run.curriculum.observe(success, run.episodes)
            run.seconds += time.perf_counter() - started
            stage = run.curriculum.newest_stage(run.update)
            run.history.append(Evaluation(run.update, run.episodes, stage, success, reward, run.last_loss, run.seconds))
        if callback is not None:
            callback(members)


@torch.no_grad()
def greedy_rollouts(members: list[BaselineRun], stage: int, episodes: int, generators: list[torch.Generator]):
    """evaluation.greedy_rollouts for baselines: the same tasks, each member's greedy program."""
    env = members[0].env
    all_operands, all_actions = [], []
    for run, generator in zip(members, generators):
        operands, _ = env.sample(episodes, stage, generator)
        playing = Episodes(env, episodes, run.config.action_space, run.config.observe_step)
        playing.start(torch.ones(episodes, dtype=torch.bool), torch.full((episodes,), stage), operands)
        state, starts = None, np.ones(episodes, dtype=bool)
        with own_random_streams():  # predict(deterministic=True) draws nothing; make sure of it
            for _ in range(env.steps_read):
                actions, state = run.model.predict(
                    playing.observations(), state=state, episode_start=starts, deterministic=True
                )
                playing.act(actions)
                starts = np.zeros(episodes, dtype=bool)
        all_operands.append(operands)
        all_actions.append(playing.actions)
    operands, actions = torch.stack(all_operands), torch.stack(all_actions)
    return operands, actions, env.run(actions.flatten(0, 1), operands.flatten(0, 1), stage)


# Checkpoints: every member's state as tensors and plain values (see the module's doc).


def member_state(run: BaselineRun) -> dict:
    model, episodes = run.model, run.vector.episodes
    state = {
        **progress_state(run),
        "policy": model.policy.state_dict(),
        "optimizer": model.policy.optimizer.state_dict(),
        "random": run.random,
        "episodes_in_flight": {
            "operands": episodes.operands.clone(),
            "stages": episodes.stages.clone(),
            "actions": episodes.actions.clone(),
            "steps": episodes.steps.clone(),
            "over": episodes.over.clone(),
            "generator": episodes.generator.get_state(),
            "started": run.vector.episodes_started,
            "finished": run.vector.episodes_finished,
        },
        "sb3": {"num_timesteps": model.num_timesteps, "n_updates": model._n_updates},
    }
    if model._last_obs is not None:
        state["sb3"]["last_obs"] = torch.from_numpy(model._last_obs)
        state["sb3"]["last_episode_starts"] = torch.from_numpy(model._last_episode_starts)
    if getattr(model, "_last_lstm_states", None) is not None:
        lstm = model._last_lstm_states
        state["sb3"]["lstm"] = [tensor.clone() for tensor in (*lstm.pi, *lstm.vf)]
    return state


def load_member_state(run: BaselineRun, state: dict) -> None:
    model, episodes = run.model, run.vector.episodes
    model.policy.load_state_dict(state["policy"])
    model.policy.optimizer.load_state_dict(state["optimizer"])
    run.random = state["random"]
    in_flight = state["episodes_in_flight"]
    for name in ("operands", "stages", "actions", "steps", "over"):
        getattr(episodes, name).copy_(in_flight[name])
    episodes.generator.set_state(in_flight["generator"])
    run.vector.episodes_started = in_flight["started"]
    run.vector.episodes_finished = in_flight["finished"]
    sb3 = state["sb3"]
    model.num_timesteps, model._n_updates = sb3["num_timesteps"], sb3["n_updates"]
    if "last_obs" in sb3:
        model._last_obs = sb3["last_obs"].numpy()
        model._last_episode_starts = sb3["last_episode_starts"].numpy()
    if "lstm" in sb3:
        pi_h, pi_c, vf_h, vf_c = sb3["lstm"]
        model._last_lstm_states = type(model._last_lstm_states)((pi_h, pi_c), (vf_h, vf_c))
    load_progress(run, state)
