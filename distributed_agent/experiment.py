"""An experiment folder, and what is done and what is left in it.

    NAME/spec.yaml                 the spec the experiment was started with (compared on --resume)
    NAME/driver.lock               held by the one driver running the experiment (pid and host inside)
    NAME/trial_0003/               the first attempt of trial 0003: Tune's params.json, result.json,
                                   checkpoint_00000k/trainer_state.pt (and meta.json: its
                                   evaluation), error.txt
    NAME/trial_0003/outcome.json   written by the driver when the attempt ends (status, failures)
    NAME/trial_0003.r1/            a later attempt of trial 0003, started by --resume from the
                                   newest readable checkpoint of the earlier ones (an empty folder
                                   is no attempt: a trial pending at an interrupt; it runs there)
    NAME/pbt_round.json            pbt/pb2: the last round of decisions (pbt.py), where --resume
                                   restarts the unfinished trials

`--resume` and the report read only these files (JSON, safe YAML, checkpoints as tensors). Tune's
own experiment state and its pickles (tuner.pkl, *.pkl) are never read, so a damaged or crafted
state file can neither stop an experiment from resuming nor run code.
"""

from __future__ import annotations

import io
import json
import random
import re
import sys
import uuid
from dataclasses import dataclass, field

import yaml

from .config import ConfigError
from .safe_yaml import load_yaml
from .spec import POPULATION_BASED, ExperimentSpec
from .storage import Storage

SPEC_FILE = "spec.yaml"
OUTCOME_FILE = "outcome.json"
STATE_FILE = "trainer_state.pt"
META_FILE = "meta.json"
ROUND_FILE = "pbt_round.json"
TRIAL_DIR = re.compile(r"^trial_(?P<key>[A-Za-z0-9_]+?)(?:\.r(?P<attempt>\d+))?$")
CHECKPOINT_DIR = re.compile(r"^checkpoint_\d+$")


def spec_record(spec: ExperimentSpec) -> dict:
    return json.loads(json.dumps(spec.source))


def trial_dirname(key: str, attempt: int) -> str:
    return f"trial_{key}" + (f".r{attempt}" if attempt else "")


def trial_keys(count: int) -> list[str]:
    width = max(4, len(str(count - 1)))
    return [f"{index:0{width}d}" for index in range(count)]


# ---------------------------------------------------------------------------------------------
# Reading trial folders
# ---------------------------------------------------------------------------------------------


@dataclass
class Attempt:
    dirname: str
    number: int
    params: dict | None  # Tune's params.json: the trial's config
    outcome: dict | None  # outcome.json, written by the driver when the attempt ended
    results: list[dict] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


@dataclass
class TrialRecord:
    key: str
    attempts: list[Attempt]

    @property
    def params(self) -> dict | None:
        return next((a.params for a in self.attempts if a.params is not None), None)

    @property
    def outcome(self) -> dict | None:
        return self.attempts[-1].outcome

    @property
    def results(self) -> list[dict]:
        """Every report of every attempt, one per evaluation (the newest if reported twice)."""
        by_update = {}
        for attempt in self.attempts:
            for row in attempt.results:
                by_update[row.get("update", len(by_update))] = row
        return [by_update[u] for u in sorted(by_update, key=lambda u: (not isinstance(u, int), u))]

    @property
    def final_result(self) -> dict | None:
        results = self.results
        return results[-1] if results and results[-1].get("final") == 1 else None

    @property
    def finished(self) -> bool:
        """Ended and its final numbers readable: nothing left to do for it."""
        outcome = self.outcome or {}
        if outcome.get("status") == "stopped early":
            return bool(self.results)
        return outcome.get("status") == "terminated" and self.final_result is not None


def read_json(storage: Storage, *parts: str):
    try:
        return json.loads(storage.read_text(*parts))
    except (OSError, ValueError):
        return None


def read_result_lines(storage: Storage, dirname: str, problems: list[str]) -> list[dict]:
    """The reports in a result.json; a truncated or corrupt line is skipped with a warning."""
    if not storage.is_file(dirname, "result.json"):
        return []
    rows = []
    for number, line in enumerate(storage.read_text(dirname, "result.json").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            if not isinstance(row, dict):
                raise ValueError
            rows.append(row)
        except ValueError:
            problems.append(f"{dirname}: result.json line {number} is corrupt or truncated; skipped")
    return rows


def scan_trials(storage: Storage, name: str) -> dict[str, TrialRecord]:
    """Every trial folder of the experiment, attempts grouped by trial key, in attempt order."""
    records: dict[str, TrialRecord] = {}
    for dirname in storage.list_dirs(name):
        match = TRIAL_DIR.match(dirname)
        # Tune makes the folder of a trial still pending when the sweep is interrupted; such an
        # attempt never ran, and --resume runs the trial in that folder again instead of a new one.
        if not match or storage.is_empty_dir(name, dirname):
            continue
        problems: list[str] = []
        params = read_json(storage, name, dirname, "params.json")
        outcome = read_json(storage, name, dirname, OUTCOME_FILE)
        attempt = Attempt(
            dirname,
            int(match["attempt"] or 0),
            params if isinstance(params, dict) else None,
            outcome if isinstance(outcome, dict) else None,
            problems=problems,
        )
        attempt.results = read_result_lines(storage, f"{name}/{dirname}", problems)
        records.setdefault(match["key"], TrialRecord(match["key"], [])).attempts.append(attempt)
    for record in records.values():
        record.attempts.sort(key=lambda a: a.number)
    return records


def newest_checkpoint(storage: Storage, name: str, record: TrialRecord) -> str | None:
    """URI of the newest checkpoint of any attempt that loads as a trainer state, else None."""
    for dirname, checkpoint in _readable_checkpoints(storage, name, record):
        return storage.uri_of(name, dirname, checkpoint)
    return None


def checkpoint_at(storage: Storage, name: str, record: TrialRecord, evaluation: int) -> str | None:
    """URI of the newest readable checkpoint of the trial saved at `evaluation`, else None."""
    for dirname, checkpoint in _readable_checkpoints(storage, name, record):
        if checkpoint_evaluation(storage, name, dirname, checkpoint) == evaluation:
            return storage.uri_of(name, dirname, checkpoint)
    return None


def checkpoint_evaluation(storage: Storage, name: str, dirname: str, checkpoint: str) -> int | None:
    """The evaluation count a checkpoint was saved at (its meta.json), None if unknown."""
    try:
        evaluation = json.loads(storage.read_text(name, dirname, checkpoint, META_FILE)).get("evaluation")
    except (OSError, ValueError, AttributeError):
        return None
    return evaluation if isinstance(evaluation, int) else None


def _readable_checkpoints(storage: Storage, name: str, record: TrialRecord):
    """(attempt folder, checkpoint folder) of the trial's checkpoints that load as a trainer
    state, newest first."""
    import torch

    for attempt in reversed(record.attempts):
        for checkpoint in reversed([d for d in storage.list_dirs(name, attempt.dirname) if CHECKPOINT_DIR.match(d)]):
            try:
                state = torch.load(
                    io.BytesIO(storage.read_bytes(name, attempt.dirname, checkpoint, STATE_FILE)),
                    map_location="cpu",
                    weights_only=True,
                )
            except Exception:  # missing, truncated or foreign: try the one before
                continue
            if isinstance(state, dict) and ("members" in state or ("model" in state and "update" in state)):
                yield attempt.dirname, checkpoint


# ---------------------------------------------------------------------------------------------
# The last round of population-based training
# ---------------------------------------------------------------------------------------------


def write_round(storage: Storage, name: str, record: dict) -> None:
    storage.write_text(json.dumps(record), name, ROUND_FILE)


def read_round(storage: Storage, name: str) -> dict | None:
    """The last PBT round recorded in the experiment (None before the first), checked."""
    if not storage.is_file(name, ROUND_FILE):
        return None
    where = storage.uri_of(name, ROUND_FILE)
    try:
        record = json.loads(storage.read_text(name, ROUND_FILE))
        int(record["evaluation"]) + int(record["next_round"])
        for entry in record["trials"].values():
            str(entry["from"]), dict(entry["hp"])
        version, internal, gauss = record["random_state"]["random"]
        random.Random().setstate((version, tuple(internal), gauss))
    except (OSError, ValueError, TypeError, KeyError, AttributeError) as error:
        raise ConfigError(
            f"--resume: {where} is damaged ({type(error).__name__}); delete it to restart the unfinished "
            "trials from the beginning"
        ) from None
    return record


def hyperparameters(params: dict | None) -> dict | None:
    """The swept values (seed included) recorded in a trial's params.json."""
    if not params:
        return None
    if "trial" in params and isinstance(params["trial"], dict):
        return dict(params["trial"].get("hp") or {})
    return dict(params.get("hp") or {})


# ---------------------------------------------------------------------------------------------
# What is left to run
# ---------------------------------------------------------------------------------------------


def planned_trials(spec: ExperimentSpec) -> list[dict]:
    """The trials of a grid/random spec, in order, with their keys (fixed by the spec alone)."""
    variants = spec.variants()
    return [
        {"key": key, "attempt": 0, "resume_from": None, "hp": params}
        for key, params in zip(trial_keys(len(variants)), variants)
    ]


def remaining_trials(
    spec: ExperimentSpec, storage: Storage, records: dict[str, TrialRecord], restart_errored: bool
) -> tuple[list[dict], int]:
    """(trials to run now, Optuna samples still to draw) to finish the experiment from its folders."""
    if spec.search_alg == "optuna":
        known = [(record, hyperparameters(record.params)) for record in records.values()]
        known = [(record, hp) for record, hp in known if hp is not None]
        todo = [_continuation(storage, spec.name, record, hp, restart_errored) for record, hp in known]
        configs: dict[str, set] = {}
        for _, hp in known:
            configs.setdefault(json.dumps({k: v for k, v in hp.items() if k != "seed"}, sort_keys=True), set()).add(
                hp.get("seed")
            )
        for config, seeds in configs.items() if spec.seeds_per_trial == 1 else ():
            # repeats of a sampled config the driver never started (one seed per trial)
            todo += [
                {
                    "key": uuid.uuid4().hex[:8],
                    "attempt": 0,
                    "resume_from": None,
                    "hp": {**json.loads(config), "seed": seed},
                }
                for seed in spec.seeds
                if seed not in seeds
            ]
        return [t for t in todo if t is not None], max(0, spec.samples - len(configs))
    plan = planned_trials(spec)
    mutated = {d.name for d in spec.mutations}
    last_round = read_round(storage, spec.name) if spec.scheduler in POPULATION_BASED else None
    strangers = sorted(set(records) - {planned["key"] for planned in plan})
    if strangers:
        raise ConfigError(
            f"--resume: {storage.uri_of(spec.name)} holds trial folders this spec does not plan "
            f"(e.g. trial_{strangers[0]}); was it started by an older version?"
        )
    todo = []
    for planned in plan:
        record = records.get(planned["key"])
        if record is None:
            todo.append(planned)
            continue
        recorded = hyperparameters(record.params)
        # pbt changes a trial's mutated fields as it goes (Tune records the newest): the trial
        # continues with those, from its newest checkpoint, which holds the same.
        if recorded is not None and _fixed(recorded, mutated) != _fixed(planned["hp"], mutated):
            raise ConfigError(
                f"--resume: {record.attempts[0].dirname} was run with {recorded}, but the spec "
                f"plans {planned['hp']} for it; the folder does not belong to this spec"
            )
        hp = {**planned["hp"], **{k: v for k, v in (recorded or {}).items() if k in mutated}}
        if spec.scheduler in POPULATION_BASED and not record.finished:
            todo.append(_from_last_round(storage, spec.name, records, record, last_round, planned["hp"], hp))
        else:
            todo.append(_continuation(storage, spec.name, record, hp, restart_errored))
    return [t for t in todo if t is not None], 0


def trials_left(spec: ExperimentSpec, storage: Storage) -> int:
    """How many trials of the spec are not finished (unfinished, errored or never started)."""
    records = scan_trials(storage, spec.name)
    finished = sum(record.finished for record in records.values())
    planned = spec.samples * spec.trials_per_config if spec.search_alg == "optuna" else len(spec.variants())
    return max(0, planned - finished)


def _fixed(hp: dict, mutated: set[str]) -> dict:
    return {k: v for k, v in hp.items() if k not in mutated}


def _continuation(storage: Storage, name: str, record: TrialRecord, hp: dict, restart_errored: bool) -> dict | None:
    if record.finished:
        return None
    errored = (record.outcome or {}).get("status") == "errored"
    start_over = errored and restart_errored
    return {
        "key": record.key,
        "attempt": record.attempts[-1].number + 1,
        "hp": hp,
        "resume_from": None if start_over else newest_checkpoint(storage, name, record),
    }


def _from_last_round(
    storage: Storage,
    name: str,
    records: dict[str, TrialRecord],
    record: TrialRecord,
    last_round: dict | None,
    planned: dict,
    recorded: dict,
) -> dict:
    """Where an unfinished trial of a PBT experiment goes on: from the last round of decisions, as
    it went on then (its own checkpoint of that evaluation, or its donor's, with the values the
    round gave it), from the start before the first round, or, if it was not running at the last
    round (it had failed), from its newest checkpoint with the values it had."""
    attempt = record.attempts[-1].number + 1
    if last_round is None:
        return {"key": record.key, "attempt": attempt, "hp": planned, "resume_from": None}
    entry = last_round["trials"].get(record.key)
    if entry is None:
        return _continuation(storage, name, record, recorded, restart_errored=False)
    donor = records.get(entry["from"])
    uri = donor and checkpoint_at(storage, name, donor, last_round["evaluation"])
    if not uri:
        print(
            f"distributed-agent: warning: trial_{record.key} went on from trial_{entry['from']}'s checkpoint of "
            f"evaluation {last_round['evaluation']}, which is gone or unreadable; it continues from its own newest "
            "checkpoint instead, so this PBT run will not match an uninterrupted one",
            file=sys.stderr,
        )
        return _continuation(storage, name, record, recorded, restart_errored=False)
    return {"key": record.key, "attempt": attempt, "hp": {**planned, **entry["hp"]}, "resume_from": uri}


# ---------------------------------------------------------------------------------------------
# The spec saved beside the runs
# ---------------------------------------------------------------------------------------------


def check_saved_spec(spec: ExperimentSpec, storage: Storage) -> None:
    where = storage.uri_of(spec.name, SPEC_FILE)
    if not storage.is_file(spec.name, SPEC_FILE):
        raise ConfigError(f"--resume: {where} is missing; an experiment resumes from the spec it was started with")
    try:
        saved = load_yaml(storage.read_text(spec.name, SPEC_FILE), where)
    except ConfigError:
        raise ConfigError(f"--resume: {where} is damaged; restore it from the spec file you started with") from None
    if saved != spec_record(spec):
        raise ConfigError(
            f"--resume: the spec differs from the one {storage.uri_of(spec.name)} was started with "
            f"({where}); resume with that spec or start a new experiment name"
        )


def save_spec(spec: ExperimentSpec, storage: Storage) -> None:
    storage.write_text(yaml.safe_dump(spec_record(spec), sort_keys=False), spec.name, SPEC_FILE)
