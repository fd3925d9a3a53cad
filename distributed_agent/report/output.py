"""Writing a report's files (CSV, Markdown, LaTeX, plots) and printing its summary."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from ..metrics import STAGES, SUCCESS_MIN
from .plots import learning_curves_plot, sensitivity_plot
from .reading import Report
from .tables import caption_for, display_table, format_config, mean_ci, to_latex, to_markdown


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
        "mean ± std over seeds [95% bootstrap CI]; IQM = interquartile mean of success; "
        "reward = mean reward with the shaping bonus (what the tutorial prints as accuracy), "
        "mean [95% bootstrap CI].\n\n" + to_markdown(table)
    )
    written[3].write_text(to_latex(latex_table, caption_for(report.name), f"tab:{report.name}"))
    curves = out_dir / "learning_curves.png"
    learning_curves_plot(report, curves)
    written.append(curves)
    sensitivity = out_dir / "sensitivity.png"
    if sensitivity_plot(report, sensitivity):
        written.append(sensitivity)
    return written


def print_summary(report: Report) -> None:
    for problem in report.warnings:
        print(f"warning: {problem}")
    table = display_table(report.summary, report.hyperparameters)
    columns = [
        *report.hyperparameters,
        "seeds (final/asked)",
        *(f"{s} success" for s in STAGES),
        "solved (all stages >= 0.99)",
    ]
    with pd.option_context("display.max_colwidth", 60, "display.width", 250):
        print(table[columns].to_string(index=False))
    best = report.summary.iloc[0]
    print(
        f"\nBest: {format_config(best, report.hyperparameters)}: {SUCCESS_MIN} {mean_ci(best, SUCCESS_MIN)}, "
        f"solved by {best['solved_share']:.0%} of seeds"
    )
    errored = report.trials[report.trials["status"] == "errored"]
    for _, trial in errored.iterrows():
        print(f"errored: trial {trial['trial_id']} (seed {trial['seed']}): {trial['error']}")
