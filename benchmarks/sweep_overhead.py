"""Sweep throughput: 16 short trials on a local Ray against the same 16 trainings run one after
another in this process (one thread each). The ratio of wall times approaches the number of CPUs
when Ray's own costs (start, worker start with its torch import, reporting, checkpoints) are small.
Also prints the resident memory each trial ended with, per worker process (reuse must not grow it).

    python benchmarks/sweep_overhead.py                     # 16 trials on 2 CPUs
    python benchmarks/sweep_overhead.py --trials 2 --updates 10 --eval-every 5 --rounds 1   # smoke test

The machine's speed drifts by 10-30% over minutes, so the sequential run and the sweep alternate
(sequential, sweep, sequential, ...) and each sweep is compared with the mean of the sequential
runs before and after it.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

import torch

from distributed_agent.local_ray import ray_session
from distributed_agent.spec import parse_spec
from distributed_agent.sweep import run_sweep
from distributed_agent.train import train


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trials", type=int, default=16)
    parser.add_argument("--updates", type=int, default=400)
    parser.add_argument("--checkpoint-every", type=int, default=10, help="reports between checkpoints")
    parser.add_argument("--eval-every", type=int, default=10, help="updates between evaluations")
    parser.add_argument("--report-every", type=int, default=1, help="evaluations between reports to Tune")
    parser.add_argument("--rounds", type=int, default=2, help="sweeps, each between two sequential runs")
    parser.add_argument(
        "--gpu",
        type=float,
        default=0.0,
        help="GPU share per trial (0.25: four trials per GPU); the sequential run then trains on CUDA",
    )
    args = parser.parse_args()
    if args.gpu and not torch.cuda.is_available():
        parser.error("--gpu needs a CUDA GPU; none is visible here")
    torch.set_num_threads(1)
    spec = parse_spec(
        {
            "name": "overhead",
            "seeds": args.trials,
            "checkpoint_every": args.checkpoint_every * args.report_every,
            "report_every": args.report_every,
            "resources": {"cpu": 1, "gpu": args.gpu},
            "train": {
                "variant": "tutorial",
                "init": "episode",
                "loss": "masked",
                "curriculum": "mastery",
                "lr": 3e-3,
                "entropy_coef": 0.03,
                "hidden_size": 64,
                "batch_size": 256,
                "updates": args.updates,
                "eval_every": args.eval_every,
                "eval_episodes": 256,
                "device": "cuda" if args.gpu else "cpu",
            },
        }
    )

    def run_sequential():
        started = time.perf_counter()
        results = [train(spec.trial_config(params)) for params in spec.variants()]
        return results, time.perf_counter() - started

    def run_ray_sweep():
        with tempfile.TemporaryDirectory() as storage:
            started = time.perf_counter()
            path = run_sweep(spec, storage=storage, verbose=0)  # starts its own local Ray
            seconds = time.perf_counter() - started
            return [
                [json.loads(line) for line in f.read_text().splitlines()]
                for f in Path(path).glob("trial_*/result.json")
            ], seconds

    started = time.perf_counter()
    with ray_session(None):  # the same private local Ray that run_sweep starts
        ray_start_s = time.perf_counter() - started
    sequential, sequential_times, sweep_times = None, [], []
    for _ in range(args.rounds):
        sequential, seconds = run_sequential()
        sequential_times.append(seconds)
        lines, seconds = run_ray_sweep()
        sweep_times.append(seconds)
    sequential_times.append(run_sequential()[1])
    ratios = [
        (before + after) / 2 / sweep
        for before, after, sweep in zip(sequential_times, sequential_times[1:], sweep_times)
    ]
    sequential_s, sweep_s = statistics.mean(sequential_times), statistics.mean(sweep_times)

    by_seed = {trial[-1]["seed"]: trial[-1] for trial in lines}
    same = all([by_seed[r.config.seed][f"success/stage{s}"] for s in range(3)] == r.final_success for r in sequential)
    train_s = sum(trial[-1]["seconds"] for trial in lines)
    print(
        f"{args.trials} trials of {args.updates} updates, a report every {args.eval_every * args.report_every}, "
        f"{os.cpu_count()} CPUs, {args.gpu:g} GPU per trial; "
        f"identical numbers: {same}"
    )
    print(f"{'':34s} {'wall s':>8}")
    print(
        f"{'one process, one after another':34s} {sequential_s:8.1f}   "
        f"(each run: {' '.join(f'{s:.1f}' for s in sequential_times)})"
    )
    print(
        f"{'Ray Tune sweep (Ray start incl.)':34s} {sweep_s:8.1f}   "
        f"(each run: {' '.join(f'{s:.1f}' for s in sweep_times)}; Ray start alone {ray_start_s:.1f} s)"
    )
    print(
        f"ratio (sequential / sweep): {statistics.median(ratios):.2f}x median of "
        f"{' '.join(f'{r:.2f}' for r in ratios)}   (ideal {os.cpu_count()}x)"
    )
    print(
        f"last sweep: training inside trials {train_s:.1f} s of {sweep_times[-1] * os.cpu_count():.1f} CPU-s held; "
        f"the sequential run before it: {sum(r.seconds for r in sequential):.1f} s of training"
    )
    in_trial = [trial[-1]["time_total_s"] - trial[-1]["seconds"] for trial in lines]
    print(
        f"per trial: {sum(in_trial) / len(in_trial):.2f} s inside the trial beyond training and evaluation "
        "(reports, checkpoints, the final evaluation)"
    )
    workers = {}
    for trial in lines:
        started_at = trial[0]["timestamp"] - trial[0]["time_total_s"]
        workers.setdefault(trial[-1]["pid"], []).append((started_at, trial[-1]["timestamp"], trial[-1]["rss_mib"]))
    for pid, runs in workers.items():
        runs.sort()
        gaps = [later[0] - earlier[1] for earlier, later in zip(runs, runs[1:])]
        if gaps:
            print(f"worker {pid}: {sum(gaps) / len(gaps):.2f} s between the end of a trial and the start of the next")
        rss = [f"{r:.0f}" for _, _, r in runs]
        print(f"worker {pid}: resident MiB at the end of each of its {len(runs)} trials: {' '.join(rss)}")


if __name__ == "__main__":
    main()
