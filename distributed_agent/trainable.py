"""The Tune trainable: one trial trains one seed or a population of seeds of one configuration,
reported and checkpointed through Tune.

A trial's numbers depend on its config and seeds only: the run seeds everything itself, so
neither the worker that runs it, nor the order, nor worker reuse, nor a restart from a
checkpoint changes them. Runs inside a Ray worker.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import replace
from pathlib import Path

from . import checkpoint
from .config import TrainConfig
from .evaluation import evaluation_metrics
from .experiment import META_FILE, STATE_FILE
from .metrics import HYPERPARAMETER_PREFIX, OBJECTIVES, SCHEDULE_KEY, SOLVED, SOLVED_SHARE, SUCCESS_MIN
from .runtime import apply_process_settings, cpu_description
from .schedule import change_hyperparameters, values_in_effect
from .state import Evaluation, TrainState, new_population
from .train import final_evaluation, finished, run_updates


def trial_config(config: dict, base: dict, seeds: tuple, gpus: float, cpus: float) -> tuple[TrainConfig, list[int]]:
    """The TrainConfig of a trial and the seeds it trains, from what Tune hands it.

    Planned trials come as {"trial": {"key", "attempt", "resume_from", "hp": {...}}} whose hp holds
    "seed" (one run) or "seeds" (a population); Optuna hands {"hp": {...}}, all seeds in one trial,
    or through a Repeater {"hp": {...}, "__trial_index__": k}, the k-th repeat of a config, which
    runs seed seeds[k]. The device follows the resources the trial holds: a GPU share means CUDA,
    else the CPU.
    """
    params = dict(config["trial"]["hp"] if "trial" in config else config["hp"])
    if "__trial_index__" in config:
        params["seed"] = seeds[config["__trial_index__"]]
    if "seeds" in params:
        trial_seeds = list(params.pop("seeds"))
    elif "seed" in params:
        trial_seeds = [params["seed"]]
    else:  # Optuna without a Repeater: the whole configuration, every seed, in one trial
        trial_seeds = list(seeds)
    params["seed"] = trial_seeds[0]
    train_config = TrainConfig.from_dict(
        {**base, **params, "device": "cuda" if gpus > 0 else "cpu", "num_threads": max(1, int(cpus))}
    )
    return train_config, trial_seeds


def population_trial(config: dict) -> bool:
    """Whether a trial trains a population (its reports then carry every member's metrics)."""
    params = config["trial"]["hp"] if "trial" in config else config["hp"]
    return "seed" not in params and "__trial_index__" not in config


def load_trial_state(members: list[TrainState], saved, mutable: tuple[str, ...] = ()) -> None:
    """Load a Tune checkpoint into a trial's population; refuse one made for another configuration
    (the `mutable` fields aside: population-based training exploits a donor with other values)."""
    with saved.as_directory() as directory:
        state = checkpoint.read(Path(directory) / STATE_FILE)
    checkpoint.restore(members, state, str(saved.path), mutable)


def follow_mutations(members: list[TrainState], config: TrainConfig, mutable: tuple[str, ...]) -> None:
    """Log (and apply) the trial's values of the mutated fields where they differ from the ones in
    effect: at the start, and after an exploit, whose donor's log the run has just taken over.
    Logged at the population's update, also in a member that solved earlier and stays at its own."""
    update = max(run.update for run in members)
    values = {name: getattr(config, name) for name in mutable}
    for run in members:
        in_effect = values_in_effect(run.changes)
        if any(in_effect.get(name) != value for name, value in values.items()):
            change_hyperparameters(run, values, update)


def member_metrics(run: TrainState, evaluation: Evaluation, final: bool) -> dict:
    config = run.config
    return {
        **evaluation_metrics(evaluation),
        "seed": config.seed,
        "final": int(final),
        "eval_episodes": config.final_eval_episodes if final else config.eval_episodes,
    }


def population_metrics(members: list[dict]) -> dict:
    """The aggregate a scheduler and a searcher judge a configuration by: the mean over members
    of every metric, `episodes` summed (the compute the trial spent), and the share solved."""
    aggregate = {key: sum(m[key] for m in members) / len(members) for key in (*OBJECTIVES, "loss")}
    aggregate["episodes"] = sum(m["episodes"] for m in members)
    aggregate["seconds"] = sum(m["seconds"] for m in members)
    aggregate["update"] = max(m["update"] for m in members)
    aggregate[SOLVED_SHARE] = sum(m[SUCCESS_MIN] >= SOLVED for m in members) / len(members)
    return aggregate


def run_trial(
    config: dict,
    base: dict,
    seeds: tuple,
    checkpoint_every: int,
    gpus: float,
    cpus: float,
    report_every: int = 1,
    mutable: tuple[str, ...] = (),
):
    """Train one trial: one seed, or a population. `report_every` and `checkpoint_every` count
    evaluations; each report carries `evaluation`, the count of evaluation rounds so far, the time
    unit of the scheduler."""
    import ray
    from ray import tune

    train_config, trial_seeds = trial_config(config, base, seeds, gpus, cpus)
    population = population_trial(config)
    apply_process_settings(train_config)
    members = new_population(train_config, trial_seeds)
    saved = tune.get_checkpoint()  # set when Tune restarts this trial after a failure
    resume_from = config.get("trial", {}).get("resume_from")
    if saved is None and resume_from:  # an earlier attempt's checkpoint, handed by --resume
        saved = tune.Checkpoint(resume_from)
    if saved is not None:
        load_trial_state(members, saved, mutable)
    follow_mutations(members, train_config, mutable)
    node_id, cpu = ray.get_runtime_context().get_node_id(), cpu_description()
    reported_final = False

    def report(members: list[TrainState]) -> None:
        nonlocal reported_final
        final = all(finished(run) for run in members)
        rounds = max(len(run.history) for run in members)
        if not final and rounds % report_every:
            return  # Tune's driver does real work per report; fewer reports, faster sweeps
        evaluations = [run.history[-1] for run in members]
        if final:  # the last report carries the final, larger greedy evaluation
            evaluations = [
                replace(evaluation, success=success, reward=reward)
                for evaluation, (success, reward) in zip(evaluations, final_evaluation(members))
            ]
            reported_final = True
        per_member = [member_metrics(run, e, final) for run, e in zip(members, evaluations)]
        metrics = {
            **(population_metrics(per_member) if population else per_member[0]),
            "evaluation": rounds,
            "final": int(final),
            "eval_episodes": per_member[0]["eval_episodes"],
            "node_id": node_id,
            "device": str(members[0].device),
            "cpu": cpu,
            "rss_mib": resident_mib(),
        }
        if population:  # keyed by seed: Tune logs each member's metrics as scalars (members/seed3/...)
            metrics["members"] = {f"seed{m['seed']}": m for m in per_member}
        if final and mutable:  # no perturbation at the end: PBT skips a result without its time
            del metrics["evaluation"]
        if mutable:  # the values in effect, and the whole history (a donor's before an exploit)
            metrics.update({f"{HYPERPARAMETER_PREFIX}{name}": getattr(members[0].config, name) for name in mutable})
            metrics[SCHEDULE_KEY] = json.dumps(members[0].changes)
        if final or rounds % checkpoint_every == 0:
            with tempfile.TemporaryDirectory() as directory:
                checkpoint.save(members, Path(directory) / STATE_FILE)
                (Path(directory) / META_FILE).write_text(json.dumps({"evaluation": rounds}))
                tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(directory))
        else:
            tune.report(metrics)

    run_updates(members, callback=report)
    if not reported_final and any(run.history for run in members):
        # Resumed from the final checkpoint (its report was lost): report the final numbers again.
        report(members)


def resident_mib() -> float:
    """Current resident memory of this process (Linux), else its peak."""
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError, IndexError):
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
