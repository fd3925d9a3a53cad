"""Ray Tune sweeps: every trial is one `train()` run, reported and checkpointed through Tune.

A trial's numbers depend on its config and seed only: the Trainer seeds everything itself, so
neither the worker that runs it, nor the order, nor worker reuse, nor a restart from a
checkpoint changes them.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from pathlib import Path

import torch
import yaml

from .config import ConfigError, TrainConfig
from .spec import ExperimentSpec
from .train import Evaluation, Trainer

STATE_FILE = "trainer_state.pt"
SPEC_FILE = "spec.yaml"


# ---------------------------------------------------------------------------------------------
# The trainable (runs inside a Ray worker)
# ---------------------------------------------------------------------------------------------

def trial_config(config: dict, base: dict, seeds: tuple, gpus: float, cpus: float) -> TrainConfig:
    """The TrainConfig of a trial from what Tune hands it.

    Random/grid search hands {"hp": {..., "seed": s}}; Optuna (through a Repeater) hands
    {"hp": {...}, "__trial_index__": k}, the k-th repeat of a config, which runs seed seeds[k].
    The device follows the resources the trial holds: a GPU share means CUDA, else the CPU.
    """
    params = dict(config["hp"])
    if "__trial_index__" in config:
        params["seed"] = seeds[config["__trial_index__"]]
    return TrainConfig.from_dict({**base, **params, "device": "cuda" if gpus > 0 else "cpu",
                                  "num_threads": max(1, int(cpus))})


def run_trial(config: dict, base: dict, seeds: tuple, checkpoint_every: int, gpus: float, cpus: float,
              report_every: int = 1):
    from ray import tune
    import ray

    train_config = trial_config(config, base, seeds, gpus, cpus)
    trainer = Trainer(train_config)
    checkpoint = tune.get_checkpoint()
    if checkpoint is not None:
        with checkpoint.as_directory() as directory:
            trainer.load_state_dict(torch.load(Path(directory) / STATE_FILE, weights_only=True))
    node_id = ray.get_runtime_context().get_node_id()

    def report(evaluation: Evaluation, trainer: Trainer) -> None:
        final = trainer.finished
        if not final and len(trainer.history) % report_every:
            return  # Tune's driver does real work per report; fewer reports, faster sweeps
        if final:  # the last report carries the final, larger greedy evaluation
            success, reward = trainer.evaluate(train_config.final_eval_episodes, tag=-1)
            evaluation = Evaluation(evaluation.update, evaluation.episodes, evaluation.stage, success, reward,
                                    evaluation.loss, evaluation.seconds)
        metrics = {**evaluation.metrics(), "seed": train_config.seed, "final": int(final),
                   "eval_episodes": train_config.final_eval_episodes if final else train_config.eval_episodes,
                   "node_id": node_id, "device": str(trainer.device), "rss_mib": resident_mib()}
        if final or len(trainer.history) % checkpoint_every == 0:
            with tempfile.TemporaryDirectory() as directory:
                trainer.save(Path(directory) / STATE_FILE)
                tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(directory))
        else:
            tune.report(metrics)

    trainer.run(callback=report)


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

def storage_root(storage: str) -> str:
    """A URI as given, a local path made absolute (Tune needs one)."""
    return storage if "://" in storage else str(Path(storage).expanduser().resolve())


def experiment_path(storage: str, name: str) -> str:
    return storage_root(storage).rstrip("/") + "/" + name


def check_can_start(spec: ExperimentSpec, storage: str, resume: bool) -> str:
    """Refuse, before Ray starts, what would overwrite a run or resume nothing."""
    from ray import tune

    path = experiment_path(storage, spec.name)
    exists = tune.Tuner.can_restore(path) if "://" in storage else Path(path).exists()
    if resume:
        if not tune.Tuner.can_restore(path):
            raise ConfigError(f"--resume: no experiment to resume at {path}")
        saved = Path(path) / SPEC_FILE
        if "://" not in storage and saved.exists() and yaml.safe_load(saved.read_text()) != _spec_record(spec):
            raise ConfigError(f"--resume: the spec differs from the one {path} was started with ({saved}); "
                              "resume with that spec or start a new experiment name")
    elif exists:
        raise ConfigError(f"experiment folder {path} exists; continue it with --resume, or change the "
                          "spec's name or --storage (nothing is overwritten)")
    return path


def _spec_record(spec: ExperimentSpec) -> dict:
    return json.loads(json.dumps(spec.source))


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


def trial_dirname(trial) -> str:
    return f"trial_{trial.trial_id}"


def build_tuner(spec: ExperimentSpec, storage: str, trial_fn=None, verbose: int = 1):
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler, FIFOScheduler

    reports = math.ceil(spec.train.updates / spec.train.eval_every / spec.report_every)
    if spec.scheduler == "asha":
        scheduler = ASHAScheduler(time_attr="training_iteration", max_t=reports,
                                  grace_period=spec.asha_grace_period, reduction_factor=spec.asha_reduction_factor)
    else:
        scheduler = FIFOScheduler()
    if spec.search_alg == "optuna":
        from ray.tune.search import Repeater
        try:
            from ray.tune.search.optuna import OptunaSearch
            import optuna  # noqa: F401  (OptunaSearch imports lazily; fail here with a clear message)
        except ImportError:
            raise ConfigError("search_alg: optuna needs the optional extra: pip install 'distributed_agent[optuna]'")
        param_space = {"hp": {d.name: _tune_distribution(d) for d in spec.search}}
        search_alg = Repeater(OptunaSearch(seed=0), repeat=len(spec.seeds))
        num_samples = spec.samples * len(spec.seeds)
    else:
        param_space = {"hp": tune.grid_search(spec.variants())}
        search_alg, num_samples = None, 1
    return tune.Tuner(
        build_trainable(spec, trial_fn),
        param_space=param_space,
        tune_config=tune.TuneConfig(metric=spec.metric, mode=spec.mode, scheduler=scheduler, search_alg=search_alg,
                                    num_samples=num_samples, reuse_actors=True, trial_dirname_creator=trial_dirname),
        run_config=tune.RunConfig(name=spec.name, storage_path=storage_root(storage),
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


def start_ray(address: str | None) -> None:
    import ray

    if address:
        ray.init(address=address, log_to_driver=False)
    else:
        os.environ.setdefault("RAY_AUTH_MODE", "disabled")  # no token notice on a private local Ray
        # Each trial of a reused worker runs in a new thread, and glibc gives new threads new malloc
        # arenas: without a cap a worker grew by ~7 MiB per trial (benchmarks/sweep_overhead.py).
        os.environ.setdefault("MALLOC_ARENA_MAX", "2")
        ray.init(include_dashboard=False, log_to_driver=False)


def run_sweep(spec: ExperimentSpec, storage: str = "runs", address: str | None = None, resume: bool = False,
              restart_errored: bool = False, trial_fn=None, verbose: int = 1) -> str:
    """Run (or resume) a sweep; returns the experiment folder. The spec is already validated.

    Tune returns normally also when the driver is interrupted (SIGINT): the report on the folder
    tells finished trials from unfinished ones.
    """
    import ray
    from ray import tune

    if spec.gpus_per_trial > 0 and not address and local_gpu_count() == 0:
        raise ConfigError(f"resources.gpu: {spec.gpus_per_trial} GPU per trial asked, but this machine has no "
                          "CUDA GPU; set resources.gpu: 0 or use --address with a GPU cluster")
    path = check_can_start(spec, storage, resume)
    start_ray(address)
    try:
        check_resources(spec, address)
        if resume:
            tuner = tune.Tuner.restore(path, trainable=build_trainable(spec, trial_fn), resume_unfinished=True,
                                       resume_errored=not restart_errored, restart_errored=restart_errored)
        else:
            if "://" not in storage:
                Path(path).mkdir(parents=True)
                (Path(path) / SPEC_FILE).write_text(yaml.safe_dump(_spec_record(spec), sort_keys=False))
            tuner = build_tuner(spec, storage, trial_fn, verbose)
        tuner.fit()
    finally:
        ray.shutdown()
    return path


