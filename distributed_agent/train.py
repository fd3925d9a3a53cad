"""One training run: `train(config, callback) -> TrainResult`, deterministic for a given seed.

The loop: one update (update.py) after another; every `eval_every` updates a greedy evaluation
on every stage (evaluation.py), which the curriculum observes and the callback receives. The
run's state (state.py) can be saved and restored (checkpoint.py), so that a run cut in two gives
the same numbers as one run straight through.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from . import checkpoint
from .config import ConfigError, TrainConfig
from .evaluation import FINAL_TAG, evaluate, explain
from .runtime import torch_threads
from .state import Evaluation, TrainState, new_run
from .update import train_step

__all__ = ["TrainConfig", "ConfigError", "Evaluation", "TrainResult", "TrainState", "new_run", "run_updates", "train"]


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


def solved(run: TrainState) -> bool:
    target = run.config.stop_at_success
    return target is not None and bool(run.history) and min(run.history[-1].success) >= target


def finished(run: TrainState) -> bool:
    return run.update >= run.config.updates or solved(run)


def run_updates(run: TrainState, callback: Callback | None = None, until: int | None = None) -> None:
    """Train up to update `until` (default: config.updates), evaluating every eval_every updates."""
    config = run.config
    until = config.updates if until is None else min(until, config.updates)
    while run.update < until and not solved(run):
        started = time.perf_counter()
        train_step(run)
        evaluate_now = run.update % config.eval_every == 0 or run.update == config.updates
        if evaluate_now:
            success, reward = evaluate(run, config.eval_episodes, tag=run.update)
            run.curriculum.observe(success, run.episodes)
        run.seconds += time.perf_counter() - started
        if evaluate_now:
            evaluation = Evaluation(
                run.update,
                run.episodes,
                run.curriculum.newest_stage(run.update),
                success,
                reward,
                run.last_loss,
                run.seconds,
            )
            run.history.append(evaluation)
            if callback is not None:
                callback(evaluation, run)


def final_evaluation(run: TrainState) -> tuple[list[float], list[float]]:
    """Greedy success and reward per stage on final_eval_episodes (the numbers a report shows)."""
    return evaluate(run, run.config.final_eval_episodes, tag=FINAL_TAG)


def result(run: TrainState, with_samples: bool = True) -> TrainResult:
    success, reward = final_evaluation(run)
    return TrainResult(
        run.config,
        success,
        reward,
        list(run.history),
        run.episodes,
        run.update,
        run.seconds,
        explain(run) if with_samples else [],
    )


def train(
    config: TrainConfig, callback: Callback | None = None, resume_from: str | Path | dict | None = None
) -> TrainResult:
    """Train one agent; `callback(evaluation, run)` is called after each evaluation.

    resume_from: a checkpoint file or its state dict (checkpoint.py), continued under `config`.
    The run uses config.num_threads torch threads (the process's count is restored after), so its
    numbers are a function of the config and seed alone.
    """
    with torch_threads(config.num_threads):
        if resume_from is None:
            run = new_run(config)
        elif isinstance(resume_from, dict):
            run = new_run(config)
            checkpoint.load_state_dict(run, resume_from)
        else:
            run = checkpoint.load(resume_from, **config.to_dict())
        run_updates(run, callback)
        return result(run)
