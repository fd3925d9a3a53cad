"""Statistics over seeds: seeds are the runs and stages the tasks (Agarwal et al. 2021, "rliable").
Per configuration and stage the mean over seeds, its standard deviation and the interquartile mean,
each mean with a 95% bootstrap interval; the Kaplan-Meier median episodes to solve with its
interval; the probability of improvement between two configurations, with its interval."""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats

from ..metrics import REWARD, SUCCESS, SUCCESS_MIN
from .bootstrap import BOOTSTRAP_RESAMPLES, BOOTSTRAP_SEED, CONFIDENCE, percentile_interval
from .survival import EPISODES_TO_SOLVE, median_time_interval, median_time_to_solve, time_to_solve


def _trimmed_mean(values, axis=-1):
    return stats.trim_mean(values, 0.25, axis=axis)


def bootstrap_ci(values, statistic=np.mean, seed: int = BOOTSTRAP_SEED) -> tuple[float, float]:
    """Percentile bootstrap CI of a statistic over seeds (the mean unless given; NaN with fewer than
    2 seeds)."""
    values = np.asarray(values, dtype=float)
    values = values[~np.isnan(values)]
    if len(values) < 2:
        return (np.nan, np.nan)
    if np.all(values == values[0]):
        return (float(values[0]), float(values[0]))
    result = stats.bootstrap(
        (values,),
        statistic,
        confidence_level=CONFIDENCE,
        n_resamples=BOOTSTRAP_RESAMPLES,
        method="percentile",
        random_state=np.random.default_rng(seed),
    )
    return float(result.confidence_interval.low), float(result.confidence_interval.high)


def iqm(values) -> float:
    """Interquartile mean: the mean of the middle 50% of seeds."""
    values = np.asarray(values, dtype=float)
    values = values[~np.isnan(values)]
    return float(_trimmed_mean(values)) if len(values) else np.nan


def _share_better(x, y):
    """P(X > Y) + P(X = Y) / 2 over all pairs of x [..., n] and y [..., m] (Mann-Whitney U / (n m))."""
    x, y = x[..., :, None], y[..., None, :]
    return ((x > y) + 0.5 * (x == y)).mean(axis=(-2, -1))


def probability_of_improvement(
    x_by_stage: list, y_by_stage: list, resamples: int = BOOTSTRAP_RESAMPLES, seed: int = BOOTSTRAP_SEED
) -> tuple[float, float, float]:
    """rliable's P(X > Y) with its 95% interval: over stages, the mean of the share of (x, y) seed
    pairs where x is better (ties count half); the interval resamples the seeds of X and of Y
    independently within each stage (rliable's stratified independent bootstrap).

    Seeds without a measurement (failed before their first evaluation) are left out.
    """
    rng = np.random.default_rng(seed)
    points, resampled = [], []
    for x, y in zip(x_by_stage, y_by_stage):
        x, y = np.asarray(x, float), np.asarray(y, float)
        x, y = x[~np.isnan(x)], y[~np.isnan(y)]
        if not len(x) or not len(y):
            return (np.nan, np.nan, np.nan)
        points.append(_share_better(x, y))
        picks_x, picks_y = rng.integers(0, len(x), (resamples, len(x))), rng.integers(0, len(y), (resamples, len(y)))
        resampled.append(_share_better(x[picks_x], y[picks_y]))
    low, high = percentile_interval(np.mean(resampled, axis=0))
    return float(np.mean(points)), float(low), float(high)


def configurations(trials: pd.DataFrame, hyperparameters: list[str]):
    """(its swept values, its trials) of each configuration: trials grouped by everything but the seed."""
    keys = hyperparameters or ["_all"]
    frame = trials.assign(_all="all") if not hyperparameters else trials
    for config, group in frame.groupby(keys, sort=False, dropna=False):
        config = config if isinstance(config, tuple) else (config,)
        yield (dict(zip(keys, config)) if hyperparameters else {}), group


def rows_of(frame: pd.DataFrame, config: pd.Series, hyperparameters: list[str]) -> pd.DataFrame:
    """The rows of frame (trials, evaluations) that belong to a configuration (a summary row)."""
    mask = np.ones(len(frame), bool)
    for h in hyperparameters:
        column = frame[h] if h in frame else pd.Series(np.nan, index=frame.index)
        mask &= ((column == config[h]) | (column.isna() & pd.isna(config[h]))).to_numpy()
    return frame[mask]


def summarize(trials: pd.DataFrame, hyperparameters: list[str], seeds_asked: int | None) -> pd.DataFrame:
    """One row per configuration (trials grouped by everything but the seed), best first.

    Means are over every trial with a measurement: final evaluations, and the last evaluation of
    trials stopped early or errored (counted in the status columns, never dropped silently). The
    solved share counts every seed asked, so an errored seed counts as not solved.
    """
    rows = []
    for row, group in configurations(trials, hyperparameters):
        asked = max(seeds_asked or 0, len(group))
        row.update(
            {
                "seeds": int((group["status"] != "not started").sum()),
                "seeds_asked": asked,
                "final": int(group["final_eval"].sum()),
                "stopped_early": int((group["status"] == "stopped early").sum()),
                "errored": int((group["status"] == "errored").sum()),
                "unfinished": int((group["status"] == "unfinished").sum()),
                "not_started": int((group["status"] == "not started").sum()),
            }
        )
        for column in [*SUCCESS, SUCCESS_MIN, *REWARD]:
            values = group[column].to_numpy(float)
            low, high = bootstrap_ci(values)
            row[f"{column} mean"] = float(np.nanmean(values)) if np.any(~np.isnan(values)) else np.nan
            row[f"{column} std"] = float(np.nanstd(values, ddof=1)) if np.sum(~np.isnan(values)) > 1 else np.nan
            row[f"{column} ci_low"], row[f"{column} ci_high"] = low, high
            row[f"{column} iqm"] = iqm(values)
            row[f"{column} iqm ci_low"], row[f"{column} iqm ci_high"] = bootstrap_ci(values, _trimmed_mean)
        row["solved_share"] = float(group["solved"].sum()) / asked
        times, solved = time_to_solve(group)
        row[EPISODES_TO_SOLVE] = median_time_to_solve(times, solved) if len(times) else np.nan
        row[f"{EPISODES_TO_SOLVE} ci_low"], row[f"{EPISODES_TO_SOLVE} ci_high"] = median_time_interval(times, solved)
        row["incomplete"] = bool(row["seeds"] < asked or row["errored"] or row["unfinished"] or row["not_started"])
        rows.append(row)
    summary = pd.DataFrame(rows)
    summary = summary.sort_values(
        [f"{SUCCESS_MIN} mean", "solved_share", EPISODES_TO_SOLVE],
        ascending=[False, False, True],
        na_position="last",
        kind="stable",
    )
    return summary.reset_index(drop=True)
