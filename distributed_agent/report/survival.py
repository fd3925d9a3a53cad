"""Time to solve (every stage >= 0.99) as a survival curve: the share of seeds not yet solved after
x training episodes, by the Kaplan-Meier product-limit estimate. A seed that never solved is
censored at the episodes it trained, not dropped: dropping it flatters a configuration that solves
10 of 20. Its median comes with a 95% percentile-bootstrap interval over seeds (seeds resampled,
BOOTSTRAP_RESAMPLES times from BOOTSTRAP_SEED, as every interval of a report)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from .bootstrap import BOOTSTRAP_RESAMPLES, BOOTSTRAP_SEED, percentile_interval

EPISODES_TO_SOLVE = "median_episodes_to_solve_km"  # a summary's column; with ci_low and ci_high


def time_to_solve(trials: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """(episodes, solved) of every seed that ran: the episodes at which a solved seed first reached
    the threshold, or those an unsolved seed trained (its censoring time)."""
    measured = trials[trials["status"] != "not started"]
    times = measured["episodes_to_solve"].where(measured["solved"], measured["episodes"]).to_numpy(float)
    solved = measured["solved"].to_numpy(bool)
    known = ~np.isnan(times)  # a seed that failed before its first report trained for an unknown time
    return times[known], solved[known]


def kaplan_meier(times, solved) -> tuple[np.ndarray, np.ndarray]:
    """(times at which a seed solved, share of seeds not yet solved just after each)."""
    times, solved = np.asarray(times, dtype=float), np.asarray(solved, dtype=bool)
    event_times = np.unique(times[solved])
    return event_times, _survival(times[None], solved[None], event_times)[0]


def _survival(times: np.ndarray, solved: np.ndarray, at: np.ndarray) -> np.ndarray:
    """Kaplan-Meier survival just after each of `at` (every time a seed solved in any sample), for
    samples times, solved [samples, seeds]: the product over event times of 1 - solved / at risk."""
    at_risk = (times[:, None, :] >= at[None, :, None]).sum(axis=-1)
    events = ((times[:, None, :] == at[None, :, None]) & solved[:, None, :]).sum(axis=-1)
    return np.cumprod(1 - events / np.maximum(at_risk, 1), axis=-1)


def _medians(survival: np.ndarray, at: np.ndarray) -> np.ndarray:
    """The first time at which at most half the seeds are still unsolved, per sample (inf if never)."""
    if len(at) == 0:
        return np.full(survival.shape[:-1], np.inf)
    reached = survival <= 0.5
    return np.where(reached.any(axis=-1), at[reached.argmax(axis=-1)], np.inf)


def median_time_to_solve(times, solved) -> float:
    """The Kaplan-Meier median: the first time at which at most half the seeds are still unsolved."""
    event_times, survival = kaplan_meier(times, solved)
    return float(_medians(survival[None], event_times)[0])


def _resampled(times, solved, resamples: int, seed: int):
    times, solved = np.asarray(times, dtype=float), np.asarray(solved, dtype=bool)
    picks = np.random.default_rng(seed).integers(0, len(times), size=(resamples, len(times)))
    return times[picks], solved[picks], np.unique(times[solved])


def median_time_interval(times, solved, resamples: int = BOOTSTRAP_RESAMPLES, seed: int = BOOTSTRAP_SEED):
    """Percentile bootstrap interval (seeds resampled) of the Kaplan-Meier median (inf where fewer
    than half the seeds of a resample solve)."""
    if len(times) == 0:
        return np.nan, np.nan
    sample_times, sample_solved, at = _resampled(times, solved, resamples, seed)
    medians = _medians(_survival(sample_times, sample_solved, at), at)
    low, high = percentile_interval(medians, method="lower")  # "lower": an observed time, or inf
    return float(low), float(high)


def survival_table(times, solved, resamples: int = BOOTSTRAP_RESAMPLES, seed: int = BOOTSTRAP_SEED) -> pd.DataFrame:
    """The survival curve as steps: episodes (0, each time a seed solved, and the longest training
    if it is later: the curve stays flat until then), the share of seeds not yet solved just
    after, and its pointwise 95% bootstrap band."""
    times, solved = np.asarray(times, dtype=float), np.asarray(solved, dtype=bool)
    if len(times) == 0:
        return pd.DataFrame(columns=["episodes", "unsolved", "ci_low", "ci_high"])
    event_times, survival = kaplan_meier(times, solved)
    sample_times, sample_solved, at = _resampled(times, solved, resamples, seed)
    low, high = percentile_interval(_survival(sample_times, sample_solved, at))
    table = pd.DataFrame(
        {
            "episodes": np.concatenate([[0.0], event_times]),
            "unsolved": np.concatenate([[1.0], survival]),
            "ci_low": np.concatenate([[1.0], low]),
            "ci_high": np.concatenate([[1.0], high]),
        }
    )
    if times.max() > table["episodes"].iloc[-1]:
        table = pd.concat([table, table.iloc[[-1]].assign(episodes=times.max())], ignore_index=True)
    return table
