"""Writing a report's files (CSV, Markdown, LaTeX, plots) and printing its summary."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import yaml

from ..metrics import STAGES, SUCCESS_MIN
from .aggregate import AGGREGATE_CAPTION, aggregate_display, aggregate_markdown, aggregate_table
from .bootstrap import SETTINGS
from .curves import performance_profile, sample_efficiency
from .plots import (
    learning_curves_plot,
    performance_profile_plot,
    sample_efficiency_plot,
    schedule_plot,
    sensitivity_plot,
    survival_plot,
)
from .reading import Report
from .stats import rows_of
from .survival import EPISODES_TO_SOLVE, survival_table, time_to_solve
from .tables import (
    EPISODES_TO_SOLVE_LABEL,
    caption_for,
    display_table,
    format_config,
    interval_text,
    latex_text,
    mean_ci,
    to_latex,
    to_markdown,
)

SHOWN = 3  # configurations drawn in a report's figures: the best, in the summary's order


def write_report(report: Report, out_dir: str | Path) -> list[Path]:
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    table = display_table(report.summary, report.hyperparameters)
    latex_table = display_table(report.summary, report.hyperparameters, latex=True)
    written = [out_dir / "trials.csv", out_dir / "summary.csv", out_dir / "summary.md", out_dir / "summary.tex"]
    report.trials.to_csv(written[0], index=False)
    report.summary.to_csv(written[1], index=False)
    written[2].write_text(
        f"**{report.name}**: final greedy success per stage (share of correct answers): "
        "mean ± std over seeds [95% bootstrap CI]; IQM = interquartile mean of success over seeds [95% "
        "bootstrap CI]; reward = mean reward with the shaping bonus (what the tutorial prints as "
        "accuracy), mean [95% bootstrap CI]; solved = every stage >= 0.99 at the final evaluation; "
        f"{EPISODES_TO_SOLVE_LABEL}: seeds that never solve are censored at the episodes they trained, not "
        f"dropped (inf: fewer than half solve) [95% bootstrap CI over seeds]. Every interval: {SETTINGS}."
        + trained_on(report.trials)
        + "\n\n"
        + to_markdown(table)
    )
    written[3].write_text(to_latex(latex_table, caption_for(report.name), f"tab:{report.name}"))
    aggregates = aggregate_table(report.trials, report.hyperparameters)
    written += [out_dir / "aggregate.csv", out_dir / "aggregate.tex"]
    aggregates.to_csv(written[-2], index=False)
    written[-1].write_text(
        to_latex(
            aggregate_display(aggregates, report.hyperparameters),
            latex_text(f"Experiment {report.name}: " + AGGREGATE_CAPTION),
            f"tab:{report.name}-aggregate",
        )
    )
    with open(written[2], "a") as summary:
        summary.write(aggregate_markdown(aggregates, report.hyperparameters))
    shown = [
        (
            format_config(config, report.hyperparameters),
            rows_of(report.trials, config, report.hyperparameters),
            rows_of(report.curves, config, report.hyperparameters),
        )
        for _, config in report.summary.head(SHOWN).iterrows()
    ]
    written += write_figures(shown, out_dir, f"{report.name}, best {min(SHOWN, len(report.summary))}")
    sensitivity = out_dir / "sensitivity.png"
    if sensitivity_plot(report, sensitivity):
        written.append(sensitivity)
    if not report.schedules.empty:  # pbt
        written += write_schedules(report, out_dir)
    return written


def trained_on(trials: pd.DataFrame) -> str:
    """' Trained on: CPU (N trials).' for each kind of CPU the trials ran on (none recorded: '')."""
    counts = trials["cpu"].replace("", pd.NA).dropna().value_counts() if "cpu" in trials else pd.Series()
    if counts.empty:
        return ""
    return " Trained on: " + "; ".join(f"{cpu} ({n} trials)" for cpu, n in counts.items()) + "."


def write_figures(shown: list[tuple[str, pd.DataFrame, pd.DataFrame]], out_dir: Path, title: str) -> list[Path]:
    """For each (label, its trials, their evaluations): the learning curves per stage, the sample
    efficiency over stages, the performance profile and the time to solve, as plots and as the CSV
    tables they draw (a `configuration` column names the label)."""

    def table(make, *parts) -> pd.DataFrame:
        frames = [make(*part).assign(configuration=label) for label, *part in parts]
        frames = [f for f in frames if not f.empty]
        frame = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=["configuration"])
        return frame[["configuration", *(c for c in frame.columns if c != "configuration")]]

    efficiency = table(sample_efficiency, *((label, curves) for label, _, curves in shown))
    profile = table(performance_profile, *((label, trials) for label, trials, _ in shown))
    survival = table(lambda trials: survival_table(*time_to_solve(trials)), *((label, t) for label, t, _ in shown))
    written = []
    for name, frame, plot in (
        ("learning_curves", efficiency, learning_curves_plot),
        ("sample_efficiency", efficiency, sample_efficiency_plot),
        ("performance_profile", profile, performance_profile_plot),
        ("survival", survival, survival_plot),
    ):
        if name != "learning_curves":  # drawn from sample_efficiency.csv's per-stage columns
            frame.to_csv(out_dir / f"{name}.csv", index=False)
            written.append(out_dir / f"{name}.csv")
        plot(frame, out_dir / f"{name}.png", title)
        written.append(out_dir / f"{name}.png")
    return written


def write_schedules(report: Report, out_dir: Path) -> list[Path]:
    """Each pbt trial's hyperparameter schedule (a table and a plot), and the best trial's as the
    `schedule:` that replays it on fresh seeds."""
    table, plot, best_file = out_dir / "schedules.csv", out_dir / "schedules.png", out_dir / "best_schedule.yaml"
    report.schedules.to_csv(table, index=False)
    schedule_plot(report.schedules, plot)
    best = report.summary.iloc[0]["pbt_trial"]
    entries = report.schedules[report.schedules["pbt_trial"] == best].drop(columns="pbt_trial")
    schedule = [{k: v for k, v in entry.items() if pd.notna(v)} for entry in entries.to_dict("records")]
    best_file.write_text(
        f"# The schedule of {report.name}'s best trial ({best}), its donors' history included. Replay it\n"
        "# on fresh seeds as train: {schedule: ...} in a spec (with the same train fields).\n"
        + yaml.safe_dump({"schedule": [{k: _plain(v) for k, v in e.items()} for e in schedule]}, sort_keys=False)
    )
    with open(out_dir / "summary.md", "a") as summary:
        summary.write(
            f"\n\nHyperparameter schedules (pbt): `schedules.csv`, `schedules.png`; the best trial's ({best}), "
            "to replay on fresh seeds, in `best_schedule.yaml`:\n\n" + to_markdown(entries.reset_index(drop=True))
        )
    return [table, plot, best_file]


def _plain(value):
    """A Python number for YAML (pandas may hand numpy scalars)."""
    return value.item() if hasattr(value, "item") else value


def print_summary(report: Report) -> None:
    for problem in report.warnings:
        print(f"warning: {problem}")
    table = display_table(report.summary, report.hyperparameters)
    columns = [
        *report.hyperparameters,
        "seeds (final/asked)",
        *(f"{s} success" for s in STAGES),
        "solved (all stages >= 0.99)",
        EPISODES_TO_SOLVE_LABEL,
    ]
    with pd.option_context("display.max_colwidth", 60, "display.width", 250):
        print(table[columns].to_string(index=False))
    best = report.summary.iloc[0]
    print(
        f"\nBest: {format_config(best, report.hyperparameters)}: {SUCCESS_MIN} {mean_ci(best, SUCCESS_MIN)}, "
        f"solved by {best['solved_share']:.0%} of seeds, median episodes to solve (Kaplan-Meier) "
        f"{interval_text(best, EPISODES_TO_SOLVE, digits=0)}"
    )
    errored = report.trials[report.trials["status"] == "errored"]
    for _, trial in errored.iterrows():
        print(f"errored: trial {trial['trial_id']} (seed {trial['seed']}): {trial['error']}")
