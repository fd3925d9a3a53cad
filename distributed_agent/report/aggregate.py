"""Aggregates over stages, as Agarwal et al. 2021 ("Deep RL at the edge of the statistical
precipice") recommend: seeds are the runs, stages the tasks. IQM, mean, median (of the stages'
means) and optimality gap (to success 1.0) of final greedy success over runs x stages, each with a
95% stratified-bootstrap interval (bootstrap.py). Written beside the summary as aggregate.csv,
aggregate.tex and a section of summary.md.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats

from ..metrics import SUCCESS
from .bootstrap import SETTINGS, stratified_bootstrap
from .stats import configurations
from .tables import format_value, interval_text, to_markdown

# Each takes scores [..., runs, tasks] and reduces the last two axes.
AGGREGATES = {
    "iqm": lambda s: stats.trim_mean(s.reshape(*s.shape[:-2], -1), 0.25, axis=-1),
    "mean": lambda s: s.mean(axis=(-2, -1)),
    "median": lambda s: np.median(s.mean(axis=-2), axis=-1),  # of the stages' means, as rliable
    "optimality_gap": lambda s: 1.0 - np.minimum(s, 1.0).mean(axis=(-2, -1)),
}


def aggregate_table(trials: pd.DataFrame, hyperparameters: list[str]) -> pd.DataFrame:
    """One row per configuration: the aggregates over runs x stages with their intervals."""
    rows = []
    for row, group in configurations(trials, hyperparameters):
        scores = final_scores(group)
        row["runs"] = len(scores)
        for name, statistic in AGGREGATES.items():
            point, low, high = stratified_bootstrap(scores, statistic) if len(scores) else (np.nan,) * 3
            row[name], row[f"{name} ci_low"], row[f"{name} ci_high"] = point, low, high
        rows.append(row)
    return pd.DataFrame(rows)


def final_scores(trials: pd.DataFrame) -> np.ndarray:
    """Final success [runs, stages] of the runs measured on every stage."""
    scores = trials[list(SUCCESS)].to_numpy(float)
    return scores[~np.isnan(scores).any(axis=1)]


def aggregate_display(table: pd.DataFrame, hyperparameters: list[str]) -> pd.DataFrame:
    """The aggregate table for Markdown and LaTeX: each aggregate as 'point [low, high]'."""
    rows = []
    for _, row in table.iterrows():
        out = {h: format_value(row[h]) for h in hyperparameters} | {"runs": str(int(row["runs"]))}
        rows.append(out | {name.replace("_", " "): interval_text(row, name) for name in AGGREGATES})
    return pd.DataFrame(rows)


AGGREGATE_CAPTION = (
    "Final greedy success over runs (seeds) x stages: IQM, mean, median of the stages' means, and "
    "optimality gap (1 - mean of min(success, 1)), each [95% stratified bootstrap: seeds resampled "
    f"within each stage, {SETTINGS}]."
)


def aggregate_markdown(table: pd.DataFrame, hyperparameters: list[str]) -> str:
    """The aggregate table as a Markdown section for summary.md."""
    return (
        "\n\n## Aggregate over stages\n\n"
        + AGGREGATE_CAPTION
        + "\n\n"
        + to_markdown(aggregate_display(table, hyperparameters))
    )
