"""Experiment tracking in MLflow (`sweep --mlflow URI`) or Weights & Biases (`sweep --wandb
PROJECT`), from the driver: one tracked run per trial attempt, named trial_KEY[.rN], in an MLflow
experiment named after the spec (a W&B run's group is the spec's name), with the swept values
(and the seeds) as parameters, every numeric metric the trial reports as a series over updates (a
population's members as members/seedN/...), and the final greedy evaluation per stage as summary
values (final/success/stageS, final/reward/stageS). TensorBoard files are written as before.

MLflow: a path is an SQLite database (MLflow's own file store is in maintenance mode); a URI with
a scheme (sqlite:///..., http://..., databricks) is passed to MLflow as it is. W&B: offline unless
WANDB_MODE says otherwise (runs are written beside the experiment, under NAME/wandb; `wandb sync`
uploads them), so nothing leaves the machine unless asked.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path

from .config import ConfigError
from .experiment import hyperparameters

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
    store_logger = logging.getLogger("mlflow.store")  # it announces creating its tables
    level = store_logger.level
    store_logger.setLevel(logging.WARNING)
    try:
        client = MlflowClient(tracking_uri=uri)
        found = client.get_experiment_by_name(experiment)
        experiment_id = found.experiment_id if found else client.create_experiment(experiment)
    except Exception as error:  # MLflow raises its own and its stores' errors
        message = str(error).strip().splitlines()[0][:200] if str(error).strip() else type(error).__name__
        raise ConfigError(f"--mlflow: cannot open the tracking store {uri} ({message})") from None
    finally:
        store_logger.setLevel(level)
    return client, experiment_id


def open_wandb(project: str):
    """The wandb module, checked before Ray starts; offline unless WANDB_MODE says otherwise."""
    if not project.strip() or "/" in project:
        raise ConfigError(f"--wandb: a project name without '/' (got {project!r})")
    try:
        import wandb
    except ImportError:
        raise ConfigError("--wandb needs the optional extra: pip install 'distributed_agent[wandb]'") from None
    os.environ.setdefault("WANDB_MODE", "offline")
    os.environ.setdefault("WANDB_SILENT", "true")
    return wandb


def tracking_class(tracker: type):
    """A tracker (MlflowTracking, WandbTracking) as Tune's callback (Ray is imported only where it runs)."""
    from ray import tune

    return type(f"Tune{tracker.__name__}", (tracker, tune.Callback), {})


class Tracking:
    """Tune callback hooks that mirror each trial into a tracked run: what is tracked, for every
    tracker; `start`, `log` and `end` say where."""

    def __init__(self, swept: list[str]):
        self.swept = swept
        self.runs: dict[str, object] = {}  # Tune trial id -> the tracker's run

    def start(self, name: str, key: str, params: dict):
        raise NotImplementedError

    def log(self, run, values: dict, step: int, final: dict) -> None:
        raise NotImplementedError

    def end(self, run, status: str) -> None:
        raise NotImplementedError

    def on_trial_start(self, iteration, trials, trial, **info):
        if trial.trial_id in self.runs:  # restarted after a failure or a pause: the same run goes on
            return
        planned, hp = trial.config.get("trial", {}), hyperparameters(trial.config) or {}
        key, attempt = planned.get("key", trial.trial_id), planned.get("attempt", 0)
        params = {name: hp[name] for name in self.swept if name in hp}
        if "seeds" in hp:
            params["seeds"] = ",".join(str(s) for s in hp["seeds"])
        elif "seed" in hp:
            params["seed"] = hp["seed"]
        name = f"trial_{key}" + (f".r{attempt}" if attempt else "")
        self.runs[trial.trial_id] = self.start(name, str(key), params)

    def on_trial_result(self, iteration, trials, trial, result, **info):
        run = self.runs.get(trial.trial_id)
        if run is None:
            return
        values = dict(_numbers(result, exclude=TUNE_KEYS))
        final = {}
        if result.get("final") == 1:
            final = {f"final/{n}": v for n, v in values.items() if n.startswith(("success/stage", "reward/stage"))}
        self.log(run, values, int(result.get("update", 0)), final)

    def on_trial_complete(self, iteration, trials, trial, **info):
        self._end(trial, "FINISHED")

    def on_trial_error(self, iteration, trials, trial, **info):
        self._end(trial, "FAILED")

    def on_experiment_end(self, trials, **info):
        for trial in trials:  # interrupted: what still runs is killed, to be resumed as a new attempt
            self._end(trial, "KILLED")

    def _end(self, trial, status: str) -> None:
        run = self.runs.pop(trial.trial_id, None)
        if run is not None:
            self.end(run, status)


class MlflowTracking(Tracking):
    """Each trial attempt an MLflow run; the final values as metrics of their own."""

    def __init__(self, swept: list[str], client, experiment_id: str):
        super().__init__(swept)
        self.client, self.experiment_id = client, experiment_id

    def start(self, name: str, key: str, params: dict):
        run = self.client.create_run(self.experiment_id, run_name=name, tags={"trial": key})
        for param, value in params.items():
            self.client.log_param(run.info.run_id, param, value)
        return run.info.run_id

    def log(self, run, values: dict, step: int, final: dict) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        metrics = [Metric(name, value, now, step) for name, value in {**values, **final}.items()]
        for start in range(0, len(metrics), 1000):  # MLflow takes at most 1000 metrics per batch
            self.client.log_batch(run, metrics=metrics[start : start + 1000])

    def end(self, run, status: str) -> None:
        self.client.set_terminated(run, status)


class WandbTracking(Tracking):
    """Each trial attempt a W&B run (grouped by experiment); the final values in its summary."""

    def __init__(self, swept: list[str], wandb, project: str, group: str, directory: str):
        super().__init__(swept)
        self.wandb, self.project, self.group, self.directory = wandb, project, group, directory

    def start(self, name: str, key: str, params: dict):
        Path(self.directory).mkdir(parents=True, exist_ok=True)
        return self.wandb.init(
            project=self.project,
            group=self.group,
            name=name,
            config=params,
            dir=self.directory,
            reinit="create_new",  # several runs at once in this process, one per running trial
        )

    def log(self, run, values: dict, step: int, final: dict) -> None:
        run.log(values, step=step)
        for name, value in final.items():
            run.summary[name] = value

    def end(self, run, status: str) -> None:
        run.finish(exit_code=0 if status == "FINISHED" else 1)


def _numbers(result: dict, exclude=frozenset(), prefix: str = ""):
    """(name, value) of every number in a (nested) result, names joined by '/'."""
    for name, value in result.items():
        if prefix == "" and name in exclude:
            continue
        if isinstance(value, dict):
            yield from _numbers(value, prefix=f"{prefix}{name}/")
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            yield f"{prefix}{name}", float(value)
