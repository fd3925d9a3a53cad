"""Compare two runs of the same study trial by trial: how many trials have bit-identical final
per-stage success and episodes, the seeds solved, and the mean success/min of each.

    # a study's published trials against those of an earlier commit (e.g. the first run)
    python benchmarks/compare_trials.py --before e6cae88 tutorial_search_confirm memory_emergence
    # two trials.csv files (e.g. a report made by an older commit in a git worktree)
    python benchmarks/compare_trials.py --files OLD/trials.csv results/tutorial_search_confirm/trials.csv

Trials are matched by their swept values and seed (the columns between `trial_id` and `seed` in
trials.csv, and the seed). This is how the re-run of 2026-11-24 was compared with the first run (results/*/README.md).
"""

from __future__ import annotations

import argparse
import io
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
COMPARED = ["success/stage0", "success/stage1", "success/stage2", "episodes"]


def compare(before: pd.DataFrame, after: pd.DataFrame) -> str:
    key = [c for c in before.columns[: before.columns.get_loc("seed") + 1] if c != "trial_id"]  # ids differ per run
    before, after = before.sort_values(key).reset_index(drop=True), after.sort_values(key).reset_index(drop=True)
    if len(before) != len(after) or not before[key].equals(after[key]):
        return "different trials (configurations or seeds differ): not comparable"
    same = int((np.abs(before[COMPARED].to_numpy(float) - after[COMPARED].to_numpy(float)) < 1e-9).all(axis=1).sum())
    return (
        f"{same} of {len(after)} trials identical; seeds solved {int(before['solved'].sum())} -> "
        f"{int(after['solved'].sum())}; success/min mean {before['success/min'].mean():.3f} -> "
        f"{after['success/min'].mean():.3f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--before", metavar="GIT_REVISION", help="compare results/NAME/trials.csv with this commit's")
    parser.add_argument("--files", nargs=2, metavar=("BEFORE", "AFTER"), help="compare two trials.csv files")
    parser.add_argument("names", nargs="*", help="studies in results/ (with --before)")
    args = parser.parse_args()
    if args.files:
        before, after = (pd.read_csv(path) for path in args.files)
        print(compare(before, after))
        return
    if not args.before or not args.names:
        parser.error("give --before REVISION NAME... or --files BEFORE AFTER")
    for name in args.names:
        path = f"results/{name}/trials.csv"
        old = subprocess.run(["git", "show", f"{args.before}:{path}"], cwd=ROOT, capture_output=True, text=True)
        if old.returncode:
            print(f"{name}: not in {args.before}")
            continue
        print(f"{name}: {compare(pd.read_csv(io.StringIO(old.stdout)), pd.read_csv(ROOT / path))}")


if __name__ == "__main__":
    main()
