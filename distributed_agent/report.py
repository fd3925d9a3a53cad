"""Reports: per-trial results of an experiment folder in pandas, aggregated over seeds.

Read from the files Tune writes (each trial's result.json, the newest experiment_state-*.json
for trial statuses), so a report needs no Ray and works on a finished, running or interrupted
experiment. Seeds are the runs and stages the tasks (Agarwal et al. 2021, "rliable"): per
configuration the mean over seeds, its standard deviation, a 95% bootstrap confidence
interval and the interquartile mean, per stage.

Every number is a *success* (share of correct greedy answers) unless a column says reward.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

from .config import ConfigError
from .safe_yaml import load_yaml
from .experiment import hyperparameters, planned_trials, scan_trials
from .spec import parse_spec
from .storage import open_storage
from .env import NUM_STAGES

SOLVED = 0.99
STAGES = [f"stage{s}" for s in range(NUM_STAGES)]
SUCCESS = [f"success/{s}" for s in STAGES]
REWARD = [f"reward/{s}" for s in STAGES]
STATUS_NAMES = {"TERMINATED": "terminated", "ERROR": "errored", "RUNNING": "unfinished",
                "PENDING": "unfinished", "PAUSED": "unfinished"}
BOOTSTRAP_RESAMPLES = 2000


@dataclass
class Report:
    name: str
    trials: pd.DataFrame          # one row per trial
    summary: pd.DataFrame         # one row per configuration, best first
    curves: pd.DataFrame          # every evaluation of every trial
    hyperparameters: list[str]
    seeds_asked: int | None
    warnings: list[str] = field(default_factory=list)


# ---------------------------------------------------------------------------------------------
# Reading an experiment folder
# ---------------------------------------------------------------------------------------------

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
            statuses[trial["trial_id"]] = {"status": trial["status"],
                                           "num_failures": runtime.get("num_failures", 0)}
        return statuses
    except (ValueError, KeyError, IndexError, TypeError):
        problems.append(f"{states[-1].name} is unreadable: trial statuses are inferred from the results")
        return {}


def trial_params(config: dict) -> dict:
    """The swept parameters of a trial, from the config Tune recorded."""
    params = hyperparameters(config) or {}
    params.update({k: v for k, v in config.items() if k not in ("hp", "trial", "__trial_index__")})
    return params


def load_report(run_dir: str | Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """`trials, summary = load_report(run_dir)` for a notebook."""
    report = build_report(run_dir)
    return report.trials, report.summary


def build_report(run_dir: str | Path) -> Report:
    """Every trial of the experiment, one row each: attempts of a resumed trial merged, and
    trials the spec plans that never started listed as `not started`."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise ConfigError(f"run folder: {str(run_dir)!r} does not exist (give an experiment folder, e.g. runs/default)")
    storage = open_storage(str(run_dir.parent), writable=False)
    records = scan_trials(storage, run_dir.name)
    spec = _read_spec(run_dir)
    planned = _planned(spec)
    if not records and not planned:
        raise ConfigError(f"run folder: {str(run_dir)!r} holds no trial results (no */result.json)")
    problems: list[str] = []
    keyed = any("trial" in (r.params or {}) for r in records.values())  # written by this version
    legacy_statuses = {} if keyed else read_statuses(run_dir, problems)
    seeds_asked = _seeds_asked(spec)
    rows, curve_rows, hyper = [], [], []
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
            if name != "seed" and name not in hyper:
                hyper.append(name)
        seed = last.get("seed", params.get("seed"))
        trial_dir = run_dir / record.attempts[-1].dirname
        if (record.outcome or {}).get("status") == "terminated" and not record.finished:
            status = "unfinished"  # its outcome says finished but its final report is lost: --resume repairs it
        else:
            status = _status(record.outcome or legacy_statuses.get(trial_id), last, trial_dir)
        error = _error_line(trial_dir) if status == "errored" else ""
        failures = sum((a.outcome or {}).get("failures", 0) for a in record.attempts) \
            or (legacy_statuses.get(trial_id) or {}).get("num_failures", 0)
        solved_at = next((r["episodes"] for r in reports if r.get("success/min", 0) >= SOLVED), np.nan)
        rows.append({
            "trial_id": trial_id, **{k: v for k, v in params.items() if k != "seed"}, "seed": seed,
            "status": status, **{k: last.get(k, np.nan) for k in SUCCESS + REWARD + ["success/min"]},
            "final_eval": bool(last.get("final", 0)), "eval_episodes": last.get("eval_episodes", np.nan),
            "episodes": last.get("episodes", np.nan), "updates": last.get("update", np.nan),
            "wall_time_s": last.get("time_total_s", np.nan), "node": last.get("node_id", last.get("hostname", "")),
            "failures": failures, "attempts": len(record.attempts),
            "solved": bool(last.get("final", 0)) and last.get("success/min", 0) >= SOLVED,
            "episodes_to_solve": solved_at, "error": error,
        })
        for r in reports:
            curve_rows.append({"trial_id": trial_id, **{k: v for k, v in params.items() if k != "seed"},
                               "seed": seed, "episodes": r.get("episodes"), "final": bool(r.get("final", 0)),
                               **{k: r.get(k, np.nan) for k in SUCCESS + ["success/min"]}})
    rows += _not_started(spec, planned, records, hyper)
    trials = pd.DataFrame(rows)
    for status in ("unfinished", "not started"):
        count = int((trials["status"] == status).sum())
        if count:
            problems.append(f"{count} trials are {status} (experiment running or interrupted): "
                            + ("their last evaluation is shown, not a final one" if status == "unfinished"
                               else "continue it with --resume"))
    summary = summarize(trials, hyper, seeds_asked)
    name = (spec or {}).get("name", run_dir.name)
    return Report(name, trials, summary, pd.DataFrame(curve_rows), hyper, seeds_asked, problems)


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
    empty = {k: np.nan for k in SUCCESS + REWARD + ["success/min"]}
    base = {"status": "not started", **empty, "final_eval": False, "failures": 0, "attempts": 0,
            "solved": False, "episodes_to_solve": np.nan, "error": ""}
    if spec.search_alg == "optuna":  # configurations not drawn yet are unknown
        missing = spec.samples * len(spec.seeds) - len(records)
        return [{"trial_id": f"not started {i}", **base} for i in range(max(0, missing))]
    plan = planned_trials(spec)
    if not set(records) <= {trial["key"] for trial in plan}:
        return []  # a folder written before trials were keyed by the spec: what is missing is unknown
    rows = []
    for trial in plan:
        if trial["key"] in records:
            continue
        params = dict(trial["hp"])
        for name in params:
            if name != "seed" and name not in hyper:
                hyper.append(name)
        rows.append({"trial_id": trial["key"], **params, **base})
    return rows


def _read_spec(run_dir: Path) -> dict | None:
    path = run_dir / "spec.yaml"
    try:
        return load_yaml(path.read_text(), f"{path}") if path.exists() else None
    except (ConfigError, OSError, UnicodeDecodeError):
        return None


def _seeds_asked(spec: dict | None) -> int | None:
    if not spec:
        return None
    seeds = spec.get("seeds", 1)
    return seeds if isinstance(seeds, int) else len(seeds)


def _status(state: dict | None, last: dict, trial_dir: Path) -> str:
    if state is not None:
        status = STATUS_NAMES.get(state["status"], state["status"].lower())
    elif (trial_dir / "error.txt").exists() and not last.get("final"):
        status = "errored"
    else:
        status = "terminated" if last.get("final") else "unfinished"
    if status == "terminated" and not last.get("final"):
        return "stopped early"  # ended by the scheduler before its last update
    return status


def _error_line(trial_dir: Path) -> str:
    path = trial_dir / "error.txt"
    if not path.exists():
        return "(no error.txt)"
    lines = [line.strip() for line in path.read_text(errors="replace").splitlines() if line.strip()]
    errors = [line for line in lines if "Error" in line and ":" in line]
    return (errors or lines or ["(empty error.txt)"])[-1][:300]


# ---------------------------------------------------------------------------------------------
# Statistics over seeds
# ---------------------------------------------------------------------------------------------

def bootstrap_ci(values, confidence: float = 0.95, seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap CI of the mean over seeds (NaN with fewer than 2 seeds)."""
    values = np.asarray(values, dtype=float)
    values = values[~np.isnan(values)]
    if len(values) < 2:
        return (np.nan, np.nan)
    if np.all(values == values[0]):
        return (float(values[0]), float(values[0]))
    result = stats.bootstrap((values,), np.mean, confidence_level=confidence, n_resamples=BOOTSTRAP_RESAMPLES,
                             method="percentile", random_state=np.random.default_rng(seed))
    return float(result.confidence_interval.low), float(result.confidence_interval.high)


def iqm(values) -> float:
    """Interquartile mean: the mean of the middle 50% of seeds."""
    values = np.asarray(values, dtype=float)
    values = values[~np.isnan(values)]
    return float(stats.trim_mean(values, 0.25)) if len(values) else np.nan


def probability_of_improvement(x_by_stage: list, y_by_stage: list) -> float:
    """rliable's P(X > Y): over stages, the mean of U / (n m) from the Mann-Whitney U statistic.

    Seeds without a measurement (failed before their first evaluation) are left out.
    """
    probabilities = []
    for x, y in zip(x_by_stage, y_by_stage):
        x, y = np.asarray(x, float), np.asarray(y, float)
        x, y = x[~np.isnan(x)], y[~np.isnan(y)]
        u = stats.mannwhitneyu(x, y, alternative="two-sided").statistic
        probabilities.append(u / (len(x) * len(y)))
    return float(np.mean(probabilities))


def summarize(trials: pd.DataFrame, hyperparameters: list[str], seeds_asked: int | None) -> pd.DataFrame:
    """One row per configuration (trials grouped by everything but the seed), best first.

    Means are over every trial with a measurement: final evaluations, and the last evaluation of
    trials stopped early or errored (counted in the status columns, never dropped silently). The
    solved share counts every seed asked, so an errored seed counts as not solved.
    """
    keys = hyperparameters or ["_all"]
    frame = trials.assign(_all="all") if not hyperparameters else trials
    rows = []
    for config, group in frame.groupby(keys, sort=False, dropna=False):
        config = config if isinstance(config, tuple) else (config,)
        row = dict(zip(keys, config)) if hyperparameters else {}
        asked = max(seeds_asked or 0, len(group))
        row.update({"seeds": int((group["status"] != "not started").sum()), "seeds_asked": asked,
                    "final": int(group["final_eval"].sum()),
                    "stopped_early": int((group["status"] == "stopped early").sum()),
                    "errored": int((group["status"] == "errored").sum()),
                    "unfinished": int((group["status"] == "unfinished").sum()),
                    "not_started": int((group["status"] == "not started").sum())})
        for column in SUCCESS + ["success/min"] + REWARD:
            values = group[column].to_numpy(float)
            low, high = bootstrap_ci(values)
            row[f"{column} mean"] = float(np.nanmean(values)) if np.any(~np.isnan(values)) else np.nan
            row[f"{column} std"] = float(np.nanstd(values, ddof=1)) if np.sum(~np.isnan(values)) > 1 else np.nan
            row[f"{column} ci_low"], row[f"{column} ci_high"] = low, high
            row[f"{column} iqm"] = iqm(values)
        row["solved_share"] = float(group["solved"].sum()) / asked
        solved_episodes = group.loc[group["solved"], "episodes_to_solve"]
        row["median_episodes_to_solve"] = float(solved_episodes.median()) if len(solved_episodes) else np.nan
        row["incomplete"] = bool(row["seeds"] < asked or row["errored"] or row["unfinished"] or row["not_started"])
        rows.append(row)
    summary = pd.DataFrame(rows)
    summary = summary.sort_values(["success/min mean", "solved_share", "median_episodes_to_solve"],
                                  ascending=[False, False, True], na_position="last", kind="stable")
    return summary.reset_index(drop=True)


# ---------------------------------------------------------------------------------------------
# Tables
# ---------------------------------------------------------------------------------------------

def _fmt_config(row: pd.Series, hyperparameters: list[str]) -> str:
    return ", ".join(f"{h}={_fmt_value(row[h])}" for h in hyperparameters) or "all trials"


def _fmt_value(value) -> str:
    if isinstance(value, float):
        return f"{value:.3g}"
    return str(value)


def display_table(summary: pd.DataFrame, hyperparameters: list[str], latex: bool = False) -> pd.DataFrame:
    """The paper table: configuration, seeds, per-stage success mean [95% CI] and IQM, solved share."""
    pm = r"$\pm$" if latex else "±"
    rows = []
    for _, row in summary.iterrows():
        out = {h: _fmt_value(row[h]) for h in hyperparameters}
        seeds = f"{row['final']}/{row['seeds_asked']}"
        notes = [f"{row[k]} {k.replace('_', ' ')}" for k in ("stopped_early", "errored", "unfinished", "not_started")
                 if row[k]]
        out["seeds (final/asked)"] = seeds + (f" ({', '.join(notes)})" if notes else "")
        for stage, column in zip(STAGES, SUCCESS):
            out[f"{stage} success"] = _mean_ci(row, column, std=pm)
            out[f"{stage} IQM"] = _nan(row[column + " iqm"])
        for stage, column in zip(STAGES, REWARD):
            out[f"{stage} reward"] = _mean_ci(row, column)
        out["solved (all stages >= 0.99)"] = f"{row['solved_share']:.0%}"
        median = row["median_episodes_to_solve"]
        out["median episodes to solve"] = "-" if pd.isna(median) else f"{median:,.0f}"
        rows.append(out)
    return pd.DataFrame(rows)


def _mean_ci(row: pd.Series, column: str, std: str | None = None) -> str:
    """'0.873 [0.738, 1.000]' from a summary row, or with std='±': '0.873 ± 0.311 [0.738, 1.000]'."""
    spread = f" {std} {_nan(row[column + ' std'])}" if std else ""
    return f"{row[column + ' mean']:.3f}{spread} [{_nan(row[column + ' ci_low'])}, {_nan(row[column + ' ci_high'])}]"


def _nan(value) -> str:
    return "-" if pd.isna(value) else f"{value:.3f}"


def to_markdown(table: pd.DataFrame) -> str:
    header = "| " + " | ".join(table.columns) + " |"
    rule = "|" + "|".join("---" for _ in table.columns) + "|"
    body = ["| " + " | ".join(str(v).replace("|", "\\|") for v in row) + " |" for row in table.itertuples(index=False)]
    return "\n".join([header, rule, *body]) + "\n"


def to_latex(table: pd.DataFrame, caption: str, label: str) -> str:
    latex_safe = table.rename(columns=lambda c: c.replace("_", r"\_").replace(">=", r"$\geq$"))
    latex_safe = latex_safe.map(lambda v: str(v).replace("%", r"\%").replace("_", r"\_"))
    return latex_safe.style.hide(axis="index").to_latex(
        caption=caption, label=label, hrules=True, column_format="l" * len(table.columns), position="htbp")


def caption_for(name: str) -> str:
    return (f"Experiment {name}: final greedy success (share of correct answers) per stage, "
            f"mean $\\pm$ std over seeds [95\\% percentile-bootstrap CI] and interquartile mean; mean reward "
            f"with the shaping bonus [95\\% CI]; the share of seeds reaching $\\geq$ 0.99 success on every stage.")


# ---------------------------------------------------------------------------------------------
# Plots
# ---------------------------------------------------------------------------------------------

def learning_curves_plot(report: Report, path: Path, top: int = 3) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    hyper = report.hyperparameters
    best = report.summary.head(top)
    fig, axes = plt.subplots(1, NUM_STAGES, figsize=(5 * NUM_STAGES, 4), sharey=True)
    curves = report.curves  # the last point of a finished trial is its final (larger) evaluation
    for index, (_, config) in enumerate(best.iterrows()):
        mask = np.ones(len(curves), bool)
        for h in hyper:
            mask &= (curves[h] == config[h]).to_numpy()
        group = curves[mask]
        if group.empty:
            continue
        grid = np.unique(group["episodes"].to_numpy(float))
        for stage, column in enumerate(SUCCESS):
            # Trials that stopped once solved keep their last value (forward fill) on the common grid.
            per_seed = [np.interp(grid, t["episodes"], t[column], right=t[column].iloc[-1])
                        for _, t in group.groupby("trial_id")]
            per_seed = np.array(per_seed)
            mean = per_seed.mean(0)
            half = 1.96 * per_seed.std(0, ddof=1) / math.sqrt(len(per_seed)) if len(per_seed) > 1 else 0 * mean
            label = _fmt_config(config, hyper) + f" (n={len(per_seed)})"
            axes[stage].plot(grid, mean, label=label, color=f"C{index}")
            axes[stage].fill_between(grid, np.clip(mean - half, 0, 1), np.clip(mean + half, 0, 1),
                                     color=f"C{index}", alpha=0.2)
    for stage, axis in enumerate(axes):
        axis.set_title(f"stage {stage}")
        axis.set_xlabel("training episodes")
        axis.grid(alpha=0.3)
    axes[0].set_ylabel("greedy success (mean over seeds, 95% band)")
    axes[0].legend(fontsize=7, loc="lower right")
    fig.suptitle(f"{report.name}: learning curves of the best configurations")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def sensitivity_plot(report: Report, path: Path) -> bool:
    """Final success/min against lr, one line per hidden size (and entropy coefficient)."""
    if "lr" not in report.hyperparameters:
        return False
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    summary = report.summary
    line_keys = [h for h in ("hidden_size", "entropy_coef") if h in report.hyperparameters]
    fig, axis = plt.subplots(figsize=(6, 4))
    groups = summary.groupby(line_keys) if line_keys else [((), summary)]
    for index, (key, group) in enumerate(groups):
        group = group.sort_values("lr")
        key = key if isinstance(key, tuple) else (key,)
        label = ", ".join(f"{k}={_fmt_value(v)}" for k, v in zip(line_keys, key)) or "all"
        low = group["success/min mean"] - group["success/min ci_low"].fillna(group["success/min mean"])
        high = group["success/min ci_high"].fillna(group["success/min mean"]) - group["success/min mean"]
        axis.errorbar(group["lr"], group["success/min mean"], yerr=[low, high], marker="o", capsize=3,
                      label=label, color=f"C{index % 10}")
    axis.set_xscale("log")
    axis.set_xlabel("learning rate")
    axis.set_ylabel("final success/min (mean, 95% CI)")
    axis.set_ylim(-0.05, 1.05)
    axis.grid(alpha=0.3)
    axis.legend(fontsize=7)
    axis.set_title(f"{report.name}: sensitivity")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return True


# ---------------------------------------------------------------------------------------------
# Writing and printing
# ---------------------------------------------------------------------------------------------

def write_report(report: Report, out_dir: str | Path) -> list[Path]:
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    table = display_table(report.summary, report.hyperparameters)
    latex_table = display_table(report.summary, report.hyperparameters, latex=True)
    written = [out_dir / "trials.csv", out_dir / "summary.csv", out_dir / "summary.md", out_dir / "summary.tex"]
    report.trials.to_csv(written[0], index=False)
    report.summary.to_csv(written[1], index=False)
    written[2].write_text(f"**{report.name}**: final greedy success per stage (share of correct answers): "
                          "mean ± std over seeds [95% bootstrap CI]; IQM = interquartile mean of success; "
                          "reward = mean reward with the shaping bonus (what the tutorial prints as accuracy), "
                          "mean [95% bootstrap CI].\n\n" + to_markdown(table))
    written[3].write_text(to_latex(latex_table, caption_for(report.name),
                                   f"tab:{report.name}"))
    curves = out_dir / "learning_curves.png"
    learning_curves_plot(report, curves)
    written.append(curves)
    sensitivity = out_dir / "sensitivity.png"
    if sensitivity_plot(report, sensitivity):
        written.append(sensitivity)
    return written


def print_summary(report: Report) -> None:
    for problem in report.warnings:
        print(f"warning: {problem}")
    table = display_table(report.summary, report.hyperparameters)
    columns = [*report.hyperparameters, "seeds (final/asked)", *(f"{s} success" for s in STAGES),
               "solved (all stages >= 0.99)"]
    with pd.option_context("display.max_colwidth", 60, "display.width", 250):
        print(table[columns].to_string(index=False))
    best = report.summary.iloc[0]
    print(f"\nBest: {_fmt_config(best, report.hyperparameters)}: success/min {_mean_ci(best, 'success/min')}, "
          f"solved by {best['solved_share']:.0%} of seeds")
    errored = report.trials[report.trials["status"] == "errored"]
    for _, trial in errored.iterrows():
        print(f"errored: trial {trial['trial_id']} (seed {trial['seed']}): {trial['error']}")


# ---------------------------------------------------------------------------------------------
# Comparing experiments
# ---------------------------------------------------------------------------------------------

def select_config(report: Report, wanted: dict | None) -> pd.Series:
    """The summary row of the best configuration, or of the one whose values are given."""
    if not wanted:
        return report.summary.iloc[0]
    mask = np.ones(len(report.summary), bool)
    for key, value in wanted.items():
        if key not in report.hyperparameters:
            raise ConfigError(f"--config: {key!r} is not swept in {report.name}; swept: {', '.join(report.hyperparameters)}")
        column = report.summary[key]
        mask &= np.isclose(column.astype(float), float(value)) if _is_number(value) else (column.astype(str) == str(value))
    if not mask.any():
        raise ConfigError(f"--config: no configuration of {report.name} has {wanted}")
    return report.summary[mask].iloc[0]


def _is_number(value) -> bool:
    try:
        float(value)
        return True
    except (TypeError, ValueError):
        return False


def parse_config_choices(choices: list[str], labels: list[str]) -> dict[str, dict]:
    """['fixed:lr=0.003,hidden_size=64'] -> {'fixed': {'lr': '0.003', 'hidden_size': '64'}}."""
    chosen = {}
    for choice in choices:
        label, sep, assignments = choice.partition(":")
        if not sep or label not in labels:
            raise ConfigError(f"--config: expected LABEL:KEY=VALUE,... with LABEL one of {', '.join(labels)} (got {choice!r})")
        pairs = [a.partition("=") for a in assignments.split(",") if a]
        if not pairs or any(not p[1] for p in pairs):
            raise ConfigError(f"--config: expected LABEL:KEY=VALUE,... (got {choice!r})")
        chosen[label] = {k.strip(): v.strip() for k, _, v in pairs}
    return chosen


def _seed_values(report: Report, config: pd.Series, column: str) -> np.ndarray:
    mask = np.ones(len(report.trials), bool)
    for h in report.hyperparameters:
        mask &= (report.trials[h] == config[h]).to_numpy()
    return report.trials.loc[mask, column].to_numpy(float)


def compare_reports(reports: list[Report], labels: list[str], out_dir: str | Path,
                    configs: list[str] | None = None) -> list[Path]:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    chosen = parse_config_choices(configs or [], labels)
    selected = [select_config(r, chosen.get(label)) for r, label in zip(reports, labels)]
    rows = []
    for report, label, config in zip(reports, labels, selected):
        row = {"experiment": label, "configuration": _fmt_config(config, report.hyperparameters),
               "seeds (final/asked)": f"{config['final']}/{config['seeds_asked']}"}
        for stage, column in zip(STAGES, SUCCESS):
            row[f"{stage} success"] = _mean_ci(config, column)
        row["solved (all stages >= 0.99)"] = f"{config['solved_share']:.0%}"
        rows.append(row)
    table = pd.DataFrame(rows)
    per_stage = [[_seed_values(r, c, column) for column in SUCCESS] for r, c in zip(reports, selected)]
    improvements = [{"X": labels[i], "Y": labels[j], "P(X > Y)": round(probability_of_improvement(per_stage[i], per_stage[j]), 3)}
                    for i in range(len(labels)) for j in range(len(labels)) if i != j]
    improvement_table = pd.DataFrame(improvements)
    written = [out_dir / "comparison.csv", out_dir / "comparison.md", out_dir / "comparison.tex",
               out_dir / "probability_of_improvement.csv"]
    table.to_csv(written[0], index=False)
    improvement_table.to_csv(written[3], index=False)
    written[1].write_text("Final greedy success per stage (share of correct answers): mean [95% bootstrap CI] "
                          "over seeds.\n\n" + to_markdown(table) + "\nProbability of improvement over seeds "
                          "(rliable; Mann-Whitney U / (n m), averaged over stages):\n\n" + to_markdown(improvement_table))
    written[2].write_text(to_latex(table, "Comparison of " + ", ".join(labels) + ": final greedy success per stage, "
                                   "mean [95\\% bootstrap CI] over seeds.", "tab:comparison"))
    fig, axis = plt.subplots(figsize=(7, 4))
    width = 0.8 / len(labels)
    for index, (label, config) in enumerate(zip(labels, selected)):
        means = [config[c + " mean"] for c in SUCCESS]
        low = [m - (config[c + " ci_low"] if not pd.isna(config[c + " ci_low"]) else m) for m, c in zip(means, SUCCESS)]
        high = [(config[c + " ci_high"] if not pd.isna(config[c + " ci_high"]) else m) - m for m, c in zip(means, SUCCESS)]
        axis.bar(np.arange(NUM_STAGES) + index * width, means, width, yerr=[low, high], capsize=3, label=label)
    axis.set_xticks(np.arange(NUM_STAGES) + width * (len(labels) - 1) / 2, [f"stage {s}" for s in range(NUM_STAGES)])
    axis.set_ylabel("final greedy success (mean, 95% CI)")
    axis.set_ylim(0, 1.05)
    axis.legend()
    fig.tight_layout()
    figure = out_dir / "comparison.png"
    fig.savefig(figure, dpi=120)
    plt.close(fig)
    written.append(figure)
    print(to_markdown(table))
    print(to_markdown(improvement_table))
    return written
