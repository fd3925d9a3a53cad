"""Checkpoints: a population's whole state (every member's) in one file, and reading one back
with its format checked. A run alone is a population of one.

A checkpoint is a dict of tensors and plain values (torch.save), read with weights_only=True:
a file from shared storage is data, never code.
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import torch

from .config import ConfigError, TrainConfig
from .schedule import scheduled_fields
from .state import Evaluation, TrainState, new_run

CHECKPOINT_FORMAT = 2  # a population: {"format": 2, "members": [one run's state, ...]}
SINGLE_RUN_FORMAT = 1  # one run's state at the top level (read as a population of one)
EXECUTION_FIELDS = ("device", "num_threads", "members_per_step")  # may differ between a saved run and its resumption


def member_state(run: TrainState) -> dict:
    if run.config.agent != "ours":
        from . import baselines

        return baselines.member_state(run)
    state = {
        "model": run.model.state_dict(),
        "optimizer": run.optimizer.state_dict(),
        "generator": run.generator.get_state(),
        **progress_state(run),
    }
    for method in run.exploration:
        if method.checkpoint_key:
            state[method.checkpoint_key] = method.state_dict()
    return state


def load_member_state(run: TrainState, state: dict) -> None:
    """Load a member's saved state; the fields its schedule had changed take their saved values."""
    if run.config.agent != "ours":
        from . import baselines

        return baselines.load_member_state(run, state)
    saved = TrainConfig.from_dict(state["config"], where="checkpoint config")
    run.config = run.config.replace(**{name: getattr(saved, name) for name in scheduled_fields(run.config)})
    run.model.load_state_dict(state["model"])
    run.optimizer.load_state_dict(state["optimizer"])
    for group in run.optimizer.param_groups:  # the run's own learning rate, not the one saved
        group["lr"] = run.config.lr
    run.generator.set_state(state["generator"])
    for method in run.exploration:
        if method.checkpoint_key:
            method.load_state_dict(state[method.checkpoint_key])
    load_progress(run, state)


def progress_state(run) -> dict:
    """What every agent's run saves besides its learner: config, curriculum, counters, history."""
    return {
        "config": run.config.to_dict(),
        "curriculum": run.curriculum.state_dict(),
        "update": run.update,
        "episodes": run.episodes,
        "seconds": run.seconds,
        "last_loss": run.last_loss,
        "history": [asdict(e) for e in run.history],
        "changes": run.changes,
    }


def load_progress(run, state: dict) -> None:
    run.curriculum.load_state_dict(state["curriculum"])
    run.update = state["update"]
    run.episodes = state["episodes"]
    run.seconds = state["seconds"]
    run.last_loss = state["last_loss"]
    run.history = [Evaluation(**e) for e in state["history"]]
    run.changes = [dict(change) for change in state.get("changes", [])]


def state_dict(members: list[TrainState]) -> dict:
    return {"format": CHECKPOINT_FORMAT, "members": [member_state(run) for run in members]}


def save(members: list[TrainState], path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    torch.save(state_dict(members), partial)
    partial.replace(path)  # a crash mid-write never leaves a truncated checkpoint
    return path


def read(path: str | Path) -> dict:
    """The population saved in `path`; a missing, foreign or corrupt file is one ConfigError line."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"checkpoint: no such file {str(path)!r}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # a foreign or corrupt file: say which, in one line
        raise ConfigError(
            f"checkpoint: {str(path)!r} is not a distributed_agent checkpoint ({error.__class__.__name__})"
        ) from None
    if isinstance(state, dict) and state.get("format") == SINGLE_RUN_FORMAT:
        return {"format": CHECKPOINT_FORMAT, "members": [state]}
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT or not state.get("members"):
        raise ConfigError(
            f"checkpoint: {str(path)!r} is not a distributed_agent checkpoint (format {CHECKPOINT_FORMAT})"
        )
    return state


def saved_configs(state: dict, where: str) -> list[TrainConfig]:
    try:
        return [
            TrainConfig.from_dict(member["config"], where=f"checkpoint {where}: config") for member in state["members"]
        ]
    except (KeyError, TypeError):
        raise ConfigError(f"checkpoint: {where} names no configuration") from None


def restore(members: list[TrainState], state: dict, where: str, mutable: tuple[str, ...] = ()) -> None:
    """Load `state` into a population that must train the same configurations and seeds; execution
    fields, the fields its schedule changes and `mutable` ones (population-based training's) aside."""
    ignored = {*EXECUTION_FIELDS, *mutable, *scheduled_fields(members[0].config)}

    def comparable(config: TrainConfig) -> dict:
        return {k: v for k, v in config.to_dict().items() if k not in ignored}

    if [comparable(c) for c in saved_configs(state, where)] != [comparable(run.config) for run in members]:
        raise ConfigError(f"checkpoint {where} was made for another configuration or seeds than this run's")
    load_population_state(members, state, where)


def load(path: str | Path, **config_changes) -> list[TrainState]:
    """The population saved in `path`, continued under its configurations with `config_changes` on
    top (the CLI changes the device)."""
    state = read(path)
    where = repr(str(path))
    members = [new_run(config.replace(**config_changes)) for config in saved_configs(state, where)]
    load_population_state(members, state, where)
    return members


def load_population_state(members: list[TrainState], state: dict, where: str = "state") -> None:
    """Each member's saved state into it; a state that does not fit the population's shapes is said
    in one line."""
    saved = state.get("members", [])
    if len(saved) != len(members):
        raise ConfigError(f"checkpoint: {where} holds {len(saved)} member(s), this run trains {len(members)}")
    try:
        for run, member in zip(members, saved):
            load_member_state(run, member)
    except (KeyError, RuntimeError, ValueError, TypeError) as error:
        reason = str(error).splitlines()[0][:120] if str(error) else error.__class__.__name__
        raise ConfigError(f"checkpoint: {where} does not match the configuration it names ({reason})") from None
