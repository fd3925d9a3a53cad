"""Reports from hand-made experiment folders whose numbers are known."""

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from distributed_agent.cli import main
from distributed_agent.report import (
    build_report,
    load_report,
    merge_parts,
    probability_of_improvement,
    write_report,
)
from distributed_agent.report.tables import caption_for, format_number, interval_text, mean_ci

GOOD = [0.99, 1.0, 1.0, 0.995, 1.0, 0.97, 1.0, 0.999]  # stage-2 success of the 8 seeds of config A
WEAK = [0.1, 0.3, 0.2, 0.25, 0.15, 0.4]  # config B (6 of 8 seeds; see below)


def report_line(trial_id, lr, seed, stage2, iteration, final, episodes):
    success = [1.0, 1.0, stage2]
    line = {
        "update": iteration * 5,
        "episodes": episodes,
        "stage": 2,
        "loss": 0.1,
        "seconds": 1.0,
        "seed": seed,
        "final": int(final),
        "eval_episodes": 1000 if final else 128,
        "node_id": "n1",
        "trial_id": trial_id,
        "training_iteration": iteration,
        "time_total_s": 2.5,
        "config": {"hp": {"lr": lr, "hidden_size": 64, "seed": seed}},
        "success/min": min(success),
    }
    for s in range(3):
        line[f"success/stage{s}"] = success[s]
        line[f"reward/stage{s}"] = success[s] * 1.1
    return line


def make_experiment(root: Path, seeds_asked=8) -> Path:
    run = root / "handmade"
    run.mkdir()
    (run / "spec.yaml").write_text(f"name: handmade\nseeds: {seeds_asked}\n")
    statuses = []

    def trial(trial_id, lr, seed, curve, status="TERMINATED", final=True, extra=""):
        folder = run / f"trial_{trial_id}"
        folder.mkdir()
        lines = [
            report_line(trial_id, lr, seed, value, i + 1, final and i == len(curve) - 1, 1000 * (i + 1))
            for i, value in enumerate(curve)
        ]
        text = "".join(json.dumps(line) + "\n" for line in lines) + extra
        (folder / "result.json").write_text(text)
        (folder / "params.json").write_text(json.dumps({"hp": {"lr": lr, "hidden_size": 64, "seed": seed}}))
        statuses.append([json.dumps({"trial_id": trial_id, "status": status}), json.dumps({"num_failures": 0})])
        return folder

    for seed, value in enumerate(GOOD):
        trial(f"a_{seed}", 0.003, seed, [0.1, 0.995 if seed == 0 else 0.5, value])
    for seed, value in enumerate(WEAK):
        trial(f"b_{seed}", 0.0003, seed, [0.05, value], extra='{"update": 99, "succ' if seed == 0 else "")
    # Config B, seed 6: errored after one report; seed 7: failed before its first report.
    errored = trial("b_6", 0.0003, 6, [0.05], status="ERROR", final=False)
    (errored / "error.txt").write_text("Traceback ...\nFloatingPointError: loss became nan at update 7 (lr=0.0003)\n")
    silent = run / "trial_b_7"
    silent.mkdir()
    (silent / "params.json").write_text(json.dumps({"hp": {"lr": 0.0003, "hidden_size": 64, "seed": 7}}))
    (silent / "error.txt").write_text("RuntimeError: worker died\n")
    statuses.append([json.dumps({"trial_id": "b_7", "status": "ERROR"}), json.dumps({"num_failures": 3})])
    # Config C: one seed stopped early by the scheduler, one still running.
    trial("c_0", 0.03, 0, [0.0, 0.01], final=False)
    trial("c_1", 0.03, 1, [0.0], status="RUNNING", final=False)
    (run / "experiment_state-2026-01-01_00-00-00.json").write_text(json.dumps({"trial_data": statuses}))
    return run


def numpy_bootstrap(values, resamples=20000, seed=1):
    rng = np.random.default_rng(seed)
    values = np.asarray(values)
    means = values[rng.integers(0, len(values), (resamples, len(values)))].mean(1)
    return np.percentile(means, 2.5), np.percentile(means, 97.5)


def test_trials_and_statuses(tmp_path):
    report = build_report(make_experiment(tmp_path))
    trials = report.trials.set_index("trial_id")
    assert len(trials) == 18
    assert trials.loc["b_6", "status"] == "errored"
    assert "loss became nan at update 7" in trials.loc["b_6", "error"]
    assert trials.loc["b_7", "status"] == "errored" and pd.isna(trials.loc["b_7", "success/stage2"])
    assert trials.loc["c_0", "status"] == "stopped early"
    assert trials.loc["c_1", "status"] == "unfinished"
    assert (trials.loc[[f"a_{s}" for s in range(8)], "status"] == "terminated").all()
    # The corrupt (truncated) line is skipped with a warning; the trial's real reports remain.
    assert trials.loc["b_0", "success/stage2"] == WEAK[0]
    assert any("b_0: result.json line 3 is corrupt" in w for w in report.warnings)
    assert any("1 trials are unfinished" in w for w in report.warnings)
    assert any("1 seeds were stopped early by the scheduler" in w for w in report.warnings)
    assert list(trials.columns[:3]) == ["lr", "hidden_size", "seed"]
    for column in [
        "status",
        "success/stage0",
        "reward/stage2",
        "success/min",
        "episodes",
        "updates",
        "wall_time_s",
        "node",
    ]:
        assert column in trials.columns


def test_summary_statistics_match_independent_computations(tmp_path):
    report = build_report(make_experiment(tmp_path))
    summary = report.summary.set_index("lr")
    assert list(report.summary["lr"]) == [0.003, 0.0003, 0.03]  # best first
    a = summary.loc[0.003]
    assert a["seeds"] == 8 and a["final"] == 8 and not a["incomplete"]
    assert a["success/stage2 mean"] == pytest.approx(np.mean(GOOD))
    assert a["success/stage2 std"] == pytest.approx(np.std(GOOD, ddof=1))
    assert a["reward/stage2 mean"] == pytest.approx(np.mean(GOOD) * 1.1)  # reward kept apart from success
    middle = sorted(GOOD)[2:6]  # IQM of 8 values: the mean of the middle four
    assert a["success/stage2 iqm"] == pytest.approx(np.mean(middle))
    low, high = numpy_bootstrap(GOOD)
    assert a["success/stage2 ci_low"] == pytest.approx(low, abs=0.003)
    assert a["success/stage2 ci_high"] == pytest.approx(high, abs=0.003)
    solved = [v >= 0.99 for v in GOOD]
    assert a["solved_share"] == pytest.approx(sum(solved) / 8)
    # Seed 0 reached 0.995 at 2,000 episodes; six others at their final report (3,000); seed 5
    # (0.97) never did: censored at 3,000. Kaplan-Meier: 7/8 unsolved after 2,000, 1/8 after 3,000.
    assert a["median_episodes_to_solve_km"] == 3000
    assert a["median_episodes_to_solve_km ci_low"] <= 3000 <= a["median_episodes_to_solve_km ci_high"]
    assert a["success/stage2 iqm ci_low"] <= a["success/stage2 iqm"] <= a["success/stage2 iqm ci_high"]
    reference = stats.bootstrap(
        (np.array(GOOD),),
        lambda v, axis: stats.trim_mean(v, 0.25, axis=axis),
        n_resamples=20000,
        method="percentile",
        random_state=1,
    ).confidence_interval
    assert a["success/stage2 iqm ci_low"] == pytest.approx(reference.low, abs=0.003)
    assert a["success/stage2 iqm ci_high"] == pytest.approx(reference.high, abs=0.003)
    b = summary.loc[0.0003]
    assert b["seeds"] == 8 and b["final"] == 6 and b["errored"] == 2 and b["incomplete"]
    measured = WEAK + [0.05]  # the errored seed with a report is counted at its last evaluation
    assert b["success/stage2 mean"] == pytest.approx(np.mean(measured))
    assert b["solved_share"] == 0
    c = summary.loc[0.03]
    assert c["stopped_early"] == 1 and c["unfinished"] == 1 and c["seeds_asked"] == 8


def test_trials_on_different_kinds_of_cpu_are_named_and_warned_about(tmp_path):
    run = make_experiment(tmp_path)
    for index, folder in enumerate(sorted(run.glob("trial_a_*"))):
        cpu = "AMD EPYC, AVX2" if index < 3 else "Intel Xeon, AVX512"
        lines = [json.loads(line) | {"cpu": cpu} for line in (folder / "result.json").read_text().splitlines()]
        (folder / "result.json").write_text("".join(json.dumps(line) + "\n" for line in lines))
    report = build_report(run)
    assert any("trials ran on 2 kinds of CPU (AMD EPYC, AVX2; Intel Xeon, AVX512)" in w for w in report.warnings)
    write_report(report, tmp_path / "out")
    summary = (tmp_path / "out" / "summary.md").read_text()
    assert "Trained on: Intel Xeon, AVX512 (5 trials); AMD EPYC, AVX2 (3 trials)." in summary


def test_probability_of_improvement_is_the_pairwise_share():
    x = [[0.9, 0.8, 0.7], [1.0, 1.0, 0.5]]
    y = [[0.8, 0.6], [1.0, 0.2]]
    pairwise = [np.mean([(xi > yj) + 0.5 * (xi == yj) for xi in xs for yj in ys]) for xs, ys in zip(x, y)]
    point, low, high = probability_of_improvement(x, y)
    assert point == pytest.approx(np.mean(pairwise)) and low <= point <= high
    assert point + probability_of_improvement(y, x)[0] == pytest.approx(1.0)


def test_probability_of_improvement_and_its_interval_against_rliable_and_scipy():
    rng = np.random.default_rng(8)
    x, y = rng.uniform(0.3, 1, size=(12, 3)), rng.uniform(0, 0.9, size=(15, 3))
    point, low, high = probability_of_improvement(list(x.T), list(y.T), resamples=20000)
    metrics = pytest.importorskip("rliable.metrics", reason="rliable (a test-only reference) is not installed")
    assert point == pytest.approx(metrics.probability_of_improvement(x, y))
    # One stage: the interval is the percentile bootstrap of two independent samples.
    _, low, high = probability_of_improvement([x[:, 0]], [y[:, 0]], resamples=20000)
    share = lambda a, b, axis: ((a[..., :, None] > b[..., None, :]) + 0.5 * (a[..., :, None] == b[..., None, :])).mean(
        axis=(-2, -1)
    )
    reference = stats.bootstrap(
        (x[:, 0], y[:, 0]), share, n_resamples=20000, method="percentile", random_state=2
    ).confidence_interval
    assert (low, high) == pytest.approx((reference.low, reference.high), abs=0.015)


def test_written_tables_and_plots(tmp_path):
    report = build_report(make_experiment(tmp_path))
    written = write_report(report, tmp_path / "out")
    names = {p.name for p in written}
    assert names == {
        "trials.csv",
        "summary.csv",
        "summary.md",
        "summary.tex",
        "aggregate.csv",
        "aggregate.tex",
        "learning_curves.png",
        "sample_efficiency.csv",
        "sample_efficiency.png",
        "performance_profile.csv",
        "performance_profile.png",
        "survival.csv",
        "survival.png",
        "sensitivity.png",
    }
    for png in ("learning_curves.png", "sample_efficiency.png", "performance_profile.png", "survival.png"):
        data = (tmp_path / "out" / png).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000
    markdown = (tmp_path / "out" / "summary.md").read_text()
    header = next(line for line in markdown.splitlines() if line.startswith("| lr"))
    for column in [
        "hidden_size",
        "seeds (final/asked)",
        "stage0 success",
        "stage2 IQM",
        "solved (all stages >= 0.99)",
        "median episodes to solve (Kaplan-Meier)",
    ]:
        assert column in header
    # The best three configurations are drawn; the numbers behind each plot are written beside it.
    survival = pd.read_csv(tmp_path / "out" / "survival.csv")
    assert list(survival["configuration"].unique()) == [
        "lr=0.003, hidden_size=64",
        "lr=0.0003, hidden_size=64",
        "lr=0.03, hidden_size=64",
    ]
    assert "[" in (tmp_path / "out" / "aggregate.tex").read_text().split("midrule")[1]  # intervals in LaTeX
    assert "share of correct answers" in markdown and "stage2 reward" in header
    assert "6/8 (2 errored)" in markdown
    latex = (tmp_path / "out" / "summary.tex").read_text()
    assert "\\toprule" in latex and "\\midrule" in latex and "\\bottomrule" in latex
    assert "\\caption{Experiment handmade" in latex
    assert "Experiment under\\_score:" in caption_for("under_score")  # LaTeX-safe names
    assert pd.read_csv(tmp_path / "out" / "trials.csv").shape[0] == 18
    trials, summary = load_report(tmp_path / "handmade")
    assert len(trials) == 18 and len(summary) == 3


def test_cli_report_and_comparison(tmp_path, capsys):
    run = make_experiment(tmp_path)
    out = tmp_path / "results" / "handmade"
    assert main(["report", str(run), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "Best: lr=0.003, hidden_size=64" in printed
    assert "errored: trial b_6 (seed 6): FloatingPointError: loss became nan" in printed
    assert main(["report", str(run), "--out", str(out)]) == 2  # an existing report is not overwritten
    assert "--overwrite" in capsys.readouterr().err
    other = tmp_path / "copy"
    other.mkdir()
    run.rename(other / "handmade")
    comparison = tmp_path / "cmp"
    assert (
        main(
            [
                "report",
                str(other / "handmade"),
                str(other / "handmade"),
                "--labels",
                "best,weak",
                "--config",
                "weak:lr=0.0003",
                "--out",
                str(comparison),
            ]
        )
        == 0
    )
    assert "| best | lr=0.003, hidden_size=64 |" in capsys.readouterr().out  # the comparison, printed
    table = pd.read_csv(comparison / "comparison.csv")
    assert list(table["experiment"]) == ["best", "weak"]
    assert table.loc[1, "configuration"] == "lr=0.0003, hidden_size=64"
    improvement = pd.read_csv(comparison / "probability_of_improvement.csv")
    best_over_weak = improvement[(improvement["X"] == "best")].iloc[0]
    assert best_over_weak["P(X > Y)"] == pytest.approx((0.5 + 0.5 + 1.0) / 3, abs=1e-3)  # stages 0, 1 tie; 2 better
    assert best_over_weak["P(X > Y) ci_low"] == best_over_weak["P(X > Y) ci_high"] == best_over_weak["P(X > Y)"]
    for figure in ("comparison", "learning_curves", "sample_efficiency", "performance_profile", "survival"):
        assert (comparison / f"{figure}.png").stat().st_size > 5000
    assert list(pd.read_csv(comparison / "performance_profile.csv")["configuration"].unique()) == ["best", "weak"]
    latex = (comparison / "comparison.tex").read_text()
    assert "tab:probability-of-improvement" in latex and "0.667 [0.667, 0.667]" in latex
    before = (comparison / "comparison.md").read_text()
    assert main(["report", str(other / "handmade"), str(other / "handmade"), "--out", str(comparison)]) == 2
    assert "--overwrite" in capsys.readouterr().err and (comparison / "comparison.md").read_text() == before
    assert main(["report", str(other / "handmade"), "--labels", "a,b"]) == 2
    assert "--labels" in capsys.readouterr().err


def split_in_parts(run: Path, root: Path) -> list[Path]:
    """The hand-made experiment as two sweeps of the same spec: seeds 0-3 and seeds 4-7."""
    parts = []
    for name, seeds in (("part_a", range(0, 4)), ("part_b", range(4, 8))):
        part = root / name
        shutil.copytree(run, part)
        (part / "spec.yaml").write_text(f"name: {name}\nseeds: {list(seeds)}\n")
        for folder in part.glob("trial_*"):
            if int(folder.name.rsplit("_", 1)[1]) not in seeds:
                shutil.rmtree(folder)
        parts.append(part)
    return parts


def test_parts_of_one_experiment_report_as_the_whole(tmp_path, capsys):
    whole = build_report(make_experiment(tmp_path))
    part_a, part_b = split_in_parts(tmp_path / "handmade", tmp_path / "parts")
    merged = merge_parts([build_report(part_a), build_report(part_b)], "handmade")
    assert len(merged.trials) == len(whole.trials) == 18
    assert merged.trials["trial_id"].str.startswith(("part_a/", "part_b/")).all()
    pd.testing.assert_frame_equal(merged.summary, whole.summary)
    assert merged.seeds_asked == whole.seeds_asked == 8
    assert sorted(merged.curves["seed"]) == sorted(whole.curves["seed"])
    out = tmp_path / "merged"
    assert main(["report", str(part_a), str(part_b), "--labels", "handmade,handmade", "--out", str(out)]) == 0
    assert "Best: lr=0.003, hidden_size=64" in capsys.readouterr().out
    assert len(pd.read_csv(out / "trials.csv")) == 18
    # Parts and another experiment side by side: the parts are one row of the comparison.
    comparison = tmp_path / "cmp"
    args = ["report", str(part_a), str(tmp_path / "handmade"), str(part_b), "--labels", "split,whole,split"]
    assert main([*args, "--out", str(comparison)]) == 0
    table = pd.read_csv(comparison / "comparison.csv")
    assert list(table["experiment"]) == ["split", "whole"]
    assert table.loc[0].drop("experiment").equals(table.loc[1].drop("experiment"))
    # Without --labels, folders are named after themselves and never merged, even where names repeat.
    same_name = tmp_path / "same_name"
    assert main(["report", str(tmp_path / "handmade"), str(tmp_path / "handmade"), "--out", str(same_name)]) == 0
    assert list(pd.read_csv(same_name / "comparison.csv")["experiment"]) == ["handmade", "handmade"]


def test_parts_must_be_one_spec_on_other_seeds(tmp_path, capsys):
    make_experiment(tmp_path)
    part_a, part_b = split_in_parts(tmp_path / "handmade", tmp_path / "parts")
    (part_b / "spec.yaml").write_text("name: part_b\nseeds: [3, 4, 5, 6, 7]\n")
    args = ["report", str(part_a), str(part_b), "--labels", "x,x", "--out", str(tmp_path / "out")]
    assert main(args) == 2
    assert "seed 3 is in both part_a and part_b" in capsys.readouterr().err
    (part_b / "spec.yaml").write_text("name: part_b\nseeds: [4, 5, 6, 7]\ntrain: {lr: 0.1}\n")
    assert main(args) == 2
    assert "specs differ in train" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()  # nothing written


def test_table_cells_write_missing_infinite_and_episode_numbers_one_way():
    row = pd.Series(
        {"x mean": 0.87349, "x std": 0.3, "x ci_low": float("nan"), "x ci_high": 1.0, "e": 71680.0}
        | {"e ci_low": 46080.0, "e ci_high": float("inf"), "g": float("nan"), "g ci_low": 0.1, "g ci_high": 0.2}
    )
    assert mean_ci(row, "x", std="±") == "0.873 ± 0.300 [-, 1.000]"
    assert interval_text(row, "e", digits=0) == "71,680 [46,080, inf]"
    assert interval_text(row, "g") == "-"  # no point estimate, no interval
    assert format_number(float("-inf")) == "-inf" and format_number(None) == "-"
