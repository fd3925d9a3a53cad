"""Time to solve: Kaplan-Meier against scipy's estimate on hand-made censored data."""

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from distributed_agent.report.bootstrap import BOOTSTRAP_RESAMPLES, BOOTSTRAP_SEED
from distributed_agent.report.survival import (
    kaplan_meier,
    median_time_interval,
    median_time_to_solve,
    survival_table,
    time_to_solve,
)

TIMES = np.array([100, 200, 200, 300, 350, 400, 500, 500, 800, 1000], float)
SOLVED = np.array([True, True, False, True, False, True, True, True, False, False])


def test_kaplan_meier_equals_scipys_censored_estimate():
    reference = stats.ecdf(stats.CensoredData(uncensored=TIMES[SOLVED], right=TIMES[~SOLVED])).sf
    times, survival = kaplan_meier(TIMES, SOLVED)
    assert list(times) == sorted(set(TIMES[SOLVED]))
    assert survival == pytest.approx(reference.evaluate(times))
    assert survival[-1] == pytest.approx(reference.evaluate(1000.0))  # censored seeds do not move it
    table = survival_table(TIMES, SOLVED)
    # Flat from the last solve to the longest training (a censored seed at 1,000).
    assert list(table["episodes"]) == [0, *times, 1000] and table["unsolved"].iloc[-1] == survival[-1]
    assert (table["ci_low"] <= table["unsolved"] + 1e-12).all() and (
        table["unsolved"] <= table["ci_high"] + 1e-12
    ).all()


def test_kaplan_meier_censors_seeds_that_never_solved_instead_of_dropping_them():
    times, survival = kaplan_meier([1, 2, 2, 3], [True, True, False, True])
    assert list(times) == [1, 2, 3] and survival == pytest.approx([0.75, 0.5, 0.0])
    # Two of four solve (at 100 and 200), two never do: the median is 200, not the 150 that the
    # median over solved seeds alone gives.
    assert median_time_to_solve([100, 200, 1000, 1000], [True, True, False, False]) == 200
    assert median_time_to_solve([100, 1000, 1000], [True, False, False]) == float("inf")
    assert median_time_to_solve([1000, 1000], [False, False]) == float("inf")


def test_the_median_interval_is_the_percentile_interval_of_resampled_medians():
    low, high = median_time_interval(TIMES, SOLVED)
    picks = np.random.default_rng(BOOTSTRAP_SEED).integers(0, len(TIMES), size=(BOOTSTRAP_RESAMPLES, len(TIMES)))
    medians = [median_time_to_solve(TIMES[p], SOLVED[p]) for p in picks]  # one resample at a time
    assert (low, high) == tuple(np.percentile(medians, [2.5, 97.5], method="lower"))
    assert low <= median_time_to_solve(TIMES, SOLVED) <= high


def test_time_to_solve_censors_unsolved_seeds_at_their_episodes_and_skips_unstarted_ones():
    trials = pd.DataFrame(
        {
            "status": ["terminated", "terminated", "stopped early", "errored", "not started"],
            "solved": [True, False, False, False, False],
            "episodes_to_solve": [3000, 4000, np.nan, np.nan, np.nan],  # seed 1 reached 0.99, then lost it
            "episodes": [3000, 9000, 2000, np.nan, np.nan],
        }
    )
    times, solved = time_to_solve(trials)
    assert list(times) == [3000, 9000, 2000] and list(solved) == [True, False, False]
