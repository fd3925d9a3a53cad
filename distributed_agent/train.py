"""One training run: `train(config, callback) -> TrainResult`, deterministic for a given seed.

The loop: one update (update.py) after another; every `eval_every` updates a greedy evaluation
on every stage (evaluation.py), which the curriculum observes and the callback receives. The
run's state (state.py) can be saved and restored (checkpoint.py), so that a run cut in two gives
the same numbers as one run straight through.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from . import checkpoint
from .config import ConfigError, TrainConfig
from .evaluation import FINAL_TAG, evaluate, explain
from .runtime import torch_threads
from .schedule import apply_due
from .state import Evaluation, TrainState, new_population, new_run
from .update import train_step

__all__ = [
    "TrainConfig",
    "ConfigError",
    "Evaluation",
    "TrainResult",
    "TrainState",
    "new_population",
    "new_run",
    "run_updates",
    "train",
    "train_population",
]


@dataclass
class TrainResult:
    config: TrainConfig
    final_success: list[float]  # greedy, final_eval_episodes per stage
    final_reward: list[float]
    history: list[Evaluation]
    episodes: int
    updates: int
    seconds: float
    samples: list[dict] = field(default_factory=list)  # explained trajectories


Callback = Callable[[Evaluation, TrainState], None]
PopulationCallback = Callable[[list[TrainState]], None]  # after each evaluation round, every member


def solved(run: TrainState) -> bool:
    target = run.config.stop_at_success
    return target is not None and bool(run.history) and min(run.history[-1].success) >= target


def finished(run: TrainState) -> bool:
    return run.update >= run.config.updates or solved(run)


def _under_config_threads(function):
    """Run a function of a population under its config.num_threads torch threads (the caller's
    count restored after), whoever calls it: the numbers depend on the count, and a process's
    default (every core) beside other work is many times slower (a test that trained a baseline
    through run_updates took 208 s instead of 8 beside a running sweep)."""

    @functools.wraps(function)
    def under_threads(members, *args, **kwargs):
        with torch_threads(members[0].config.num_threads):
            return function(members, *args, **kwargs)

    return under_threads


@_under_config_threads
def run_updates(
    members: list[TrainState], callback: PopulationCallback | None = None, until: int | None = None
) -> None:
    """Train a population up to update `until` (default: config.updates), evaluating every
    eval_every updates. A member that solved stops: its weights and numbers stay as they were.
    Each member's `seconds` gains its share of the population's time."""
    config = members[0].config
    if config.agent != "ours":
        from . import baselines

        return baselines.run_updates(members, callback, until)
    until = config.updates if until is None else min(until, config.updates)
    while active := [run for run in members if run.update < until and not solved(run)]:
        started = time.perf_counter()
        step(active)
        update = active[0].update
        evaluate_now = update % config.eval_every == 0 or update == config.updates
        if evaluate_now:
            scores = _evaluate_in_chunks(active, config.eval_episodes, update)
            for run, (success, _) in zip(active, scores):
                run.curriculum.observe(success, run.episodes)
        share = (time.perf_counter() - started) / len(active)
        for run in active:
            run.seconds += share
        if evaluate_now:
            for run, (success, reward) in zip(active, scores):
                stage = run.curriculum.newest_stage(update)
                run.history.append(Evaluation(update, run.episodes, stage, success, reward, run.last_loss, run.seconds))
            if callback is not None:
                callback(members)


def step(members: list[TrainState]) -> None:
    """One update of every member, config.members_per_step members per batched step."""
    for run in members:
        apply_due(run)
    for chunk in _chunks(members, members[0].config.members_per_step):
        train_step(chunk)


@_under_config_threads
def final_evaluation(members: list[TrainState]) -> list[tuple[list[float], list[float]]]:
    """Per member: greedy success and reward per stage on final_eval_episodes (what a report shows)."""
    return _evaluate_in_chunks(members, members[0].config.final_eval_episodes, FINAL_TAG)


def _evaluate_in_chunks(members: list[TrainState], episodes: int, tag: int) -> list[tuple[list[float], list[float]]]:
    """evaluate(), config.members_per_step members at a time (the numbers are the same)."""
    chunks = _chunks(members, members[0].config.members_per_step)
    return [score for chunk in chunks for score in evaluate(chunk, episodes, tag=tag)]


def _chunks(members: list[TrainState], size: int | None) -> list[list[TrainState]]:
    """The population in chunks of `size` members (config.members_per_step; None: one chunk)."""
    size = size or len(members)
    return [members[i : i + size] for i in range(0, len(members), size)]


@_under_config_threads
def results(members: list[TrainState], with_samples: bool = True) -> list[TrainResult]:
    return [
        TrainResult(
            run.config,
            success,
            reward,
            list(run.history),
            run.episodes,
            run.update,
            run.seconds,
            explain(run) if with_samples else [],
        )
        for run, (success, reward) in zip(members, final_evaluation(members))
    ]


def train_population(
    config: TrainConfig,
    seeds: list[int],
    callback: PopulationCallback | None = None,
    resume_from: str | Path | dict | None = None,
) -> list[TrainResult]:
    """Train one agent per seed of `seeds` under `config` as one population; every member's result
    equals that of `train(config.replace(seed=seed))`, bit for bit on the CPU.

    resume_from: a checkpoint file or its state dict (checkpoint.py), continued under `config`.
    The population uses config.num_threads torch threads (the process's count is restored after),
    so its numbers are a function of the config and seeds alone.
    """
    with torch_threads(config.num_threads):
        members = new_population(config, seeds)
        if resume_from is not None:
            state = resume_from if isinstance(resume_from, dict) else checkpoint.read(resume_from)
            checkpoint.load_population_state(members, state, repr(str(resume_from))[:80])
        run_updates(members, callback)
        return results(members)


def train(
    config: TrainConfig, callback: Callback | None = None, resume_from: str | Path | dict | None = None
) -> TrainResult:
    """Train one agent (a population of one); `callback(evaluation, run)` after each evaluation."""
    return train_population(
        config,
        [config.seed],
        None if callback is None else lambda members: callback(members[0].history[-1], members[0]),
        resume_from,
    )[0]
