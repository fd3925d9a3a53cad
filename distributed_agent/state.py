"""The state of one training run as plain data, and how a run starts (`new_run`).

Everything that changes while a run trains is here, so that saving it (checkpoint.py) and
training it (update.py, train.py) read the same fields.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from .config import TrainConfig
from .curriculum import Curriculum
from .env import TOOL_TOKENS, VOCAB_SIZE, Outcome, ToolEnv
from .exploration import Exploration, build_methods
from .model import ActorCritic, Rollout
from .runtime import resolve_device


@dataclass
class Evaluation:
    """Greedy success (share correct) and mean reward per stage after `update` updates."""

    update: int
    episodes: int
    stage: int  # the newest stage trained at this point
    success: list[float]
    reward: list[float]
    loss: float  # loss of the last update
    seconds: float  # training time so far


@dataclass
class TrainState:
    config: TrainConfig
    device: torch.device
    env: ToolEnv
    model: ActorCritic
    optimizer: torch.optim.Optimizer
    curriculum: Curriculum
    generator: torch.Generator  # every random draw of training
    action_mask: torch.Tensor | None  # BoolTensor[V] of the tokens the policy may emit
    exploration: list[Exploration]  # the methods the config switches on
    update: int = 0
    episodes: int = 0
    seconds: float = 0.0
    last_loss: float = math.nan
    history: list[Evaluation] = field(default_factory=list)
    changes: list[dict] = field(default_factory=list)  # hyperparameter changes, as schedule entries (schedule.py)


@dataclass
class Batch:
    """One update's episodes, what the exploration hooks see."""

    operands: torch.Tensor  # LongTensor[B, 5]
    stages: torch.Tensor  # LongTensor[B]
    rollout: Rollout
    outcome: Outcome
    reward: torch.Tensor  # FloatTensor[B]: the environment's, then with bonuses
    policy: Callable[..., Rollout] | None = None  # (context, stages, steps, forced=None): the member's model


def new_run(config: TrainConfig) -> TrainState:
    """A run at update 0: its weights, tasks and sampling all follow from config.seed."""
    if config.agent != "ours":  # a Stable-Baselines3 agent (the [baselines] extra)
        from . import baselines

        return baselines.new_run(config)
    device = resolve_device(config.device)
    torch.manual_seed(config.seed)  # the model's initial weights
    env = ToolEnv.of(config)
    action_mask = None
    if config.action_space == "tools":
        action_mask = torch.zeros(VOCAB_SIZE, dtype=torch.bool, device=device)
        action_mask[list(TOOL_TOKENS)] = True
    model = ActorCritic(config.hidden_size, config.init, policy_head=config.policy_head).to(device)
    # The fused Adam is 3x faster than the default loop on CPU; it exists on CPU and CUDA.
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr, fused=True)
    return TrainState(
        config=config,
        device=device,
        env=env,
        model=model,
        optimizer=optimizer,
        curriculum=Curriculum(config.curriculum, config.mastery_threshold),
        generator=torch.Generator(device).manual_seed(config.seed),
        action_mask=action_mask,
        exploration=build_methods(config, env, device),
    )


def new_population(config: TrainConfig, seeds: list[int]) -> list[TrainState]:
    """One run per seed under `config`, each as `new_run` makes it alone: a population."""
    return [new_run(config.replace(seed=seed)) for seed in seeds]
