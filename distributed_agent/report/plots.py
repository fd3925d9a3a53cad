"""Plots: learning curves of the best configurations, sensitivity to the learning rate, and a
comparison of experiments. Files only (the Agg backend, chosen once, here)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING

import matplotlib
import numpy as np
import pandas as pd

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (after the backend is chosen)

from ..env import NUM_STAGES  # noqa: E402
from ..metrics import SUCCESS, SUCCESS_MIN  # noqa: E402
from .tables import format_config, format_value  # noqa: E402

if TYPE_CHECKING:
    from .reading import Report


def learning_curves_plot(report: Report, path: Path, top: int = 3) -> None:
    hyper = report.hyperparameters
    best = report.summary.head(top)
    fig, axes = plt.subplots(1, NUM_STAGES, figsize=(5 * NUM_STAGES, 4), sharey=True)
    curves = report.curves  # the last point of a finished trial is its final (larger) evaluation
    for index, (_, config) in enumerate(best.iterrows()):
        mask = np.ones(len(curves), bool)
        for h in hyper:
            mask &= (curves[h] == config[h]).to_numpy()
        group = curves[mask]
        if group.empty:
            continue
        grid = np.unique(group["episodes"].to_numpy(float))
        for stage, column in enumerate(SUCCESS):
            # Trials that stopped once solved keep their last value (forward fill) on the common grid.
            per_seed = [
                np.interp(grid, t["episodes"], t[column], right=t[column].iloc[-1])
                for _, t in group.groupby("trial_id")
            ]
            per_seed = np.array(per_seed)
            mean = per_seed.mean(0)
            half = 1.96 * per_seed.std(0, ddof=1) / math.sqrt(len(per_seed)) if len(per_seed) > 1 else 0 * mean
            label = format_config(config, hyper) + f" (n={len(per_seed)})"
            axes[stage].plot(grid, mean, label=label, color=f"C{index}")
            axes[stage].fill_between(
                grid, np.clip(mean - half, 0, 1), np.clip(mean + half, 0, 1), color=f"C{index}", alpha=0.2
            )
    for stage, axis in enumerate(axes):
        axis.set_title(f"stage {stage}")
        axis.set_xlabel("training episodes")
        axis.grid(alpha=0.3)
    axes[0].set_ylabel("greedy success (mean over seeds, 95% band)")
    axes[0].legend(fontsize=7, loc="lower right")
    fig.suptitle(f"{report.name}: learning curves of the best configurations")
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
    axis.legend(fontsize=7)
    axis.set_title(f"{report.name}: sensitivity")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
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
    axis.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


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
    axes[0][0].legend(fontsize=7, title="trial")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
