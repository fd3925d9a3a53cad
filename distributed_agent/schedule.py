"""Hyperparameters that change during training: a config's `schedule`, and the changes
population-based training makes. Every change is logged in the run (`TrainState.changes`), in the
schedule's own format, so a run's history of hyperparameters can be replayed as a schedule.
"""

from __future__ import annotations

from .state import TrainState


def apply_due(run: TrainState) -> None:
    """Apply the schedule's entry for the update about to start, if there is one."""
    for entry in run.config.schedule:
        if entry["update"] == run.update:
            change_hyperparameters(run, {name: value for name, value in entry.items() if name != "update"})


def change_hyperparameters(run: TrainState, values: dict, update: int | None = None) -> None:
    """Continue `run` with these field values (schedulable fields: config.schedulable_fields),
    logged at `update` (default: the run's own; a population's change is logged at the
    population's update, also in a member that solved earlier and stays at its own)."""
    update = run.update if update is None else update
    run.config = run.config.replace(**values)
    for group in run.optimizer.param_groups:  # Adam keeps its own copy of the learning rate
        group["lr"] = run.config.lr
    if run.changes and run.changes[-1]["update"] == update:
        run.changes[-1].update(values)
    else:
        run.changes.append({"update": update, **values})


def values_in_effect(changes: list[dict]) -> dict:
    """The field values in effect after a list of changes (a schedule, or a run's log of them)."""
    values = {}
    for entry in changes:
        values.update({name: value for name, value in entry.items() if name != "update"})
    return values


def scheduled_fields(config) -> set[str]:
    """The fields the config's schedule changes (a checkpoint holds their values of the moment)."""
    return {name for entry in config.schedule for name in entry if name != "update"}
