"""Comparing experiments: the chosen configuration of each (the best unless --config names one),
side by side, with the probability that one improves on another over seeds."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from ..config import ConfigError
from ..metrics import STAGES, SUCCESS
from .aggregate import aggregate_table
from .bootstrap import SETTINGS
from .output import write_figures
from .plots import comparison_plot
from .reading import Report
from .stats import probability_of_improvement, rows_of
from .survival import EPISODES_TO_SOLVE
from .tables import EPISODES_TO_SOLVE_LABEL, format_config, interval_text, latex_text, mean_ci, to_latex, to_markdown


def select_config(report: Report, wanted: dict | None) -> pd.Series:
    """The summary row of the best configuration, or of the one whose values are given."""
    if not wanted:
        return report.summary.iloc[0]
    mask = np.ones(len(report.summary), bool)
    for key, value in wanted.items():
        if key not in report.hyperparameters:
            raise ConfigError(
                f"--config: {key!r} is not swept in {report.name}; swept: {', '.join(report.hyperparameters)}"
            )
        column = report.summary[key]
        mask &= (
            np.isclose(column.astype(float), float(value)) if _is_number(value) else (column.astype(str) == str(value))
        )
    if not mask.any():
        raise ConfigError(f"--config: no configuration of {report.name} has {wanted}")
    return report.summary[mask].iloc[0]


def _is_number(value) -> bool:
    try:
        float(value)
        return True
    except (TypeError, ValueError):
        return False


def parse_config_choices(choices: list[str], labels: list[str]) -> dict[str, dict]:
    """['fixed:lr=0.003,hidden_size=64'] -> {'fixed': {'lr': '0.003', 'hidden_size': '64'}}."""
    chosen = {}
    for choice in choices:
        label, sep, assignments = choice.partition(":")
        if not sep or label not in labels:
            raise ConfigError(
                f"--config: expected LABEL:KEY=VALUE,... with LABEL one of {', '.join(labels)} (got {choice!r})"
            )
        pairs = [a.partition("=") for a in assignments.split(",") if a]
        if not pairs or any(not p[1] for p in pairs):
            raise ConfigError(f"--config: expected LABEL:KEY=VALUE,... (got {choice!r})")
        chosen[label] = {k.strip(): v.strip() for k, _, v in pairs}
    return chosen


def comparison_tables(
    reports: list[Report], labels: list[str], configs: list[str] | None = None
) -> tuple[pd.DataFrame, pd.DataFrame, list[pd.Series]]:
    """(the comparison table, the probability-of-improvement table, the chosen summary rows)."""
    chosen = parse_config_choices(configs or [], labels)
    selected = [select_config(r, chosen.get(label)) for r, label in zip(reports, labels)]
    trials = [rows_of(r.trials, c, r.hyperparameters) for r, c in zip(reports, selected)]
    rows = []
    for report, label, config, its_trials in zip(reports, labels, selected, trials):
        row = {
            "experiment": label,
            "configuration": format_config(config, report.hyperparameters),
            "seeds (final/asked)": f"{config['final']}/{config['seeds_asked']}",
        }
        for stage, column in zip(STAGES, SUCCESS):
            row[f"{stage} success"] = mean_ci(config, column)
        aggregate = aggregate_table(its_trials, []).iloc[0]
        row["IQM over seeds x stages"] = interval_text(aggregate, "iqm")
        row["solved (all stages >= 0.99)"] = f"{config['solved_share']:.0%}"
        row[EPISODES_TO_SOLVE_LABEL] = interval_text(config, EPISODES_TO_SOLVE, digits=0)
        rows.append(row)
    per_stage = [[t[column].to_numpy(float) for column in SUCCESS] for t in trials]
    improvements = []
    for i in range(len(labels)):
        for j in range(len(labels)):
            if i != j:
                point, low, high = probability_of_improvement(per_stage[i], per_stage[j])
                improvements.append(
                    {
                        "X": labels[i],
                        "Y": labels[j],
                        "P(X > Y)": point,
                        "P(X > Y) ci_low": low,
                        "P(X > Y) ci_high": high,
                    }
                )
    return pd.DataFrame(rows), pd.DataFrame(improvements), selected


def compare_reports(
    reports: list[Report], labels: list[str], out_dir: str | Path, configs: list[str] | None = None
) -> list[Path]:
    """Write the comparison (CSV, Markdown, LaTeX, a bar plot) to out_dir; returns the files."""
    table, improvement_table, selected = comparison_tables(reports, labels, configs)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = [
        out_dir / "comparison.csv",
        out_dir / "comparison.md",
        out_dir / "comparison.tex",
        out_dir / "probability_of_improvement.csv",
        out_dir / "comparison.png",
    ]
    table.to_csv(written[0], index=False)
    improvements = improvement_table.assign(
        **{"P(X > Y) [95% CI]": [interval_text(row, "P(X > Y)") for _, row in improvement_table.iterrows()]}
    )[["X", "Y", "P(X > Y) [95% CI]"]]
    written[1].write_text(
        f"{COMPARISON_CAPTION} Every interval: {SETTINGS}.\n\n" + to_markdown(table) + "\nProbability of "
        "improvement over seeds (rliable: the share of seed pairs where X's final success beats Y's, ties "
        "counting half, averaged over stages) [95% bootstrap CI: the seeds of X and of Y resampled "
        "independently within each stage]:\n\n" + to_markdown(improvements)
    )
    written[2].write_text(
        to_latex(table, latex_text(f"Comparison of {', '.join(labels)}. {COMPARISON_CAPTION}"), "tab:comparison")
        + to_latex(
            improvements,
            latex_text(f"Probability of improvement over seeds [95% bootstrap CI]; {SETTINGS}."),
            "tab:probability-of-improvement",
        )
    )
    improvement_table.to_csv(written[3], index=False)
    comparison_plot(labels, selected, written[4])
    shown = [
        (label, rows_of(r.trials, c, r.hyperparameters), rows_of(r.curves, c, r.hyperparameters))
        for r, label, c in zip(reports, labels, selected)
    ]
    return written + write_figures(shown, out_dir, "comparison")


COMPARISON_CAPTION = (
    "Final greedy success per stage (share of correct answers): mean [95% bootstrap CI] over seeds; "
    "the IQM over seeds x stages [95% stratified-bootstrap CI]; the share of seeds solved (every stage "
    ">= 0.99) and the Kaplan-Meier median episodes until they are (seeds never solved censored; inf: "
    "fewer than half solve) [95% bootstrap CI]."
)
