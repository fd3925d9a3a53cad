"""Ray Tune sweeps, the driver: check, open and lock the experiment folder, start a private
local Ray (or join a cluster), and run the planned trials (trainable.py) under a scheduler.

The experiment folder is the state of the sweep (see experiment.py): `--resume` rebuilds what is
left from the spec and the trial folders, never from Tune's pickles.
"""

from __future__ import annotations

import functools
import math
import os
from pathlib import Path

import torch

from .bookkeeping import bookkeeping_class
from .config import ConfigError
from .experiment import (
    check_saved_spec,
    planned_trials,
    read_round,
    remaining_trials,
    save_spec,
    scan_trials,
    trial_dirname,
    write_round,
)
from .local_ray import ray_session
from .lock import ExperimentLock
from .pbt import make_pb2, make_pbt
from .progress import progress_class, tune_output
from .spec import POPULATION_BASED, ExperimentSpec
from .storage import Storage, StorageFull, is_storage_full, open_storage
from .tracking import MlflowTracking, WandbTracking, mlflow_uri, open_tracking, open_wandb, tracking_class
from .trainable import run_trial


def check_resources(spec: ExperimentSpec, address: str | None) -> None:
    """Ray waits forever for resources that do not exist; fail at once instead."""
    import ray

    resources = ray.cluster_resources()
    gpus, cpus = resources.get("GPU", 0), resources.get("CPU", 0)
    where = f"the cluster at {address}" if address else "this machine"
    if spec.gpus_per_trial > 0 and gpus < spec.gpus_per_trial:
        raise ConfigError(
            f"resources.gpu: {spec.gpus_per_trial} GPU per trial asked, but {where} has "
            f"{gpus:g} GPU; set resources.gpu: 0 or run on a cluster with GPUs"
        )
    if spec.cpus_per_trial > 0 and cpus < spec.cpus_per_trial:
        raise ConfigError(f"resources.cpu: {spec.cpus_per_trial:g} CPU per trial asked, but {where} has {cpus:g}")


def local_gpu_count() -> int:
    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def build_trainable(spec: ExperimentSpec, trial_fn=None):
    from ray import tune

    trainable = tune.with_parameters(
        trial_fn or run_trial,
        base=spec.train.to_dict(),
        seeds=spec.seeds,
        checkpoint_every=spec.checkpoint_every,
        report_every=spec.report_every,
        gpus=spec.gpus_per_trial,
        cpus=spec.cpus_per_trial,
        mutable=tuple(d.name for d in spec.mutations),
    )
    return tune.with_resources(trainable, {"cpu": spec.cpus_per_trial, "gpu": spec.gpus_per_trial})


def tune_trial_dirname(trial) -> str:
    planned = trial.config.get("trial")
    return trial_dirname(planned["key"], planned["attempt"]) if planned else trial_dirname(trial.trial_id, 0)


def make_scheduler(spec: ExperimentSpec, storage: Storage | None = None, resumed: bool = False):
    """FIFO; ASHA; or population-based training (pbt.py), reproducible, recording its rounds in
    `storage` and resumed from the last one. Each counts evaluations: the trial's own `evaluation`
    counter, not Tune's reports, which differ when report_every > 1 and restart when a trial
    resumes in a new attempt."""
    from ray.tune.schedulers import ASHAScheduler, FIFOScheduler

    if spec.scheduler in POPULATION_BASED:
        if spec.scheduler == "pb2":
            try:
                import sklearn  # noqa: F401  (PB2's Gaussian process)
            except ImportError:
                raise ConfigError(
                    "scheduler: pb2 needs the optional extra: pip install 'distributed_agent[pb2]'"
                ) from None
        save_round = last_round = None
        if storage is not None:
            save_round = functools.partial(write_round, storage, spec.name)
            last_round = read_round(storage, spec.name) if resumed else None
        return (make_pbt if spec.scheduler == "pbt" else make_pb2)(spec, save_round, last_round)
    if spec.scheduler != "asha":
        return FIFOScheduler()
    evaluations = math.ceil(spec.train.updates / spec.train.eval_every)
    return ASHAScheduler(
        time_attr="evaluation",
        max_t=evaluations,
        grace_period=spec.asha_grace_period,
        reduction_factor=spec.asha_reduction_factor,
    )


def build_tuner(
    spec: ExperimentSpec,
    storage: Storage,
    bookkeeping,
    trials: list[dict] | None,
    optuna_samples: int = 0,
    trial_fn=None,
    verbose: int = 1,
    resumed: bool = False,
    trackers: list = (),
):
    """A Tuner over the planned `trials` (grid/random, or what --resume continues), or over
    `optuna_samples` new configurations drawn by Optuna (each run on every seed: all in one trial
    with seeds_per_trial all, else one trial per seed through a Repeater). verbose: 0 prints
    nothing, 1 a progress line at a time (progress.py), 2 Tune's own tables."""
    from ray import tune

    scheduler = make_scheduler(spec, storage, resumed)
    if trials is None:
        from ray.tune.search import Repeater

        try:
            import optuna  # noqa: F401  (OptunaSearch imports lazily; fail here with a clear message)
            from ray.tune.search.optuna import OptunaSearch
        except ImportError:
            raise ConfigError(
                "search_alg: optuna needs the optional extra: pip install 'distributed_agent[optuna]'"
            ) from None
        param_space = {"hp": {d.name: _tune_distribution(d) for d in spec.search}}
        drawn = spec.samples - optuna_samples  # a resumed search draws its remaining configs anew
        search_alg = OptunaSearch(seed=drawn)
        if spec.seeds_per_trial == 1:  # one seed per trial: Optuna sees the mean of a config's repeats
            search_alg = Repeater(search_alg, repeat=len(spec.seeds))
        num_samples = optuna_samples * spec.trials_per_config
    else:
        param_space = {"trial": tune.grid_search(trials)}
        search_alg, num_samples = None, 1
    reporter, progress = None, []
    if verbose >= 2:  # Tune's table, each swept field a column of its own, the optimised metric shown
        where = "hp" if trials is None else "trial/hp"
        reporter = tune.CLIReporter(
            parameter_columns={f"{where}/{name}": name for name in spec.swept_fields},
            metric_columns=[spec.metric, "update", "episodes", "stage"],
        )
    if verbose == 1:
        total = len(trials) if trials is not None else num_samples
        progress.append(progress_class()(total, spec.swept_fields, spec.metric, spec.mode))
    return tune.Tuner(
        build_trainable(spec, trial_fn),
        param_space=param_space,
        tune_config=tune.TuneConfig(
            metric=spec.metric,
            mode=spec.mode,
            scheduler=scheduler,
            search_alg=search_alg,
            num_samples=num_samples,
            reuse_actors=True,
            trial_dirname_creator=tune_trial_dirname,
        ),
        run_config=tune.RunConfig(
            name=spec.name,
            storage_path=storage.uri,
            callbacks=[bookkeeping, *progress, *trackers],
            stop=bookkeeping,
            failure_config=tune.FailureConfig(max_failures=spec.max_failures),
            checkpoint_config=tune.CheckpointConfig(num_to_keep=None),
            verbose=1 if verbose >= 2 else 0,
            progress_reporter=reporter,
        ),
    )


def _tune_distribution(dimension):
    from ray import tune

    low_high = dimension.values
    return {
        "choice": lambda: tune.choice(list(low_high)),
        "uniform": lambda: tune.uniform(*low_high),
        "loguniform": lambda: tune.loguniform(*low_high),
        "randint": lambda: tune.randint(*low_high),
    }[dimension.kind]()


def check_experiment(spec: ExperimentSpec, storage: Storage, resume: bool) -> None:
    """Refuse, creating nothing, to start over an existing experiment, to resume a missing one, or
    to resume one with a changed spec (also checked by `slurm` before it submits a job)."""
    where = storage.uri_of(spec.name)
    if resume:
        if not storage.exists(spec.name):
            raise ConfigError(f"--resume: no experiment to resume at {where}")
        check_saved_spec(spec, storage)
    elif storage.exists(spec.name):
        raise ConfigError(exists_message(where))


def exists_message(where: str) -> str:
    return (
        f"experiment folder {where} exists; continue it with --resume, or change the spec's name or --storage "
        "(nothing is overwritten)"
    )


def open_experiment(spec: ExperimentSpec, storage: Storage, resume: bool) -> ExperimentLock:
    """Check, create (or reopen) and lock the experiment folder, before Ray starts."""
    check_experiment(spec, storage, resume)
    where = storage.uri_of(spec.name)
    lock = ExperimentLock(storage, spec.name)
    if resume:
        lock.acquire()
        return lock
    try:
        if storage.local:
            Path(storage.root).mkdir(parents=True, exist_ok=True)
            os.mkdir(storage.path(spec.name))  # exclusive: of two drivers started together, one wins
        else:
            storage.make_dirs(spec.name)
    except FileExistsError:
        raise ConfigError(exists_message(where)) from None
    except OSError as error:
        if is_storage_full(error):
            raise StorageFull(f"{where}: {error.strerror}") from None
        raise ConfigError(f"--storage: cannot create {where} ({error.strerror or error})") from None
    lock.acquire()
    try:
        save_spec(spec, storage)
    except BaseException:
        lock.release()
        raise
    return lock


def run_sweep(
    spec: ExperimentSpec,
    storage: str = "runs",
    address: str | None = None,
    resume: bool = False,
    restart_errored: bool = False,
    trial_fn=None,
    verbose: int = 1,
    mlflow: str | None = None,
    wandb: str | None = None,
) -> str:
    """Run (or resume) a sweep; returns the experiment folder. The spec is already validated.
    mlflow: a tracking store, wandb: a W&B project, that mirror every trial (tracking.py).

    Tune returns normally also when the driver is interrupted (SIGINT): the report on the folder
    tells finished trials from unfinished ones. A storage that fills up ends the sweep with
    StorageFull after the running trials stopped; everything finished stays readable.
    """
    store = open_storage(storage)
    if spec.gpus_per_trial > 0 and not address and local_gpu_count() == 0:
        raise ConfigError(
            f"resources.gpu: {spec.gpus_per_trial} GPU per trial asked, but this machine has no "
            "CUDA GPU; set resources.gpu: 0 or use --address with a GPU cluster"
        )
    trackers, swept = [], spec.swept_fields
    if mlflow:
        client, experiment_id = open_tracking(mlflow_uri(mlflow), spec.name)
        trackers.append(tracking_class(MlflowTracking)(swept, client, experiment_id))
    if wandb:
        if not store.local:
            raise ConfigError("--wandb: writes its offline runs beside the experiment, so needs a local --storage")
        wandb_module = open_wandb(wandb)
        trackers.append(tracking_class(WandbTracking)(swept, wandb_module, wandb, spec.name, store.path(spec.name)))
    lock = open_experiment(spec, store, resume)
    try:
        if resume:
            trials, samples = remaining_trials(spec, store, scan_trials(store, spec.name), restart_errored)
        elif spec.search_alg == "optuna":
            trials, samples = [], spec.samples
        else:
            trials, samples = planned_trials(spec), 0

        def fit(planned: list[dict] | None, optuna_samples: int = 0):
            rounds = spec.pbt_interval if spec.scheduler in POPULATION_BASED else None
            bookkeeping = bookkeeping_class()(store, spec.name, rounds)
            tuner = build_tuner(
                spec,
                store,
                bookkeeping,
                planned,
                optuna_samples,
                trial_fn=trial_fn,
                verbose=verbose,
                resumed=resume,
                trackers=trackers,
            )
            tuner.fit()
            if bookkeeping.storage_full:
                raise StorageFull(bookkeeping.storage_full)
            return bookkeeping

        with tune_output(verbose) as logging_level, ray_session(address, logging_level):
            check_resources(spec, address)
            if trials and fit(trials).ended < len(trials):
                return store.uri_of(spec.name)  # interrupted: draw no new configurations
            if samples:
                fit(None, samples)
    except OSError as error:
        if is_storage_full(error):
            raise StorageFull(f"{store.uri_of(spec.name)}: {error}") from None
        raise
    finally:
        lock.release()
    return store.uri_of(spec.name)
