"""Checkpoints: a run's whole state in one file, and reading one back with its format checked.

A checkpoint is a dict of tensors and plain values (torch.save), read with weights_only=True:
a file from shared storage is data, never code.
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import torch

from .config import ConfigError, TrainConfig
from .state import Evaluation, TrainState, new_run

CHECKPOINT_FORMAT = 1
EXECUTION_FIELDS = ("device", "num_threads")  # may differ between the run saved and the one resumed


def state_dict(run: TrainState) -> dict:
    state = {
        "format": CHECKPOINT_FORMAT,
        "config": run.config.to_dict(),
        "model": run.model.state_dict(),
        "optimizer": run.optimizer.state_dict(),
        "generator": run.generator.get_state(),
        "curriculum": run.curriculum.state_dict(),
        "update": run.update,
        "episodes": run.episodes,
        "seconds": run.seconds,
        "last_loss": run.last_loss,
        "history": [asdict(e) for e in run.history],
    }
    for method in run.exploration:
        if method.checkpoint_key:
            state[method.checkpoint_key] = method.state_dict()
    return state


def load_state_dict(run: TrainState, state: dict) -> None:
    run.model.load_state_dict(state["model"])
    run.optimizer.load_state_dict(state["optimizer"])
    run.generator.set_state(state["generator"])
    run.curriculum.load_state_dict(state["curriculum"])
    for method in run.exploration:
        if method.checkpoint_key:
            method.load_state_dict(state[method.checkpoint_key])
    run.update = state["update"]
    run.episodes = state["episodes"]
    run.seconds = state["seconds"]
    run.last_loss = state["last_loss"]
    run.history = [Evaluation(**e) for e in state["history"]]


def save(run: TrainState, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    torch.save(state_dict(run), partial)
    partial.replace(path)  # a crash mid-write never leaves a truncated checkpoint
    return path


def read(path: str | Path) -> dict:
    """The state saved in `path`; a missing, foreign or corrupt file is one ConfigError line."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"checkpoint: no such file {str(path)!r}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # a foreign or corrupt file: say which, in one line
        raise ConfigError(
            f"checkpoint: {str(path)!r} is not a distributed_agent checkpoint ({error.__class__.__name__})"
        ) from None
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise ConfigError(
            f"checkpoint: {str(path)!r} is not a distributed_agent checkpoint (format {CHECKPOINT_FORMAT})"
        )
    return state


def saved_config(state: dict, where: str) -> TrainConfig:
    try:
        return TrainConfig.from_dict(state["config"], where=f"checkpoint {where}: config")
    except KeyError:
        raise ConfigError(f"checkpoint: {where} names no configuration") from None


def restore(run: TrainState, state: dict, where: str) -> None:
    """Load `state` into `run`, which must train the same configuration (execution aside)."""
    saved = {k: v for k, v in saved_config(state, where).to_dict().items() if k not in EXECUTION_FIELDS}
    if saved != {k: v for k, v in run.config.to_dict().items() if k not in EXECUTION_FIELDS}:
        raise ConfigError(f"checkpoint {where} was made for another configuration than this run's")
    _load_explained(run, state, where)


def load(path: str | Path, **config_changes) -> TrainState:
    """The run saved in `path`, continued under its configuration with `config_changes` on top
    (the CLI changes the device; `train(resume_from=...)` gives its whole config)."""
    state = read(path)
    where = repr(str(path))
    run = new_run(saved_config(state, where).replace(**config_changes))
    _load_explained(run, state, where)
    return run


def _load_explained(run: TrainState, state: dict, where: str) -> None:
    """load_state_dict, with a state that does not fit the run's shapes said in one line."""
    try:
        load_state_dict(run, state)
    except (KeyError, RuntimeError, ValueError, TypeError) as error:
        reason = str(error).splitlines()[0][:120] if str(error) else error.__class__.__name__
        raise ConfigError(f"checkpoint: {where} does not match the configuration it names ({reason})") from None
