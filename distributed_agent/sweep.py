"""Ray Tune sweeps: every trial is one `train()` run, reported and checkpointed through Tune.

A trial's numbers depend on its config and seed only: the Trainer seeds everything itself, so
neither the worker that runs it, nor the order, nor worker reuse, nor a restart from a
checkpoint changes them. The experiment folder is the state of the sweep (see experiment.py):
`--resume` rebuilds what is left from the spec and the trial folders, never from Tune's pickles.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
from pathlib import Path

import torch

from .config import ConfigError, TrainConfig
from .experiment import (OUTCOME_FILE, STATE_FILE, ExperimentLock, check_saved_spec, planned_trials,
                         remaining_trials, save_spec, scan_trials, trial_dirname)
from .local_ray import ray_session
from .spec import ExperimentSpec
from .storage import Storage, StorageFull, is_storage_full, open_storage
from .train import Evaluation, Trainer

KEEP_CHECKPOINTS = 2            # per trial attempt: the newest (to resume) and the one before
FREE_SPACE_MARGIN = 4           # stop while the disk still holds this many checkpoints per running trial
MIN_FREE_BYTES = 4 * 2**20


# ---------------------------------------------------------------------------------------------
# The trainable (runs inside a Ray worker)
# ---------------------------------------------------------------------------------------------

def trial_config(config: dict, base: dict, seeds: tuple, gpus: float, cpus: float) -> TrainConfig:
    """The TrainConfig of a trial from what Tune hands it.

    Planned trials come as {"trial": {"key", "attempt", "resume_from", "hp": {..., "seed": s}}};
    Optuna (through a Repeater) hands {"hp": {...}, "__trial_index__": k}, the k-th repeat of a
    config, which runs seed seeds[k]. The device follows the resources the trial holds: a GPU
    share means CUDA, else the CPU.
    """
    params = dict(config["trial"]["hp"] if "trial" in config else config["hp"])
    if "__trial_index__" in config:
        params["seed"] = seeds[config["__trial_index__"]]
    return TrainConfig.from_dict({**base, **params, "device": "cuda" if gpus > 0 else "cpu",
                                  "num_threads": max(1, int(cpus))})


def load_trial_state(trainer: Trainer, checkpoint) -> None:
    """Load a checkpoint into a trial's trainer; refuse one made for another configuration."""
    with checkpoint.as_directory() as directory:
        state = torch.load(Path(directory) / STATE_FILE, map_location="cpu", weights_only=True)
    execution = ("device", "num_threads")
    saved = {k: v for k, v in state["config"].items() if k not in execution}
    if saved != {k: v for k, v in trainer.config.to_dict().items() if k not in execution}:
        raise ConfigError(f"checkpoint {checkpoint.path} was made for another configuration than this trial's")
    trainer.load_state_dict(state)


def run_trial(config: dict, base: dict, seeds: tuple, checkpoint_every: int, gpus: float, cpus: float,
              report_every: int = 1):
    from ray import tune
    import ray

    train_config = trial_config(config, base, seeds, gpus, cpus)
    trainer = Trainer(train_config)
    checkpoint = tune.get_checkpoint()  # set when Tune restarts this trial after a failure
    resume_from = config.get("trial", {}).get("resume_from")
    if checkpoint is None and resume_from:  # an earlier attempt's checkpoint, handed by --resume
        checkpoint = tune.Checkpoint(resume_from)
    if checkpoint is not None:
        load_trial_state(trainer, checkpoint)
    node_id = ray.get_runtime_context().get_node_id()
    reported_final = False

    def report(evaluation: Evaluation, trainer: Trainer) -> None:
        nonlocal reported_final
        final = trainer.finished
        if not final and len(trainer.history) % report_every:
            return  # Tune's driver does real work per report; fewer reports, faster sweeps
        if final:  # the last report carries the final, larger greedy evaluation
            success, reward = trainer.evaluate(train_config.final_eval_episodes, tag=-1)
            evaluation = Evaluation(evaluation.update, evaluation.episodes, evaluation.stage, success, reward,
                                    evaluation.loss, evaluation.seconds)
            reported_final = True
        metrics = {**evaluation.metrics(), "evaluation": len(trainer.history), "seed": train_config.seed,
                   "final": int(final),
                   "eval_episodes": train_config.final_eval_episodes if final else train_config.eval_episodes,
                   "node_id": node_id, "device": str(trainer.device), "rss_mib": resident_mib()}
        if final or len(trainer.history) % checkpoint_every == 0:
            with tempfile.TemporaryDirectory() as directory:
                trainer.save(Path(directory) / STATE_FILE)
                tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(directory))
        else:
            tune.report(metrics)

    trainer.run(callback=report)
    if not reported_final and trainer.history:
        # Resumed from the final checkpoint (its report was lost): report the final numbers again.
        report(trainer.history[-1], trainer)


def resident_mib() -> float:
    """Current resident memory of this process (Linux), else its peak."""
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError, IndexError):
        import resource
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# ---------------------------------------------------------------------------------------------
# The driver
# ---------------------------------------------------------------------------------------------

def check_resources(spec: ExperimentSpec, address: str | None) -> None:
    """Ray waits forever for resources that do not exist; fail at once instead."""
    import ray

    resources = ray.cluster_resources()
    gpus, cpus = resources.get("GPU", 0), resources.get("CPU", 0)
    where = f"the cluster at {address}" if address else "this machine"
    if spec.gpus_per_trial > 0 and gpus < spec.gpus_per_trial:
        raise ConfigError(f"resources.gpu: {spec.gpus_per_trial} GPU per trial asked, but {where} has "
                          f"{gpus:g} GPU; set resources.gpu: 0 or run on a cluster with GPUs")
    if spec.cpus_per_trial > 0 and cpus < spec.cpus_per_trial:
        raise ConfigError(f"resources.cpu: {spec.cpus_per_trial:g} CPU per trial asked, but {where} has {cpus:g}")


def local_gpu_count() -> int:
    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def build_trainable(spec: ExperimentSpec, trial_fn=None):
    from ray import tune

    trainable = tune.with_parameters(trial_fn or run_trial, base=spec.train.to_dict(), seeds=spec.seeds,
                                     checkpoint_every=spec.checkpoint_every, report_every=spec.report_every,
                                     gpus=spec.gpus_per_trial,
                                     cpus=spec.cpus_per_trial)
    return tune.with_resources(trainable, {"cpu": spec.cpus_per_trial, "gpu": spec.gpus_per_trial})


def tune_trial_dirname(trial) -> str:
    planned = trial.config.get("trial")
    return trial_dirname(planned["key"], planned["attempt"]) if planned else trial_dirname(trial.trial_id, 0)


def _bookkeeping_class():
    """Bookkeeping as Tune's callback and stopper (Ray is imported only where it runs)."""
    from ray import tune
    from ray.tune.stopper import Stopper

    class TrialBookkeeping(Bookkeeping, tune.Callback, Stopper):
        pass

    return TrialBookkeeping


class Bookkeeping:
    """Driver-side records that make the experiment folder its own state: each attempt's outcome
    (outcome.json), a bounded number of checkpoints, and a stop before the storage is full."""

    def __init__(self, storage: Storage, name: str):
        self.storage, self.name = storage, name
        self.ended = 0
        self.storage_full: str | None = None
        self.checkpoint_bytes = 0

    # Tune's Stopper interface (stop_all) ends every trial once the storage is (nearly) full.
    def __call__(self, trial_id, result) -> bool:
        return False

    def stop_all(self) -> bool:
        return self.storage_full is not None

    def _dirname(self, trial) -> str:
        return Path(trial.storage.trial_fs_path).name

    def _write_outcome(self, trial, status: str) -> None:
        try:
            self.storage.write_text(json.dumps({"status": status, "failures": trial.num_failures}),
                                    self.name, self._dirname(trial), OUTCOME_FILE)
        except StorageFull as error:
            self.storage_full = self.storage_full or str(error)

    def on_trial_complete(self, iteration, trials, trial, **info):
        self.ended += 1
        final = (trial.last_result or {}).get("final") == 1
        if final or self.storage_full is None:  # trials ended by a full storage stay unfinished
            self._write_outcome(trial, "terminated" if final else "stopped early")

    def on_trial_error(self, iteration, trials, trial, **info):
        self.ended += 1
        self._check_error(trial)
        if self.storage_full is None:
            self._write_outcome(trial, "errored")

    def on_trial_recover(self, iteration, trials, trial, **info):
        self._check_error(trial)

    def _check_error(self, trial) -> None:
        try:
            text = str(trial.get_error() or "")
        except Exception:
            text = ""
        if is_storage_full(text) or self._free_bytes() < MIN_FREE_BYTES:
            self.storage_full = self.storage_full or f"{self.storage.uri} ({text.strip().splitlines()[-1][:200] if text.strip() else 'no space left'})"

    def on_checkpoint(self, iteration, trials, trial, checkpoint, **info):
        """Keep the newest KEEP_CHECKPOINTS of the attempt (Tune's own num_to_keep forces an
        experiment snapshot on every checkpoint); watch the free space of local storage."""
        dirname = self._dirname(trial)
        checkpoints = [d for d in self.storage.list_dirs(self.name, dirname) if d.startswith("checkpoint_")]
        for old in checkpoints[:-KEEP_CHECKPOINTS]:
            try:
                self.storage.delete_dir(self.name, dirname, old)
            except OSError:
                pass
        if self.storage.local and checkpoints:
            newest = Path(self.storage.path(self.name, dirname, checkpoints[-1]))
            size = sum(f.stat().st_size for f in newest.rglob("*") if f.is_file())
            self.checkpoint_bytes = max(self.checkpoint_bytes, size)
            running = sum(t.status == "RUNNING" for t in trials) or 1
            needed = max(MIN_FREE_BYTES, FREE_SPACE_MARGIN * running * self.checkpoint_bytes)
            free = self._free_bytes()
            if free < needed:
                self.storage_full = self.storage_full or (f"{self.storage.uri} has {free / 2**20:.1f} MiB free, "
                                                          f"less than the {needed / 2**20:.1f} MiB the running "
                                                          "trials need for their next checkpoints")

    def _free_bytes(self) -> float:
        if not self.storage.local:
            return math.inf
        try:
            return shutil.disk_usage(self.storage.root).free
        except OSError:
            return math.inf


def build_tuner(spec: ExperimentSpec, storage: Storage, bookkeeping, trials: list[dict] | None,
                optuna_samples: int = 0, trial_fn=None, verbose: int = 1):
    """A Tuner over the planned `trials` (grid/random, or what --resume continues), or over
    `optuna_samples` new configurations drawn by Optuna (each run on every seed)."""
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler, FIFOScheduler

    # ASHA counts evaluations (the trial's own counter), not reports: they differ when
    # report_every > 1, and a trial resumed in a new attempt restarts Tune's iteration count.
    evaluations = math.ceil(spec.train.updates / spec.train.eval_every)
    if spec.scheduler == "asha":
        scheduler = ASHAScheduler(time_attr="evaluation", max_t=evaluations,
                                  grace_period=spec.asha_grace_period, reduction_factor=spec.asha_reduction_factor)
    else:
        scheduler = FIFOScheduler()
    if trials is None:
        from ray.tune.search import Repeater
        try:
            from ray.tune.search.optuna import OptunaSearch
            import optuna  # noqa: F401  (OptunaSearch imports lazily; fail here with a clear message)
        except ImportError:
            raise ConfigError("search_alg: optuna needs the optional extra: pip install 'distributed_agent[optuna]'")
        param_space = {"hp": {d.name: _tune_distribution(d) for d in spec.search}}
        drawn = spec.samples - optuna_samples  # a resumed search draws its remaining configs anew
        search_alg = Repeater(OptunaSearch(seed=drawn), repeat=len(spec.seeds))
        num_samples = optuna_samples * len(spec.seeds)
    else:
        param_space = {"trial": tune.grid_search(trials)}
        search_alg, num_samples = None, 1
    return tune.Tuner(
        build_trainable(spec, trial_fn),
        param_space=param_space,
        tune_config=tune.TuneConfig(metric=spec.metric, mode=spec.mode, scheduler=scheduler, search_alg=search_alg,
                                    num_samples=num_samples, reuse_actors=True,
                                    trial_dirname_creator=tune_trial_dirname),
        run_config=tune.RunConfig(name=spec.name, storage_path=storage.uri, callbacks=[bookkeeping],
                                  stop=bookkeeping,
                                  failure_config=tune.FailureConfig(max_failures=spec.max_failures),
                                  checkpoint_config=tune.CheckpointConfig(num_to_keep=None), verbose=verbose),
    )


def _tune_distribution(dimension):
    from ray import tune

    low_high = dimension.values
    return {"choice": lambda: tune.choice(list(low_high)),
            "uniform": lambda: tune.uniform(*low_high),
            "loguniform": lambda: tune.loguniform(*low_high),
            "randint": lambda: tune.randint(*low_high)}[dimension.kind]()


def open_experiment(spec: ExperimentSpec, storage: Storage, resume: bool) -> ExperimentLock:
    """Check, create (or reopen) and lock the experiment folder, before Ray starts."""
    where = storage.uri_of(spec.name)
    lock = ExperimentLock(storage, spec.name)
    if resume:
        if not storage.exists(spec.name):
            raise ConfigError(f"--resume: no experiment to resume at {where}")
        lock.acquire()
        try:
            check_saved_spec(spec, storage)
        except BaseException:
            lock.release()
            raise
        return lock
    exists = f"experiment folder {where} exists; continue it with --resume, or change the spec's name or --storage " \
             "(nothing is overwritten)"
    if storage.exists(spec.name):
        raise ConfigError(exists)
    try:
        if storage.local:
            Path(storage.root).mkdir(parents=True, exist_ok=True)
            os.mkdir(storage.path(spec.name))  # exclusive: of two drivers started together, one wins
        else:
            storage.make_dirs(spec.name)
    except FileExistsError:
        raise ConfigError(exists) from None
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


def run_sweep(spec: ExperimentSpec, storage: str = "runs", address: str | None = None, resume: bool = False,
              restart_errored: bool = False, trial_fn=None, verbose: int = 1) -> str:
    """Run (or resume) a sweep; returns the experiment folder. The spec is already validated.

    Tune returns normally also when the driver is interrupted (SIGINT): the report on the folder
    tells finished trials from unfinished ones. A storage that fills up ends the sweep with
    StorageFull after the running trials stopped; everything finished stays readable.
    """
    store = open_storage(storage)
    if spec.gpus_per_trial > 0 and not address and local_gpu_count() == 0:
        raise ConfigError(f"resources.gpu: {spec.gpus_per_trial} GPU per trial asked, but this machine has no "
                          "CUDA GPU; set resources.gpu: 0 or use --address with a GPU cluster")
    lock = open_experiment(spec, store, resume)
    try:
        if resume:
            trials, samples = remaining_trials(spec, store, scan_trials(store, spec.name), restart_errored)
        elif spec.search_alg == "optuna":
            trials, samples = [], spec.samples
        else:
            trials, samples = planned_trials(spec), 0

        def fit(planned: list[dict] | None, optuna_samples: int = 0):
            bookkeeping = _bookkeeping_class()(store, spec.name)
            build_tuner(spec, store, bookkeeping, planned, optuna_samples, trial_fn=trial_fn, verbose=verbose).fit()
            if bookkeeping.storage_full:
                raise StorageFull(bookkeeping.storage_full)
            return bookkeeping

        with ray_session(address):
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
