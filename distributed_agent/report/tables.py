"""Tables: the paper table of a summary, as Markdown and LaTeX. Every number is a *success*
(share of correct greedy answers) unless a column says reward."""

from __future__ import annotations

import pandas as pd

from ..metrics import REWARD, STAGES, SUCCESS
from .bootstrap import SETTINGS
from .survival import EPISODES_TO_SOLVE

EPISODES_TO_SOLVE_LABEL = "median episodes to solve (Kaplan-Meier)"


def display_table(summary: pd.DataFrame, hyperparameters: list[str], latex: bool = False) -> pd.DataFrame:
    """The paper table: configuration, seeds, per-stage success mean [95% CI] and IQM [95% CI],
    solved share, the Kaplan-Meier median episodes to solve [95% CI]."""
    pm = r"$\pm$" if latex else "±"
    rows = []
    for _, row in summary.iterrows():
        out = {h: format_value(row[h]) for h in hyperparameters}
        seeds = f"{row['final']}/{row['seeds_asked']}"
        notes = [
            f"{row[k]} {k.replace('_', ' ')}"
            for k in ("stopped_early", "errored", "unfinished", "not_started")
            if row[k]
        ]
        out["seeds (final/asked)"] = seeds + (f" ({', '.join(notes)})" if notes else "")
        for stage, column in zip(STAGES, SUCCESS):
            out[f"{stage} success"] = mean_ci(row, column, std=pm)
            out[f"{stage} IQM"] = interval_text(row, column + " iqm")
        for stage, column in zip(STAGES, REWARD):
            out[f"{stage} reward"] = mean_ci(row, column)
        out["solved (all stages >= 0.99)"] = f"{row['solved_share']:.0%}"
        out[EPISODES_TO_SOLVE_LABEL] = interval_text(row, EPISODES_TO_SOLVE, digits=0)
        rows.append(out)
    return pd.DataFrame(rows)


def mean_ci(row: pd.Series, column: str, std: str | None = None) -> str:
    """'0.873 [0.738, 1.000]' from a summary row, or with std='±': '0.873 ± 0.311 [0.738, 1.000]'."""
    spread = f" {std} {format_number(row[column + ' std'])}" if std else ""
    low, high = format_number(row[column + " ci_low"]), format_number(row[column + " ci_high"])
    return f"{format_number(row[column + ' mean'])}{spread} [{low}, {high}]"


def interval_text(row: pd.Series, name: str, digits: int = 3) -> str:
    """'0.873 [0.738, 1.000]' from the columns name, name ci_low, name ci_high; digits=0 for
    episodes ('71,680 [46,080, inf]')."""
    point = row[name]
    if pd.isna(point):
        return "-"
    low, high = format_number(row[f"{name} ci_low"], digits), format_number(row[f"{name} ci_high"], digits)
    return f"{format_number(point, digits)} [{low}, {high}]"


def format_config(row: pd.Series, hyperparameters: list[str]) -> str:
    return ", ".join(f"{h}={format_value(row[h])}" for h in hyperparameters) or "all trials"


def format_value(value) -> str:
    if isinstance(value, float):
        return f"{value:.3g}"
    return str(value)


def format_number(value, digits: int = 3) -> str:
    """'0.873'; digits=0: '71,680' (episodes); '-' for a missing value, 'inf' for infinity."""
    if pd.isna(value):
        return "-"
    return f"{value:,.0f}" if digits == 0 else f"{value:.{digits}f}"


def to_markdown(table: pd.DataFrame) -> str:
    header = "| " + " | ".join(table.columns) + " |"
    rule = "|" + "|".join("---" for _ in table.columns) + "|"
    body = ["| " + " | ".join(str(v).replace("|", "\\|") for v in row) + " |" for row in table.itertuples(index=False)]
    return "\n".join([header, rule, *body]) + "\n"


def to_latex(table: pd.DataFrame, caption: str, label: str) -> str:
    latex_safe = table.rename(columns=latex_text).map(lambda v: latex_text(str(v)))
    return latex_safe.style.hide(axis="index").to_latex(
        caption=caption, label=label, hrules=True, column_format="l" * len(table.columns), position="htbp"
    )


def latex_text(text: str) -> str:
    """Plain text for LaTeX: % and _ escaped, comparisons in math mode (text-mode > prints as an
    inverted question mark in the default font encoding)."""
    text = text.replace("%", r"\%").replace("_", r"\_")
    return text.replace(">=", r"$\geq$").replace(" > ", r" $>$ ")


def caption_for(name: str) -> str:
    return (
        f"Experiment {latex_text(name)}: final greedy success (share of correct answers) per stage, "
        f"mean $\\pm$ std over seeds [95\\% percentile-bootstrap CI] and interquartile mean [95\\% CI]; mean "
        f"reward with the shaping bonus [95\\% CI]; the share of seeds reaching $\\geq$ 0.99 success on every "
        f"stage, and the Kaplan-Meier median training episodes until they do (seeds that never do censored, "
        f"not dropped; inf: fewer than half do) [95\\% bootstrap CI]; {SETTINGS} for every interval."
    )
