"""Reading an experiment folder: one row per trial (attempts of a resumed trial merged, trials the
spec plans that never started listed as `not started`), and every evaluation of every trial.

Read from the files the sweep writes (each attempt's result.json and outcome.json, the saved
spec), so a report needs no Ray and works on a finished, running or interrupted experiment.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from ..config import ConfigError
from ..experiment import SPEC_FILE, hyperparameters, planned_trials, scan_trials
from ..metrics import REWARD, SCHEDULE_KEY, SOLVED, SUCCESS, SUCCESS_MIN
from ..safe_yaml import load_yaml
from ..schedule import values_in_effect
from ..spec import parse_spec
from ..storage import Storage, open_storage
from .stats import summarize

STATUS_NAMES = {
    "TERMINATED": "terminated",
    "ERROR": "errored",
    "RUNNING": "unfinished",
    "PENDING": "unfinished",
    "PAUSED": "unfinished",
}


@dataclass
class Report:
    name: str
    trials: pd.DataFrame  # one row per trial
    summary: pd.DataFrame  # one row per configuration, best first
    curves: pd.DataFrame  # every evaluation of every trial
    hyperparameters: list[str]
    seeds_asked: int | None
    warnings: list[str] = field(default_factory=list)
    schedules: pd.DataFrame = field(default_factory=pd.DataFrame)  # pbt: each trial's, one row per change
    spec: dict | None = None  # the spec saved with the experiment, as data


def build_report(run_dir: str | Path) -> Report:
    """Every trial of the experiment, one row each: attempts of a resumed trial merged, and
    trials the spec plans that never started listed as `not started`. run_dir: a local folder or
    a storage URI (file://, s3://, gs://, ...: read through pyarrow's filesystems, as Tune writes)."""
    storage, experiment = experiment_storage(run_dir)
    records = scan_trials(storage, experiment)
    spec = _read_spec(storage, experiment)
    planned = _planned(spec)
    if not records and not planned:
        raise ConfigError(f"run folder: {str(run_dir)!r} holds no trial results (no */result.json)")
    problems: list[str] = []
    keyed = any("trial" in (r.params or {}) for r in records.values())  # written by this version
    legacy_statuses = {} if keyed or not storage.local else read_statuses(Path(storage.path(experiment)), problems)
    seeds_asked = _seeds_asked(spec)
    rows, curve_rows, hyper, schedule_rows = [], [], [], []
    for key, record in sorted(records.items()):
        for attempt in record.attempts:
            problems.extend(attempt.problems)
        reports = record.results
        # A trial that failed before its first report still counts: its config is in params.json.
        last = reports[-1] if reports else {"config": record.params or {}}
        if not reports and record.params is None:
            problems.append(f"{record.attempts[-1].dirname}: no readable report and no readable params.json")
        trial_id = last.get("trial_id", key)
        params = trial_params(record.params or last.get("config", {}))
        for name in params:
            if name not in ("seed", "seeds") and name not in hyper:
                hyper.append(name)
        swept = {k: v for k, v in params.items() if k not in ("seed", "seeds")}
        schedule = _schedule(last)
        if schedule is not None:  # pbt: a trial is its own configuration, shown with its final values
            swept = {"pbt_trial": key, **swept, **{k: v for k, v in values_in_effect(schedule).items() if k in swept}}
            if "pbt_trial" not in hyper:
                hyper.insert(0, "pbt_trial")
            schedule_rows += [{"pbt_trial": key, **entry} for entry in schedule]
        error_text = _read_error(storage, experiment, record.attempts[-1].dirname)
        if (record.outcome or {}).get("status") == "terminated" and not record.finished:
            status = "unfinished"  # its outcome says finished but its final report is lost: --resume repairs it
        else:
            status = _status(record.outcome or legacy_statuses.get(trial_id), last, error_text is not None)
        error = _error_line(error_text) if status == "errored" else ""
        failures = sum((a.outcome or {}).get("failures", 0) for a in record.attempts) or (
            legacy_statuses.get(trial_id) or {}
        ).get("num_failures", 0)
        members = member_reports(reports, params, last)
        for seed, member in members.items():
            member_last = member[-1] if member else last
            row_id = trial_id if len(members) == 1 and "seeds" not in params else f"{trial_id}/seed{seed}"
            solved_at = next((r["episodes"] for r in member if r.get(SUCCESS_MIN, 0) >= SOLVED), np.nan)
            rows.append(
                {
                    "trial_id": row_id,
                    **swept,
                    "seed": seed,
                    "status": status,
                    **{k: member_last.get(k, np.nan) for k in [*SUCCESS, *REWARD, SUCCESS_MIN]},
                    "final_eval": bool(member_last.get("final", 0)),
                    "eval_episodes": member_last.get("eval_episodes", np.nan),
                    "episodes": member_last.get("episodes", np.nan),
                    "updates": member_last.get("update", np.nan),
                    "wall_time_s": last.get("time_total_s", np.nan),
                    "node": last.get("node_id", last.get("hostname", "")),
                    "cpu": last.get("cpu", ""),
                    "failures": failures,
                    "attempts": len(record.attempts),
                    "solved": bool(member_last.get("final", 0)) and member_last.get(SUCCESS_MIN, 0) >= SOLVED,
                    "episodes_to_solve": solved_at,
                    "error": error,
                }
            )
            for r in member:
                curve_rows.append(
                    {
                        "trial_id": row_id,
                        **swept,
                        "seed": seed,
                        "episodes": r.get("episodes"),
                        "final": bool(r.get("final", 0)),
                        **{k: r.get(k, np.nan) for k in [*SUCCESS, SUCCESS_MIN]},
                    }
                )
    rows += _not_started(spec, planned, records, hyper)
    trials = pd.DataFrame(rows)
    for status in ("unfinished", "not started"):
        count = int((trials["status"] == status).sum())
        if count:
            problems.append(
                f"{count} trials are {status} (experiment running or interrupted): "
                + (
                    "their last evaluation is shown, not a final one"
                    if status == "unfinished"
                    else "continue it with --resume"
                )
            )
    cpus = sorted(c for c in trials.get("cpu", pd.Series(dtype=str)).dropna().unique() if c)
    if len(cpus) > 1:
        problems.append(
            f"trials ran on {len(cpus)} kinds of CPU ({'; '.join(cpus)}): numbers are bit-reproducible on one "
            "kind, not across kinds (kernels round differently; a long training amplifies it)"
        )
    stopped = int((trials["status"] == "stopped early").sum())
    if stopped:
        problems.append(
            f"{stopped} seeds were stopped early by the scheduler: time to solve censors them where they "
            "stopped, and as the scheduler stopped the weaker ones, the Kaplan-Meier median is optimistic "
            "for their configurations"
        )
    summary = summarize(trials, hyper, seeds_asked)
    name = (spec or {}).get("name", experiment)
    return Report(
        name,
        trials,
        summary,
        pd.DataFrame(curve_rows),
        hyper,
        seeds_asked,
        problems,
        pd.DataFrame(schedule_rows),
        spec,
    )


# What may differ between the parts of one experiment: the seeds each part ran, and its name.
PART_FIELDS = ("name", "description", "seeds")


def merge_parts(parts: list[Report], label: str) -> Report:
    """One report of an experiment run in parts (the same spec, each part other seeds: e.g. one
    sweep per cluster allocation): their trials together, summarised as one experiment. A part's
    trial ids are prefixed with its name, as two sweeps number their trials alike."""
    if len(parts) == 1:
        return parts[0]
    first = parts[0]
    seen: dict[int, str] = {}
    for part in parts:
        planned = _planned(part.spec)
        if planned is None:
            raise ConfigError(
                f"--labels: {part.name} (label {label}) has no spec.yaml that reads as a spec; parts are merged by spec"
            )
        differing = sorted(
            key
            for key in set(part.spec) | set(first.spec)
            if key not in PART_FIELDS and part.spec.get(key) != first.spec.get(key)
        )
        if differing:
            raise ConfigError(
                f"--labels: {first.name} and {part.name} share the label {label} but their specs differ in "
                f"{', '.join(differing)}; only parts of one experiment (other seeds) can share a label"
            )
        for seed in planned.seeds:
            if seed in seen:
                raise ConfigError(
                    f"--labels: seed {seed} is in both {seen[seed]} and {part.name} (label {label}); "
                    "parts of one experiment run other seeds"
                )
            seen[seed] = part.name
    hyper = list(dict.fromkeys(name for part in parts for name in part.hyperparameters))
    trials = pd.concat([_prefixed(part.trials, part.name) for part in parts], ignore_index=True)
    curves = pd.concat([_prefixed(part.curves, part.name) for part in parts], ignore_index=True)
    asked = [part.seeds_asked for part in parts]
    seeds_asked = None if None in asked else sum(asked)
    return Report(
        label,
        trials,
        summarize(trials, hyper, seeds_asked),
        curves,
        hyper,
        seeds_asked,
        [f"{part.name}: {problem}" for part in parts for problem in part.warnings],
        pd.concat([part.schedules for part in parts], ignore_index=True),
        first.spec | {"name": label, "seeds": sorted(seen)},
    )


def _prefixed(table: pd.DataFrame, name: str) -> pd.DataFrame:
    if "trial_id" not in table:
        return table
    return table.assign(trial_id=name + "/" + table["trial_id"].astype(str))


def load_report(run_dir: str | Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """`trials, summary = load_report(run_dir)` for a notebook."""
    report = build_report(run_dir)
    return report.trials, report.summary


def member_reports(reports: list[dict], params: dict, last: dict) -> dict[int, list[dict]]:
    """Each seed's reports in a trial: the trial's own for one seed; for a population, every
    member's metrics from each report's `members` (a member that stopped once solved repeats its
    last evaluation in later reports: kept once)."""
    reported_members = any("members" in r for r in reports)
    if "seeds" not in params and not reported_members:
        return {last.get("seed", params.get("seed")): reports}
    if not reported_members:  # a population that never reported
        return {seed: [] for seed in params["seeds"]}
    by_seed: dict[int, dict] = {}
    for report in reports:
        for member in report.get("members", {}).values():
            by_update = by_seed.setdefault(member["seed"], {})
            by_update[(member.get("update"), member.get("final"))] = member | {
                "time_total_s": report.get("time_total_s")
            }
    return {seed: list(by_update.values()) for seed, by_update in by_seed.items()}


def _schedule(report: dict) -> list[dict] | None:
    """A pbt trial's hyperparameter changes (its donors' before an exploit), from its last report."""
    text = report.get(SCHEDULE_KEY)
    if not isinstance(text, str):
        return None
    try:
        schedule = json.loads(text)
    except ValueError:
        return None
    return schedule if isinstance(schedule, list) and all(isinstance(e, dict) for e in schedule) else None


def trial_params(config: dict) -> dict:
    """The swept parameters of a trial, from the config Tune recorded."""
    params = hyperparameters(config) or {}
    params.update({k: v for k, v in config.items() if k not in ("hp", "trial", "__trial_index__")})
    return params


def read_statuses(run_dir: Path, problems: list[str]) -> dict[str, dict]:
    """trial_id -> {status, num_failures} from the newest experiment state Tune wrote: only for
    folders written before trials recorded their outcome.json (read as JSON, never unpickled)."""
    states = sorted(run_dir.glob("experiment_state-*.json"))
    if not states:
        return {}
    try:
        data = json.loads(states[-1].read_text())
        statuses = {}
        for entry in data["trial_data"]:
            trial = json.loads(entry[0])
            runtime = json.loads(entry[1])
            statuses[trial["trial_id"]] = {"status": trial["status"], "num_failures": runtime.get("num_failures", 0)}
        return statuses
    except (ValueError, KeyError, IndexError, TypeError):
        problems.append(f"{states[-1].name} is unreadable: trial statuses are inferred from the results")
        return {}


def _planned(spec: dict | None):
    """The spec saved with the experiment, parsed (it is data: validated like any spec)."""
    if not spec:
        return None
    try:
        return parse_spec(spec)
    except ConfigError:
        return None


def _not_started(raw_spec: dict | None, spec, records: dict, hyper: list[str]) -> list[dict]:
    """Rows for the trials the spec plans that have no folder yet."""
    if spec is None:
        return []
    empty = {k: np.nan for k in [*SUCCESS, *REWARD, SUCCESS_MIN]}
    base = {
        "status": "not started",
        **empty,
        "final_eval": False,
        "failures": 0,
        "attempts": 0,
        "solved": False,
        "episodes_to_solve": np.nan,
        "error": "",
    }
    if spec.search_alg == "optuna":  # configurations not drawn yet are unknown
        missing = (spec.samples * spec.trials_per_config - len(records)) * spec.seeds_per_trial
        return [{"trial_id": f"not started {i}", **base} for i in range(max(0, missing))]
    plan = planned_trials(spec)
    if not set(records) <= {trial["key"] for trial in plan}:
        return []  # a folder written before trials were keyed by the spec: what is missing is unknown
    rows = []
    for trial in plan:
        if trial["key"] in records:
            continue
        params = dict(trial["hp"])
        seeds = params.pop("seeds", None)
        for name in params:
            if name != "seed" and name not in hyper:
                hyper.append(name)
        if seeds is None:
            rows.append({"trial_id": trial["key"], **params, **base})
        else:
            rows += [{"trial_id": f"{trial['key']}/seed{seed}", **params, "seed": seed, **base} for seed in seeds]
    return rows


def experiment_storage(run_dir: str | Path) -> tuple[Storage, str]:
    """(the storage holding the experiment, its folder name there), checked to exist."""
    text = str(run_dir)
    if "://" in text:  # scheme://bucket/path/NAME[?options]: the options belong to the storage
        location, mark, options = text.partition("?")
        parent, _, name = location.rstrip("/").rpartition("/")
        parent += mark + options
    else:
        parent, name = str(Path(text).parent), Path(text).name
    problem = "does not exist"
    try:
        storage = open_storage(parent, writable=False)
        if name and storage.exists(name):
            problem = "is a file" if storage.is_file(name) else ""
    except (ConfigError, OSError):
        pass
    if problem:  # e.g. a README.md that a shell pattern (parts/*) picked up with the folders
        raise ConfigError(f"run folder: {str(run_dir)!r} {problem} (give an experiment folder, e.g. runs/default)")
    return storage, name


def _read_spec(storage: Storage, name: str) -> dict | None:
    try:
        text = storage.read_text(name, SPEC_FILE) if storage.is_file(name, SPEC_FILE) else None
        return load_yaml(text, storage.uri_of(name, SPEC_FILE)) if text is not None else None
    except (ConfigError, OSError, UnicodeDecodeError):
        return None


def _seeds_asked(spec: dict | None) -> int | None:
    if not spec:
        return None
    seeds = spec.get("seeds", 1)
    return seeds if isinstance(seeds, int) else len(seeds)


def _status(state: dict | None, last: dict, has_error: bool) -> str:
    if state is not None:
        status = STATUS_NAMES.get(state["status"], state["status"].lower())
    elif has_error and not last.get("final"):
        status = "errored"
    else:
        status = "terminated" if last.get("final") else "unfinished"
    if status == "terminated" and not last.get("final"):
        return "stopped early"  # ended by the scheduler before its last update
    return status


def _read_error(storage: Storage, name: str, dirname: str) -> str | None:
    """The attempt's error.txt (Tune writes it when the trial errors), None if there is none."""
    try:
        return storage.read_bytes(name, dirname, "error.txt").decode(errors="replace")
    except (OSError, FileNotFoundError):
        return None


def _error_line(text: str | None) -> str:
    if text is None:
        return "(no error.txt)"
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    errors = [line for line in lines if "Error" in line and ":" in line]
    return (errors or lines or ["(empty error.txt)"])[-1][:300]
