"""Experiment tracking in MLflow (`sweep --mlflow URI`), from the driver: one MLflow run per trial
attempt in an MLflow experiment named after the spec, with the swept values (and the seeds) as
parameters, every numeric metric the trial reports as a series over updates (a population's
members as members/seedN/...), and the final greedy evaluation per stage as summary values
(final/success/stageS, final/reward/stageS). TensorBoard files are written as before.

A path is an SQLite database (MLflow's own file store is in maintenance mode); a URI with a
scheme (sqlite:///..., http://..., databricks) is passed to MLflow as it is.
"""

from __future__ import annotations

import time
from pathlib import Path

from .config import ConfigError

# What Tune adds to every result: bookkeeping, not the trial's metrics.
TUNE_KEYS = {
    "config",
    "training_iteration",
    "time_this_iter_s",
    "time_total_s",
    "time_since_restore",
    "iterations_since_restore",
    "timestamp",
    "pid",
    "done",
    "should_checkpoint",
}


def mlflow_uri(text: str) -> str:
    """The tracking URI of the --mlflow value: a URI as given, a path as an SQLite database."""
    if "://" in text or text == "databricks":
        return text
    path = Path(text).expanduser().resolve()
    if path.is_dir():
        raise ConfigError(f"--mlflow: {text!r} is a folder; give a database file (e.g. runs/mlflow.db) or a URI")
    if not path.parent.is_dir():
        raise ConfigError(f"--mlflow: the folder of {text!r} does not exist")
    return f"sqlite:///{path}"


def open_tracking(uri: str, experiment: str):
    """(client, experiment id), checked before Ray starts: the extra is installed, the store opens."""
    try:
        from mlflow.tracking import MlflowClient
    except ImportError:
        raise ConfigError("--mlflow needs the optional extra: pip install 'distributed_agent[mlflow]'") from None
    try:
        client = MlflowClient(tracking_uri=uri)
        found = client.get_experiment_by_name(experiment)
        experiment_id = found.experiment_id if found else client.create_experiment(experiment)
    except Exception as error:  # MLflow raises its own and its stores' errors
        message = str(error).strip().splitlines()[0][:200] if str(error).strip() else type(error).__name__
        raise ConfigError(f"--mlflow: cannot open the tracking store {uri} ({message})") from None
    return client, experiment_id


def tracking_class():
    """MlflowTracking as Tune's callback (Ray is imported only where it runs)."""
    from ray import tune

    class TuneMlflowTracking(MlflowTracking, tune.Callback):
        pass

    return TuneMlflowTracking


class MlflowTracking:
    """Tune callback hooks that mirror each trial into an MLflow run."""

    def __init__(self, client, experiment_id: str, swept: list[str]):
        self.client, self.experiment_id, self.swept = client, experiment_id, swept
        self.runs: dict[str, str] = {}  # Tune trial id -> MLflow run id

    def on_trial_start(self, iteration, trials, trial, **info):
        if trial.trial_id in self.runs:  # restarted after a failure or a pause: the same run goes on
            return
        planned = trial.config.get("trial", trial.config)
        hp, key, attempt = planned.get("hp", {}), planned.get("key", trial.trial_id), planned.get("attempt", 0)
        name = f"trial_{key}" + (f".r{attempt}" if attempt else "")
        run = self.client.create_run(self.experiment_id, run_name=name, tags={"trial": str(key)})
        params = {name: hp[name] for name in self.swept if name in hp}
        if "seeds" in hp:
            params["seeds"] = ",".join(str(s) for s in hp["seeds"])
        elif "seed" in hp:
            params["seed"] = hp["seed"]
        for param, value in params.items():
            self.client.log_param(run.info.run_id, param, value)
        self.runs[trial.trial_id] = run.info.run_id

    def on_trial_result(self, iteration, trials, trial, result, **info):
        from mlflow.entities import Metric

        run_id = self.runs.get(trial.trial_id)
        if run_id is None:
            return
        step, now = int(result.get("update", 0)), int(time.time() * 1000)
        values = dict(_numbers(result, exclude=TUNE_KEYS))
        if result.get("final") == 1:
            for name in [n for n in values if n.startswith(("success/stage", "reward/stage"))]:
                values[f"final/{name}"] = values[name]
        metrics = [Metric(name, value, now, step) for name, value in values.items()]
        for start in range(0, len(metrics), 1000):  # MLflow takes at most 1000 metrics per batch
            self.client.log_batch(run_id, metrics=metrics[start : start + 1000])

    def on_trial_complete(self, iteration, trials, trial, **info):
        self._end(trial, "FINISHED")

    def on_trial_error(self, iteration, trials, trial, **info):
        self._end(trial, "FAILED")

    def on_experiment_end(self, trials, **info):
        for trial in trials:  # interrupted: what still runs is killed, to be resumed as a new attempt
            self._end(trial, "KILLED")

    def _end(self, trial, status: str) -> None:
        run_id = self.runs.pop(trial.trial_id, None)
        if run_id is not None:
            self.client.set_terminated(run_id, status)


def _numbers(result: dict, exclude=frozenset(), prefix: str = ""):
    """(name, value) of every number in a (nested) result, names joined by '/'."""
    for name, value in result.items():
        if prefix == "" and name in exclude:
            continue
        if isinstance(value, dict):
            yield from _numbers(value, prefix=f"{prefix}{name}/")
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            yield f"{prefix}{name}", float(value)
