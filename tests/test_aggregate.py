import numpy as np
import pytest
from scipy import stats

from distributed_agent.report.aggregate import AGGREGATES, aggregate_table
from distributed_agent.report.bootstrap import stratified_bootstrap
from distributed_agent.report.reading import build_report


def test_aggregates_over_runs_and_stages_equal_rliables():
    metrics = pytest.importorskip("rliable.metrics", reason="rliable (a test-only reference) is not installed")
    scores = np.random.default_rng(3).uniform(0, 1.2, size=(20, 3))
    reference = {
        "iqm": metrics.aggregate_iqm,
        "mean": metrics.aggregate_mean,
        "median": metrics.aggregate_median,
        "optimality_gap": metrics.aggregate_optimality_gap,
    }
    for name, statistic in AGGREGATES.items():
        assert stratified_bootstrap(scores, statistic)[0] == pytest.approx(reference[name](scores))


def test_with_one_stage_the_interval_is_the_percentile_bootstrap_of_the_mean():
    values = np.random.default_rng(4).uniform(0, 1, size=15)
    _, low, high = stratified_bootstrap(values[:, None], AGGREGATES["mean"], resamples=40000)
    reference = stats.bootstrap((values,), np.mean, n_resamples=40000, method="percentile", random_state=5)
    assert low == pytest.approx(reference.confidence_interval.low, abs=0.01)
    assert high == pytest.approx(reference.confidence_interval.high, abs=0.01)


def test_runs_are_resampled_within_each_stage_not_as_rows():
    # Every row means 0.5, so resampling whole rows would give a zero-width interval.
    scores = np.array([[0.0, 1.0], [1.0, 0.0]])
    point, low, high = stratified_bootstrap(scores, AGGREGATES["mean"])
    assert point == 0.5 and low < 0.5 < high
    assert stratified_bootstrap(np.full((5, 3), 0.7), AGGREGATES["iqm"])[1:] == pytest.approx((0.7, 0.7))


def test_points_of_a_curve_share_the_resamples_and_each_equals_its_own_bootstrap():
    curve = np.random.default_rng(6).uniform(0, 1, size=(4, 10, 3))  # [points, runs, stages]
    point, low, high = stratified_bootstrap(curve, AGGREGATES["iqm"])
    assert point.shape == low.shape == high.shape == (4,)
    for index in range(4):  # the same resamples, point by point or as a curve
        assert (point[index], low[index], high[index]) == pytest.approx(
            stratified_bootstrap(curve[index], AGGREGATES["iqm"])
        )


def test_the_aggregate_table_of_a_report(tmp_path):
    from test_report import make_experiment

    report = build_report(make_experiment(tmp_path))
    table = aggregate_table(report.trials, report.hyperparameters).set_index("lr")
    assert table.loc[0.003, "runs"] == 8
    assert table.loc[0.003, "iqm ci_low"] <= table.loc[0.003, "iqm"] <= table.loc[0.003, "iqm ci_high"]
