"""Aggregates over stages and time to solve, as Agarwal et al. 2021 ("Deep RL at the edge of the
statistical precipice") recommend: seeds are the runs, stages the tasks.

- IQM, mean, median (of the stages' means) and optimality gap (to success 1.0) of final greedy
  success over runs x stages,
  each with a 95% stratified-bootstrap interval: runs resampled with replacement within each stage,
  BOOTSTRAP_RESAMPLES times from a generator seeded with BOOTSTRAP_SEED, so a report is reproducible.
- Time to solve (all stages >= 0.99) as a Kaplan-Meier survival curve over episodes: a seed that
  never solved is censored at the episodes it trained, not dropped; its median with a 95% bootstrap
  interval over seeds (infinite where fewer than half the seeds solve).

Written beside the summary as aggregate.csv and a section of summary.md.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats

from ..metrics import SUCCESS
from .stats import configurations
from .tables import format_value

BOOTSTRAP_RESAMPLES = 2000
BOOTSTRAP_SEED = 0
CONFIDENCE = 0.95

# Each takes scores [..., runs, tasks] and reduces the last two axes.
AGGREGATES = {
    "iqm": lambda s: stats.trim_mean(s.reshape(*s.shape[:-2], -1), 0.25, axis=-1),
    "mean": lambda s: s.mean(axis=(-2, -1)),
    "median": lambda s: np.median(s.mean(axis=-2), axis=-1),  # of the stages' means, as rliable
    "optimality_gap": lambda s: 1.0 - np.minimum(s, 1.0).mean(axis=(-2, -1)),
}


def stratified_bootstrap(scores, statistic, resamples: int = BOOTSTRAP_RESAMPLES, seed: int = BOOTSTRAP_SEED):
    """(point, low, high): the statistic of scores [runs, tasks] and its percentile interval, runs
    resampled with replacement within each task."""
    scores = np.asarray(scores, dtype=float)
    runs, tasks = scores.shape
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, runs, size=(resamples, runs, tasks))
    resampled = np.take_along_axis(np.broadcast_to(scores, (resamples, runs, tasks)), picks, axis=1)
    values = statistic(resampled)
    tail = (1 - CONFIDENCE) / 2 * 100
    low, high = np.percentile(values, [tail, 100 - tail])
    return float(statistic(scores)), float(low), float(high)


def kaplan_meier(times, solved) -> tuple[np.ndarray, np.ndarray]:
    """(times at which a seed solved, share of seeds not yet solved just after each): the
    product-limit estimate; seeds not solved are censored at their time."""
    times, solved = np.asarray(times, dtype=float), np.asarray(solved, dtype=bool)
    event_times = np.unique(times[solved])
    survival, share = [], 1.0
    for t in event_times:
        at_risk = np.sum(times >= t)
        share *= 1 - np.sum((times == t) & solved) / at_risk
        survival.append(share)
    return event_times, np.asarray(survival)


def median_time_to_solve(times, solved) -> float:
    """The first time at which at most half the seeds are still unsolved (inf if never)."""
    event_times, survival = kaplan_meier(times, solved)
    reached = np.nonzero(survival <= 0.5)[0]
    return float(event_times[reached[0]]) if len(reached) else float("inf")


def median_time_interval(times, solved, resamples: int = BOOTSTRAP_RESAMPLES, seed: int = BOOTSTRAP_SEED):
    """Percentile bootstrap interval (seeds resampled) of the Kaplan-Meier median."""
    times, solved = np.asarray(times, dtype=float), np.asarray(solved, dtype=bool)
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, len(times), size=(resamples, len(times)))
    medians = np.array([median_time_to_solve(times[p], solved[p]) for p in picks])
    tail = (1 - CONFIDENCE) / 2 * 100
    low, high = np.percentile(medians, [tail, 100 - tail], method="lower")
    return float(low), float(high)


def aggregate_table(trials: pd.DataFrame, hyperparameters: list[str]) -> pd.DataFrame:
    """One row per configuration: the aggregates over runs x stages with intervals, and the
    Kaplan-Meier median episodes to solve with its interval."""
    rows = []
    for row, group in configurations(trials, hyperparameters):
        scores = group[list(SUCCESS)].to_numpy(float)
        scores = scores[~np.isnan(scores).any(axis=1)]  # runs measured on every stage
        row["runs"] = len(scores)
        for name, statistic in AGGREGATES.items():
            point, low, high = stratified_bootstrap(scores, statistic) if len(scores) else (np.nan,) * 3
            row[name], row[f"{name} ci_low"], row[f"{name} ci_high"] = point, low, high
        measured = group[group["status"] != "not started"]
        times = measured["episodes_to_solve"].where(measured["solved"], measured["episodes"]).to_numpy(float)
        solved, known = measured["solved"].to_numpy(bool), ~np.isnan(times)
        row["seeds_solved"] = int(solved.sum())
        row["median_episodes_to_solve_km"] = median_time_to_solve(times[known], solved[known])
        low, high = median_time_interval(times[known], solved[known]) if known.any() else (np.nan, np.nan)
        row["median_episodes_to_solve_km ci_low"], row["median_episodes_to_solve_km ci_high"] = low, high
        rows.append(row)
    return pd.DataFrame(rows)


def aggregate_markdown(table: pd.DataFrame, hyperparameters: list[str]) -> str:
    """The aggregate table as a Markdown section for summary.md."""

    def interval(row, name, digits=3):
        point, low, high = row[name], row[f"{name} ci_low"], row[f"{name} ci_high"]
        if pd.isna(point):
            return "-"
        form = (lambda v: "inf" if np.isinf(v) else f"{v:,.0f}") if digits == 0 else (lambda v: f"{v:.{digits}f}")
        return f"{form(point)} [{form(low)}, {form(high)}]"

    header = [*hyperparameters, "runs", *AGGREGATES, "seeds solved", "median episodes to solve (Kaplan-Meier)"]
    lines = ["| " + " | ".join(h.replace("_", " ") for h in header) + " |", "|" + "---|" * len(header)]
    for _, row in table.iterrows():
        cells = [format_value(row[h]) for h in hyperparameters] + [str(int(row["runs"]))]
        cells += [interval(row, name) for name in AGGREGATES]
        cells += [str(int(row["seeds_solved"])), interval(row, "median_episodes_to_solve_km", digits=0)]
        lines.append("| " + " | ".join(cells) + " |")
    return (
        "\n\n## Aggregate over stages, and time to solve\n\n"
        "Final greedy success over runs (seeds) x stages: IQM, mean, median of the stages' means, and "
        "optimality gap (1 - mean of min(success, 1)), each [95% stratified bootstrap: seeds resampled "
        f"within each stage, {BOOTSTRAP_RESAMPLES} resamples, seed {BOOTSTRAP_SEED}]. Episodes to solve "
        "(all stages >= 0.99): the Kaplan-Meier median, seeds that never solved censored at the episodes "
        "they trained, not dropped (inf: fewer than half solve), [95% bootstrap interval over seeds].\n\n"
        + "\n".join(lines)
        + "\n"
    )
