"""Curves with 95% stratified-bootstrap bands (Agarwal et al. 2021), for a group of seeds (one
configuration):

- the performance profile: the share of runs x stages whose final success exceeds tau, for tau in
  [0, 1];
- the sample-efficiency curve: IQM and mean of greedy success over runs x stages (or over the runs
  of one stage) at each evaluation point of training. A seed that stopped once it solved (its last
  evaluation is its final one) carries that value forward; a seed that stopped without a final
  evaluation (stopped early by a scheduler, errored, unfinished) ends the curve there, so every point
  is over every seed and no point is an average over the survivors only.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..metrics import SUCCESS
from .aggregate import AGGREGATES, final_scores
from .bootstrap import stratified_bootstrap

TAUS = np.linspace(0.0, 1.0, 101)


def performance_profile(trials: pd.DataFrame) -> pd.DataFrame:
    """tau, the share of runs x stages with final success > tau, and its band."""
    scores = final_scores(trials)
    if not len(scores):
        return pd.DataFrame(columns=["tau", "share", "ci_low", "ci_high"])
    above = (scores[None] > TAUS[:, None, None]).astype(float)  # [taus, runs, stages]
    share, low, high = stratified_bootstrap(above, AGGREGATES["mean"])
    return pd.DataFrame({"tau": TAUS, "share": share, "ci_low": low, "ci_high": high})


def success_over_training(curves: pd.DataFrame, columns=SUCCESS) -> tuple[np.ndarray, np.ndarray]:
    """(episodes, success [points, seeds, stages]): every seed's success at each evaluation point of
    the group, up to the last point every seed reached (or carried forward to, once solved)."""
    seeds = [
        # The last evaluation at an episode count is the final (larger) one where there are two.
        evaluations.sort_values("episodes", kind="stable").drop_duplicates("episodes", keep="last")
        for _, evaluations in curves.groupby("trial_id")
    ]
    grid = np.unique(curves["episodes"].to_numpy(float))
    ends = [seed["episodes"].iloc[-1] if not seed["final"].iloc[-1] else np.inf for seed in seeds]
    grid = grid[grid <= min(ends)]
    values = np.stack(
        [
            np.stack(
                [np.interp(grid, seed["episodes"], seed[column], right=seed[column].iloc[-1]) for column in columns],
                axis=-1,
            )
            for seed in seeds
        ],
        axis=1,
    )
    return grid, values


def sample_efficiency(curves: pd.DataFrame) -> pd.DataFrame:
    """episodes, then IQM and mean of success over runs x stages with their bands, and per stage the
    IQM with its band."""
    if curves.empty:
        return pd.DataFrame()
    grid, success = success_over_training(curves)
    table = {"episodes": grid}
    for name in ("iqm", "mean"):
        point, low, high = stratified_bootstrap(success, AGGREGATES[name])
        table |= {name: point, f"{name} ci_low": low, f"{name} ci_high": high}
    for stage, column in enumerate(SUCCESS):
        point, low, high = stratified_bootstrap(success[..., stage : stage + 1], AGGREGATES["iqm"])
        table |= {f"{column} iqm": point, f"{column} iqm ci_low": low, f"{column} iqm ci_high": high}
    return pd.DataFrame(table)
