"""Plots: learning curves, sample efficiency, performance profiles and time to solve of the best
configurations (or of compared experiments), sensitivity to the learning rate, a comparison of
experiments, pbt schedules. They draw the tables of curves.py and survival.py, labelled by a
`configuration` column. Files only (the Agg backend, chosen once, here)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import matplotlib
import numpy as np
import pandas as pd

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (after the backend is chosen)

from ..env import NUM_STAGES  # noqa: E402
from ..metrics import SUCCESS, SUCCESS_MIN  # noqa: E402
from .tables import format_value  # noqa: E402

if TYPE_CHECKING:
    from .reading import Report


def _labelled(table: pd.DataFrame):
    """(index, label, rows) per configuration of a figure table, in the order they appear."""
    for index, label in enumerate(table["configuration"].unique()):
        yield index, label, table[table["configuration"] == label]


def _band(axis, x, rows: pd.DataFrame, column: str, index: int, label: str, step: bool = False) -> None:
    """rows[column] against x with its 95% band (rows[column ci_low], rows[column ci_high]); for a
    column named `share` or `unsolved` the band is (ci_low, ci_high)."""
    prefix = "" if column in ("share", "unsolved") else f"{column} "
    low, high = rows[f"{prefix}ci_low"], rows[f"{prefix}ci_high"]
    if step:
        axis.step(x, rows[column], where="post", label=label, color=f"C{index}")
        axis.fill_between(x, low, high, step="post", color=f"C{index}", alpha=0.2)
    else:
        axis.plot(x, rows[column], label=label, color=f"C{index}")
        axis.fill_between(x, low, high, color=f"C{index}", alpha=0.2)


def learning_curves_plot(efficiency: pd.DataFrame, path: Path, title: str) -> None:
    """Per stage, the IQM of greedy success over seeds against training episodes, with its band."""
    panels = {f"{column} iqm": f"stage {stage}" for stage, column in enumerate(SUCCESS)}
    ylabel = "greedy success (IQM over seeds, 95% band)"
    _episode_panels(efficiency, panels, ylabel, f"{title}: learning curves", path)


def sample_efficiency_plot(efficiency: pd.DataFrame, path: Path, title: str) -> None:
    """IQM and mean of greedy success over seeds x stages against training episodes, with bands."""
    panels = {
        name: f"{name.upper() if name == 'iqm' else name} of success over seeds x stages" for name in ("iqm", "mean")
    }
    ylabel = "greedy success (95% band)"
    _episode_panels(efficiency, panels, ylabel, f"{title}: sample efficiency", path)


def _episode_panels(efficiency: pd.DataFrame, panels: dict[str, str], ylabel: str, title: str, path: Path) -> None:
    """One panel per column of efficiency (titled by panels[column]) against training episodes."""
    fig, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 4), sharey=True)
    for index, label, rows in _labelled(efficiency):
        for axis, column in zip(axes, panels):
            _band(axis, rows["episodes"], rows, column, index, label)
    for axis, panel_title in zip(axes, panels.values()):
        axis.set_title(panel_title)
        axis.set_xlabel("training episodes")
        axis.grid(alpha=0.3)
    axes[0].set_ylabel(ylabel)
    _legend(axes[0], fontsize=7, loc="lower right")
    fig.suptitle(
        f"{title}\nBands: 95% bootstrap intervals, seeds resampled (within each stage). A seed that stopped\n"
        "once solved carries its final value forward; a curve ends where a seed stopped without a final evaluation.",
        fontsize=10,
    )
    _save(fig, path)


def performance_profile_plot(profile: pd.DataFrame, path: Path, title: str) -> None:
    """The share of runs x stages whose final success exceeds tau, with its band."""
    fig, axis = plt.subplots(figsize=(6, 4))
    for index, label, rows in _labelled(profile):
        _band(axis, rows["tau"], rows, "share", index, label)
    axis.set_xlabel("tau (final greedy success)")
    axis.set_ylabel("share of runs x stages with success > tau")
    axis.set_ylim(-0.02, 1.02)
    axis.grid(alpha=0.3)
    _legend(axis, fontsize=7, loc="lower left")
    axis.set_title(f"{title}: performance profile\n(95% stratified-bootstrap band)", fontsize=9)
    _save(fig, path)


def survival_plot(survival: pd.DataFrame, path: Path, title: str) -> None:
    """Kaplan-Meier: the share of seeds not yet solved against training episodes, with its band."""
    fig, axis = plt.subplots(figsize=(6, 4))
    for index, label, rows in _labelled(survival):
        _band(axis, rows["episodes"], rows, "unsolved", index, label, step=True)
    axis.set_xlabel("training episodes")
    axis.set_ylabel("share of seeds not yet solved")
    axis.set_ylim(-0.02, 1.02)
    axis.grid(alpha=0.3)
    _legend(axis, fontsize=7, loc="upper right")
    axis.set_title(
        f"{title}: time to solve (all stages >= 0.99)\nKaplan-Meier, seeds never solved censored; 95% bootstrap band",
        fontsize=9,
    )
    _save(fig, path)


def _legend(axis, **options) -> None:
    """A legend where a curve is labelled; none where nothing is (every trial errored: matplotlib
    would warn on the user's console)."""
    if axis.get_legend_handles_labels()[0]:
        axis.legend(**options)


def _save(fig, path: Path) -> None:
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def sensitivity_plot(report: Report, path: Path) -> bool:
    """Final success/min against lr, one line per hidden size (and entropy coefficient)."""
    if "lr" not in report.hyperparameters:
        return False
    summary = report.summary
    line_keys = [h for h in ("hidden_size", "entropy_coef") if h in report.hyperparameters]
    fig, axis = plt.subplots(figsize=(6, 4))
    groups = summary.groupby(line_keys) if line_keys else [((), summary)]
    for index, (key, group) in enumerate(groups):
        group = group.sort_values("lr")
        key = key if isinstance(key, tuple) else (key,)
        label = ", ".join(f"{k}={format_value(v)}" for k, v in zip(line_keys, key)) or "all"
        low = group[f"{SUCCESS_MIN} mean"] - group[f"{SUCCESS_MIN} ci_low"].fillna(group[f"{SUCCESS_MIN} mean"])
        high = group[f"{SUCCESS_MIN} ci_high"].fillna(group[f"{SUCCESS_MIN} mean"]) - group[f"{SUCCESS_MIN} mean"]
        axis.errorbar(
            group["lr"],
            group[f"{SUCCESS_MIN} mean"],
            yerr=[low, high],
            marker="o",
            capsize=3,
            label=label,
            color=f"C{index % 10}",
        )
    axis.set_xscale("log")
    axis.set_xlabel("learning rate")
    axis.set_ylabel(f"final {SUCCESS_MIN} (mean, 95% CI)")
    axis.set_ylim(-0.05, 1.05)
    axis.grid(alpha=0.3)
    _legend(axis, fontsize=7)
    axis.set_title(f"{report.name}: sensitivity")
    _save(fig, path)
    return True


def comparison_plot(labels: list[str], selected: list[pd.Series], path: Path) -> None:
    """Per-stage final success (mean, 95% CI) of each experiment's chosen configuration, as bars."""
    fig, axis = plt.subplots(figsize=(7, 4))
    width = 0.8 / len(labels)
    for index, (label, config) in enumerate(zip(labels, selected)):
        means = [config[c + " mean"] for c in SUCCESS]
        low = [m - (config[c + " ci_low"] if not pd.isna(config[c + " ci_low"]) else m) for m, c in zip(means, SUCCESS)]
        high = [
            (config[c + " ci_high"] if not pd.isna(config[c + " ci_high"]) else m) - m for m, c in zip(means, SUCCESS)
        ]
        axis.bar(np.arange(NUM_STAGES) + index * width, means, width, yerr=[low, high], capsize=3, label=label)
    axis.set_xticks(np.arange(NUM_STAGES) + width * (len(labels) - 1) / 2, [f"stage {s}" for s in range(NUM_STAGES)])
    axis.set_ylabel("final greedy success (mean, 95% CI)")
    axis.set_ylim(0, 1.05)
    _legend(axis)
    _save(fig, path)


def schedule_plot(schedules: pd.DataFrame, path: Path) -> None:
    """pbt: each mutated field's value against updates, one step line per trial."""
    fields = [c for c in schedules.columns if c not in ("pbt_trial", "update")]
    fig, axes = plt.subplots(1, len(fields), figsize=(5 * len(fields), 4), squeeze=False)
    for axis, name in zip(axes[0], fields):
        for trial, rows in schedules.groupby("pbt_trial"):
            rows = rows.dropna(subset=[name])
            axis.step(rows["update"], rows[name], where="post", label=str(trial), marker="o", markersize=3)
        axis.set_xlabel("update")
        axis.set_ylabel(name)
        axis.set_yscale("log" if (schedules[name].dropna() > 0).all() else "linear")
    _legend(axes[0][0], fontsize=7, title="trial")
    _save(fig, path)
