"""The allocator setting of the entry points (`runtime.keep_freed_memory`) on and off: training updates timed in
fresh processes, alternating off, on, off, on, ... (the setting is process-wide and cannot be undone
within a process). Prints milliseconds and minor page faults per update, each run and the medians.

    python benchmarks/allocator_ab.py                                         # tutorial config, batch 192
    python benchmarks/allocator_ab.py --spec experiments/memory_without_shaping.yaml   # a study's config
    python benchmarks/allocator_ab.py --rounds 1 --updates 3                  # smoke test
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time


def measure(setting: str, spec_path: str | None, batch: int, updates: int) -> dict:
    """In this process: `updates` training updates after a warm-up, with the setting on or off."""
    import torch

    from distributed_agent import runtime
    from distributed_agent.config import TrainConfig
    from distributed_agent.spec import load_spec
    from distributed_agent.state import new_run
    from distributed_agent.update import train_step

    if setting == "on":
        runtime.keep_freed_memory()
    if spec_path:
        spec = load_spec(spec_path)
        config = spec.trial_config(spec.variants()[0]).replace(device="cpu", num_threads=1)
    else:
        config = TrainConfig(batch_size=batch, device="cpu", num_threads=1)
    torch.set_num_threads(1)
    run = new_run(config)
    for _ in range(20):
        train_step([run])
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    started = time.perf_counter()
    for _ in range(updates):
        train_step([run])
    seconds = time.perf_counter() - started
    return {
        "batch": config.batch_size,
        "ms": seconds / updates * 1e3,
        "faults": (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults) / updates,
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--spec", help="an experiment spec: its first trial's config (default: tutorial config)")
    parser.add_argument("--batch", type=int, default=192, help="batch size of the tutorial config")
    parser.add_argument("--updates", type=int, default=200, help="timed updates per process")
    parser.add_argument("--rounds", type=int, default=3, help="pairs of processes (off, on)")
    parser.add_argument("--child", choices=["off", "on"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure(args.child, args.spec, args.batch, args.updates)))
        return
    runs = {"off": [], "on": []}
    for _ in range(args.rounds):
        for setting in runs:
            command = [
                sys.executable,
                __file__,
                "--child",
                setting,
                "--batch",
                str(args.batch),
                "--updates",
                str(args.updates),
            ] + (["--spec", args.spec] if args.spec else [])
            done = subprocess.run(command, capture_output=True, text=True, check=True)
            runs[setting].append(json.loads(done.stdout.splitlines()[-1]))
    print(
        f"config: {args.spec or 'tutorial'}, batch {runs['on'][0]['batch']}, one thread, "
        f"{args.updates} updates per process"
    )
    for setting, results in runs.items():
        ms = [r["ms"] for r in results]
        faults = [r["faults"] for r in results]
        print(
            f"keep_freed_memory {setting:3s}: ms/update {' '.join(f'{m:.2f}' for m in ms)} "
            f"(median {statistics.median(ms):.2f}); page faults/update median {statistics.median(faults):,.1f}"
        )
    off, on = (statistics.median(r["ms"] for r in runs[s]) for s in ("off", "on"))
    print(f"speed-up with the setting: {off / on:.2f}x")


if __name__ == "__main__":
    main()
