"""What a sweep prints while it runs: one compact line per change, at most one every few
seconds, instead of Tune's tables (1,065 lines for the 24 trials of the default sweep).

    [  14s] trials 6/24 done, 2 running, 16 pending | best success/min 0.620
            (lr=0.003 entropy_coef=0.01 hidden_size=64; 3 seeds) | ~42s left     (one line)

The best configuration is the one whose trials' latest `metric` has the best mean so far (seeds
of one configuration pooled, running trials included); each swept field is shown by its name.
The estimate of what is left assumes the remaining trials take as long as the finished ones.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import time
from collections.abc import Callable, Iterator

from .experiment import hyperparameters

PRINT_EVERY = 5.0  # seconds between lines while something changes
HEARTBEAT = 60.0  # seconds between lines while nothing does


@contextlib.contextmanager
def tune_output(verbose: int) -> Iterator[int]:
    """Tune's legacy output engine for the block: at verbose 0 it prints nothing (the new one
    prints its banner even then), and it is the one that takes our table's columns (verbose 2).
    Below verbose 2, Ray's INFO logs are silenced too. Yields the logging level to start Ray with."""
    before = os.environ.get("RAY_AIR_NEW_OUTPUT")
    os.environ["RAY_AIR_NEW_OUTPUT"] = "0"
    try:
        yield logging.INFO if verbose >= 2 else logging.WARNING
    finally:
        if before is None:
            os.environ.pop("RAY_AIR_NEW_OUTPUT", None)
        else:
            os.environ["RAY_AIR_NEW_OUTPUT"] = before


def progress_class():
    """ProgressLines as Tune's callback (Ray is imported only where it runs)."""
    from ray import tune

    class TuneProgressLines(ProgressLines, tune.Callback):
        pass

    return TuneProgressLines


class ProgressLines:
    """Tune callback hooks (setup, on_trial_result, on_trial_complete, on_trial_error,
    on_step_end, on_experiment_end) that print the sweep's progress one line at a time."""

    def __init__(
        self,
        total: int,
        swept: list[str],
        metric: str,
        mode: str,
        write: Callable[[str], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.total, self.swept, self.metric, self.mode = total, swept, metric, mode
        self.write = write or (lambda line: print(line, file=sys.stdout, flush=True))
        self.clock = clock
        self.started = clock()
        self.latest: dict[str, tuple[str, float]] = {}  # trial id -> (configuration, latest metric)
        self.labels: dict[str, str] = {}  # configuration -> its swept values, printed
        self.done = self.errored = 0
        self.last_state, self.last_time = None, -float("inf")

    # Tune's callback interface
    def setup(self, **info):
        swept = ", ".join(self.swept) or "no field"
        self.write(f"{self.total} trials, searching {swept}; {self.metric} ({self.mode}) is what counts")

    def on_trial_result(self, iteration, trials, trial, result, **info):
        if self.metric in result:
            configuration = self._configuration(trial)
            self.latest[trial.trial_id] = (configuration, float(result[self.metric]))

    def on_trial_complete(self, iteration, trials, trial, **info):
        self.done += 1
        self._print(trials)

    def on_trial_error(self, iteration, trials, trial, **info):
        self.errored += 1
        self._print(trials)

    def on_step_end(self, iteration, trials, **info):
        self._print(trials)

    def on_experiment_end(self, trials, **info):
        self._print(trials, force=True)

    def _configuration(self, trial) -> str:
        hp = hyperparameters(trial.config) or {}
        values = " ".join(f"{name}={_short(hp[name])}" for name in self.swept if name in hp)
        key = repr(sorted((name, hp[name]) for name in self.swept if name in hp))
        self.labels[key] = values
        return key

    def state(self, trials) -> tuple:
        """What a line says, the time aside: a new line is printed only when it changes."""
        running = sum(t.status == "RUNNING" for t in trials)
        pending = max(0, self.total - self.done - self.errored - running)
        return self.done, running, pending, self.errored, self.best()

    def line(self, trials) -> str:
        done, running, pending, errored, best = self.state(trials)
        parts = [f"trials {done}/{self.total} done, {running} running, {pending} pending"]
        if errored:
            parts[0] += f", {errored} errored"
        if best is not None:
            configuration, value, seeds = best
            label = self.labels[configuration]
            parts.append(
                f"best {self.metric} {value:.3f} ({label + '; ' if label else ''}{seeds} seed{'s' * (seeds != 1)})"
            )
        elapsed, ended = self.clock() - self.started, done + errored
        if 0 < ended < self.total:
            parts.append(f"~{_duration(elapsed / ended * (self.total - ended))} left")
        return f"[{_duration(elapsed):>5}] " + " | ".join(parts)

    def best(self) -> tuple[str, float, int] | None:
        """(configuration, mean of its trials' latest metric, trials counted) of the best so far."""
        pooled: dict[str, list[float]] = {}
        for configuration, value in self.latest.values():
            pooled.setdefault(configuration, []).append(value)
        if not pooled:
            return None
        sign = 1 if self.mode == "max" else -1
        configuration = max(pooled, key=lambda c: sign * sum(pooled[c]) / len(pooled[c]))
        values = pooled[configuration]
        return configuration, sum(values) / len(values), len(values)

    def _print(self, trials, force: bool = False) -> None:
        now, state = self.clock(), self.state(trials)
        changed = state != self.last_state
        if (changed and (force or now - self.last_time >= PRINT_EVERY)) or now - self.last_time >= HEARTBEAT:
            self.write(self.line(trials))
            self.last_state, self.last_time = state, now


def _short(value) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
