"""Statistics over seeds: seeds are the runs and stages the tasks (Agarwal et al. 2021, "rliable").
Per configuration the mean over seeds, its standard deviation, a 95% bootstrap confidence
interval and the interquartile mean, per stage; the probability of improvement between two."""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats

from ..metrics import REWARD, SUCCESS, SUCCESS_MIN

BOOTSTRAP_RESAMPLES = 2000


def bootstrap_ci(values, confidence: float = 0.95, seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap CI of the mean over seeds (NaN with fewer than 2 seeds)."""
    values = np.asarray(values, dtype=float)
    values = values[~np.isnan(values)]
    if len(values) < 2:
        return (np.nan, np.nan)
    if np.all(values == values[0]):
        return (float(values[0]), float(values[0]))
    result = stats.bootstrap(
        (values,),
        np.mean,
        confidence_level=confidence,
        n_resamples=BOOTSTRAP_RESAMPLES,
        method="percentile",
        random_state=np.random.default_rng(seed),
    )
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


def configurations(trials: pd.DataFrame, hyperparameters: list[str]):
    """(its swept values, its trials) of each configuration: trials grouped by everything but the seed."""
    keys = hyperparameters or ["_all"]
    frame = trials.assign(_all="all") if not hyperparameters else trials
    for config, group in frame.groupby(keys, sort=False, dropna=False):
        config = config if isinstance(config, tuple) else (config,)
        yield (dict(zip(keys, config)) if hyperparameters else {}), group


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
        row["solved_share"] = float(group["solved"].sum()) / asked
        solved_episodes = group.loc[group["solved"], "episodes_to_solve"]
        row["median_episodes_to_solve"] = float(solved_episodes.median()) if len(solved_episodes) else np.nan
        row["incomplete"] = bool(row["seeds"] < asked or row["errored"] or row["unfinished"] or row["not_started"])
        rows.append(row)
    summary = pd.DataFrame(rows)
    summary = summary.sort_values(
        [f"{SUCCESS_MIN} mean", "solved_share", "median_episodes_to_solve"],
        ascending=[False, False, True],
        na_position="last",
        kind="stable",
    )
    return summary.reset_index(drop=True)
