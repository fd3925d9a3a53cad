"""Training throughput: the project's A2C update against the tutorial's own, in one process.

The reference is the tutorial's update written from SPEC.md: operands drawn per episode in Python,
a padded batch built row by row, `nn.GRU` called with sequence length 1 at every step,
`torch.distributions.Categorical` sampling, per-episode Python scoring, its loss, Adam and clipping.
The project runs `update.train_step` on the tutorial's config (tutorial environment, init and
loss, hidden 96). Both on one CPU thread (or --device cuda for the project's side); rounds alternate
so that machine noise hits both alike. Prints episodes per second and the ratio.

    python benchmarks/throughput.py                      # batch 192 and 1024
    python benchmarks/throughput.py --batches 8 --updates 3 --rounds 1   # smoke test
"""

from __future__ import annotations

import argparse
import functools
import resource
import statistics
import time

import torch
from tutorial_reference import ReferenceUpdate

from distributed_agent.config import TrainConfig
from distributed_agent.runtime import apply_process_settings
from distributed_agent.state import new_run
from distributed_agent.update import train_step

# ---- measurement -----------------------------------------------------------------------------


def episodes_per_second(step, batch, updates):
    """(episodes per second, minor page faults per update)."""
    step()  # warm-up
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    started = time.perf_counter()
    for _ in range(updates):
        step()
    seconds = time.perf_counter() - started
    return batch * updates / seconds, (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults) / updates


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batches", type=int, nargs="+", default=[192, 1024])
    parser.add_argument("--updates", type=int, default=40, help="updates per timing round")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--device", default="cpu", help="device of the project's side (the reference is CPU)")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(
        f"torch {torch.__version__}, {args.threads} thread(s), project on {args.device}; "
        f"median of {args.rounds} rounds of {args.updates} updates"
    )
    print("allocator: apply_process_settings() is process-wide, so the reference runs under it too")
    print(
        f"{'batch':>6} {'reference eps/s':>16} {'project eps/s':>14} {'ratio':>7} "
        f"{'page faults/update ref, project':>32}"
    )
    for batch in args.batches:
        reference = ReferenceUpdate(batch)
        config = TrainConfig(batch_size=batch, device=args.device, num_threads=args.threads)
        apply_process_settings(config)
        run = new_run(config)
        ref_runs, project_runs = [], []
        for _ in range(args.rounds):
            ref_runs.append(episodes_per_second(reference.step, batch, args.updates))
            project_runs.append(episodes_per_second(functools.partial(train_step, [run]), batch, args.updates))
        ref, ref_faults = (statistics.median(column) for column in zip(*ref_runs))
        project, project_faults = (statistics.median(column) for column in zip(*project_runs))
        print(
            f"{batch:>6} {ref:>16,.0f} {project:>14,.0f} {project / ref:>6.2f}x "
            f"{ref_faults:>21,.0f} {project_faults:>10,.0f}"
        )
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak resident memory of this process: {peak_mib:,.0f} MiB")


if __name__ == "__main__":
    main()
