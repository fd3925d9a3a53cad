"""The Tune trainable: one trial is one training run, reported and checkpointed through Tune.

A trial's numbers depend on its config and seed only: the run seeds everything itself, so
neither the worker that runs it, nor the order, nor worker reuse, nor a restart from a
checkpoint changes them. Runs inside a Ray worker.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from . import checkpoint
from .config import TrainConfig
from .evaluation import evaluation_metrics
from .experiment import STATE_FILE
from .runtime import apply_process_settings
from .state import Evaluation, TrainState, new_run
from .train import final_evaluation, finished, run_updates


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
    return TrainConfig.from_dict(
        {**base, **params, "device": "cuda" if gpus > 0 else "cpu", "num_threads": max(1, int(cpus))}
    )


def load_trial_state(run: TrainState, saved) -> None:
    """Load a Tune checkpoint into a trial's run; refuse one made for another configuration."""
    with saved.as_directory() as directory:
        state = checkpoint.read(Path(directory) / STATE_FILE)
    checkpoint.restore(run, state, str(saved.path))


def run_trial(
    config: dict, base: dict, seeds: tuple, checkpoint_every: int, gpus: float, cpus: float, report_every: int = 1
):
    """Train one trial. `report_every` and `checkpoint_every` count evaluations; each report carries
    `evaluation`, the count of evaluations so far, the time unit of the scheduler."""
    import ray
    from ray import tune

    train_config = trial_config(config, base, seeds, gpus, cpus)
    apply_process_settings(train_config)
    run = new_run(train_config)
    saved = tune.get_checkpoint()  # set when Tune restarts this trial after a failure
    resume_from = config.get("trial", {}).get("resume_from")
    if saved is None and resume_from:  # an earlier attempt's checkpoint, handed by --resume
        saved = tune.Checkpoint(resume_from)
    if saved is not None:
        load_trial_state(run, saved)
    node_id = ray.get_runtime_context().get_node_id()
    reported_final = False

    def report(evaluation: Evaluation, run: TrainState) -> None:
        nonlocal reported_final
        final = finished(run)
        if not final and len(run.history) % report_every:
            return  # Tune's driver does real work per report; fewer reports, faster sweeps
        if final:  # the last report carries the final, larger greedy evaluation
            success, reward = final_evaluation(run)
            evaluation = Evaluation(
                evaluation.update,
                evaluation.episodes,
                evaluation.stage,
                success,
                reward,
                evaluation.loss,
                evaluation.seconds,
            )
            reported_final = True
        metrics = {
            **evaluation_metrics(evaluation),
            "evaluation": len(run.history),
            "seed": train_config.seed,
            "final": int(final),
            "eval_episodes": train_config.final_eval_episodes if final else train_config.eval_episodes,
            "node_id": node_id,
            "device": str(run.device),
            "rss_mib": resident_mib(),
        }
        if final or len(run.history) % checkpoint_every == 0:
            with tempfile.TemporaryDirectory() as directory:
                checkpoint.save(run, Path(directory) / STATE_FILE)
                tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(directory))
        else:
            tune.report(metrics)

    run_updates(run, callback=report)
    if not reported_final and run.history:
        # Resumed from the final checkpoint (its report was lost): report the final numbers again.
        report(run.history[-1], run)


def resident_mib() -> float:
    """Current resident memory of this process (Linux), else its peak."""
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError, IndexError):
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
