"""How a population is best cut: milliseconds per update of K members for pairs (members per batched
step, members per time loop of the fused rollout), interleaved update by update in one process, so
that machine noise (a neighbour's load, frequency changes) hits every pair alike. Separate runs of
benchmarks/population.py on a shared machine move by more than the differences measured here.

A batched step shares its Python dispatch among its members (TrainConfig.members_per_step); within
it, on the CPU, the rollout's time loops step fused_rollout.CPU_LOOP_MEMBERS members at a time to
stay in a core's cache. Every pair gives the same numbers (tests/test_population.py).

    python benchmarks/population_chunks.py                                   # K 16, batch 192, hidden 96
    python benchmarks/population_chunks.py --members 64 --batch 256 --pairs 4/4 16/4 16/16 64/4
    python benchmarks/population_chunks.py --members 4 --batch 8 --hidden 8 --rounds 2   # smoke test
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from distributed_agent import fused_rollout
from distributed_agent.config import TrainConfig
from distributed_agent.runtime import apply_process_settings
from distributed_agent.state import new_population
from distributed_agent.update import train_step


def pair(text: str) -> tuple[int, int]:
    step, _, loop = text.partition("/")
    try:
        return int(step), int(loop)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--pairs: STEP/LOOP member counts, e.g. 16/4 (got {text!r})") from None


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--members", type=int, default=16)
    parser.add_argument("--batch", type=int, default=192)
    parser.add_argument("--hidden", type=int, default=96)
    parser.add_argument("--rounds", type=int, default=30, help="updates timed per pair, interleaved")
    parser.add_argument("--pairs", type=pair, nargs="+", default=[pair(p) for p in ("4/4", "16/16", "16/4")])
    args = parser.parse_args()
    config = TrainConfig(batch_size=args.batch, hidden_size=args.hidden, device="cpu", num_threads=1)
    apply_process_settings(config)
    population = new_population(config, list(range(args.members)))

    def update(step: int, loop: int) -> None:
        fused_rollout.CPU_LOOP_MEMBERS = loop
        for start in range(0, args.members, step):
            train_step(population[start : start + step])

    for step, loop in args.pairs:  # warm-up
        update(step, loop)
    timings = {p: [] for p in args.pairs}
    for _ in range(args.rounds):
        for step, loop in args.pairs:
            started = time.perf_counter()
            update(step, loop)
            timings[step, loop].append(1000 * (time.perf_counter() - started))
    print(
        f"torch {torch.__version__}, 1 CPU thread; K {args.members}, batch {args.batch}, hidden {args.hidden}; "
        f"{args.rounds} updates per pair, interleaved; ms per update of all K members"
    )
    print(f"{'step':>5} {'loop':>5} {'median':>8} {'min':>8}")
    for (step, loop), values in timings.items():
        print(f"{step:>5} {loop:>5} {statistics.median(values):>8.1f} {min(values):>8.1f}")


if __name__ == "__main__":
    main()
