"""Performance profiles and sample-efficiency curves on hand-made data whose answers are known."""

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from distributed_agent.report.curves import TAUS, performance_profile, sample_efficiency, success_over_training
from distributed_agent.report.reading import build_report


def finals(scores):
    return pd.DataFrame(scores, columns=["success/stage0", "success/stage1", "success/stage2"])


def test_the_performance_profile_is_the_share_of_runs_and_stages_above_tau():
    scores = np.array([[1.0, 0.5, 0.2], [1.0, 1.0, 0.9], [1.0, 0.3, 0.0], [0.8, 1.0, 0.6]])
    profile = performance_profile(finals(scores)).set_index("tau")
    for tau in (0.0, 0.25, 0.5, 0.85, 1.0):
        expected = np.mean([np.mean(scores[:, stage] > tau) for stage in range(3)])  # per stage, then over stages
        assert profile.loc[profile.index[np.argmin(abs(TAUS - tau))], "share"] == pytest.approx(expected)
    assert (profile["ci_low"] <= profile["share"]).all() and (profile["share"] <= profile["ci_high"]).all()
    assert profile["share"].is_monotonic_decreasing
    same = performance_profile(finals(np.full((5, 3), 0.7)))
    assert (same["ci_low"] == same["ci_high"]).all()  # identical runs: no spread


def evaluations(trial_id, points, final):
    """A seed's evaluations: (episodes, success on every stage) pairs; the last is final if asked."""
    return pd.DataFrame(
        [
            {"trial_id": trial_id, "episodes": e, "final": final and i == len(points) - 1}
            | {f"success/stage{s}": v for s in range(3)}
            for i, (e, v) in enumerate(points)
        ]
    )


def test_solved_seeds_carry_their_final_value_forward_and_scheduler_stops_end_the_curve():
    solved_early = evaluations("a", [(1000, 0.2), (2000, 1.0)], final=True)
    running_on = evaluations("b", [(1000, 0.1), (2000, 0.4), (3000, 0.6), (4000, 0.8)], final=True)
    grid, success = success_over_training(pd.concat([solved_early, running_on]))
    assert list(grid) == [1000, 2000, 3000, 4000]
    assert list(success[:, 0, 0]) == [0.2, 1.0, 1.0, 1.0]  # carried forward
    stopped = evaluations("c", [(1000, 0.3), (2000, 0.3), (3000, 0.3)], final=False)  # pruned at 3,000
    grid, _ = success_over_training(pd.concat([solved_early, running_on, stopped]))
    assert list(grid) == [1000, 2000, 3000]  # no point averages over the survivors only


def test_sample_efficiency_is_the_iqm_and_mean_over_seeds_and_stages_at_each_point():
    rng = np.random.default_rng(7)
    values = rng.uniform(0, 1, size=(8, 3, 3))  # [seeds, points, stages]
    curves = pd.DataFrame(
        [
            {"trial_id": f"s{seed}", "episodes": 1000 * (point + 1), "final": point == 2}
            | {f"success/stage{s}": values[seed, point, s] for s in range(3)}
            for seed in range(8)
            for point in range(3)
        ]
    )
    table = sample_efficiency(curves)
    for point in range(3):
        row = table.iloc[point]
        assert row["iqm"] == pytest.approx(stats.trim_mean(values[:, point].ravel(), 0.25))
        assert row["mean"] == pytest.approx(values[:, point].mean())
        assert row["success/stage1 iqm"] == pytest.approx(stats.trim_mean(values[:, point, 1], 0.25))
        assert row["iqm ci_low"] <= row["iqm"] <= row["iqm ci_high"]


def test_a_final_evaluation_at_the_last_episode_count_replaces_the_regular_one(tmp_path):
    from test_report import make_experiment

    report = build_report(make_experiment(tmp_path))
    table = sample_efficiency(report.curves[report.curves["lr"] == 0.003])
    assert list(table["episodes"]) == [1000, 2000, 3000]
    last = report.trials[report.trials["lr"] == 0.003][[f"success/stage{s}" for s in range(3)]].to_numpy()
    assert table["mean"].iloc[-1] == pytest.approx(last.mean())
