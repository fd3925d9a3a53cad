"""Population throughput: episodes per second per core of K seeds trained as one population
(update.train_step on K members), against the tutorial's own update measured in the same run.

The reference is the tutorial's update (benchmarks/tutorial_reference.py: per-episode Python
operands and scoring, `nn.GRU` step by step, `Categorical` sampling) at the same batch and hidden
size, one CPU thread. The project trains the tutorial's config (TrainConfig defaults) with the
given batch and hidden size, K members, on --device with --threads threads, stepped as training
steps them (train.step: members_per_step members per batched step); "per core" divides by the
threads used. Rounds alternate between the two sides so that machine noise hits both.

    python benchmarks/population.py                        # K 1 4 16 64, batch 192 256, hidden 64 96
    python benchmarks/population.py --device cuda --members 64 1024 --batches 192 --hiddens 96
    python benchmarks/population.py --members 1 8 16 --batches 192 --hiddens 96 --phases
    python benchmarks/population.py --members 16 --batches 192 --hiddens 96 --torch-cell  # without gru_kernels
    python benchmarks/population.py --members 8 --batches 192 --hiddens 96 --rounds 1 --profile
    python benchmarks/population.py --members 1 2 --batches 8 --hiddens 8 --updates 2 --rounds 1  # smoke
"""

from __future__ import annotations

import argparse
import functools
import statistics
import time

import torch
from tutorial_reference import ReferenceUpdate

from distributed_agent import gru_kernels
from distributed_agent.config import TrainConfig
from distributed_agent.model import StackedWeights, population_forward
from distributed_agent.runtime import apply_process_settings
from distributed_agent.state import new_population
from distributed_agent.train import step
from distributed_agent.update import train_step


def episodes_per_second(step, episodes_per_step: int, steps: int, synchronize=lambda: None) -> float:
    step()  # warm-up
    synchronize()
    started = time.perf_counter()
    for _ in range(steps):
        step()
    synchronize()
    return episodes_per_step * steps / (time.perf_counter() - started)


def phases(population: list, updates: int) -> tuple[float, float, float]:
    """ms per member: the whole update, the fused rollout forward, and its forward and backward
    (on one fixed batch), the rest being sampling, scoring, loss, clipping and Adam."""
    env, batch, members = population[0].env, population[0].config.batch_size, len(population)
    stages = torch.zeros(members, batch, dtype=torch.long)
    contexts = [env.sample(batch, stages[k], run.generator)[1] for k, run in enumerate(population)]
    noise = torch.stack([run.model.gumbel_noise(env.max_len, batch, run.generator) for run in population])

    def forward():
        weights = StackedWeights.of([run.model for run in population])
        return population_forward(weights, contexts, stages, env.max_len, noise=noise)

    def forward_backward():
        rollout = forward()
        (rollout.logits.logsumexp(-1).sum() + rollout.values.sum()).backward()

    timings = []
    for work in (functools.partial(train_step, population), forward, forward_backward):
        work()
        started = time.perf_counter()
        for _ in range(updates):
            work()
        timings.append(1000 * (time.perf_counter() - started) / updates / members)
    return tuple(timings)


def profile(population: list, updates: int) -> None:
    """torch.profiler over `updates` batched steps of all K members: the costliest operations by
    input shape, each in us per member-update, and the rate of the batched matrix products."""
    from torch.profiler import profile as torch_profile

    train_step(population)
    with torch_profile(record_shapes=True) as profiled:
        for _ in range(updates):
            train_step(population)
    events = sorted(profiled.key_averages(group_by_input_shape=True), key=lambda e: -e.self_cpu_time_total)
    per_member = updates * len(population)
    print(f"{'':>20} costliest operations, us per member-update (self time), by input shapes:")
    for event in events[:12]:
        shapes = [s for s in event.input_shapes if s]
        rate = ""
        if event.key in ("aten::bmm", "aten::baddbmm") and len(shapes) >= 2:
            *_, left, right = shapes[:3] if event.key == "aten::baddbmm" else shapes[:2]
            flops = 2 * left[0] * left[1] * left[2] * right[2] * event.count
            rate = f"  {flops / (event.self_cpu_time_total * 1e-6) / 1e9:.0f} GFLOP/s"
        print(
            f"{'':>22}{event.key:<18} {event.self_cpu_time_total / per_member:8.0f} us  "
            f"({event.count} calls, {event.self_cpu_time_total / event.count:7.0f} us each) {shapes}{rate}"
        )


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--members", type=int, nargs="+", default=[1, 4, 16, 64])
    parser.add_argument("--batches", type=int, nargs="+", default=[192, 256])
    parser.add_argument("--hiddens", type=int, nargs="+", default=[64, 96])
    parser.add_argument("--updates", type=int, default=10, help="updates per timing round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--device", default="cpu", help="device of the project's side (the reference is CPU)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--phases", action="store_true", help="also print where a member's update time goes")
    parser.add_argument("--profile", action="store_true", help="also print the costliest operations (torch.profiler)")
    parser.add_argument(
        "--members-per-step",
        default=str(TrainConfig.members_per_step),
        help="TrainConfig.members_per_step (default: its default): a count, or 'all' (one batched step)",
    )
    parser.add_argument(
        "--torch-cell", action="store_true", help="the GRU cell as torch operations, not the CPU kernels (gru_kernels)"
    )
    args = parser.parse_args()
    gru_kernels.enabled = not args.torch_cell
    torch.set_num_threads(args.threads)
    synchronize = torch.cuda.synchronize if args.device.startswith("cuda") else (lambda: None)
    print(
        f"torch {torch.__version__}, project on {args.device} with {args.threads} thread(s), reference on 1 CPU "
        f"thread; median of {args.rounds} rounds of {args.updates} updates; episodes per second per core; "
        f"members_per_step {args.members_per_step}; GRU cell: {'torch ops' if args.torch_cell else 'CPU kernels'}"
    )
    print(f"{'batch':>6} {'hidden':>6} {'K':>5} {'reference':>10} {'population':>11} {'ratio':>7} {'ms/update':>10}")
    for batch in args.batches:
        for hidden in args.hiddens:
            reference = ReferenceUpdate(batch, hidden=hidden)
            config = TrainConfig(
                batch_size=batch,
                hidden_size=hidden,
                device=args.device,
                num_threads=args.threads,
                members_per_step=None if args.members_per_step == "all" else int(args.members_per_step),
            )
            apply_process_settings(config)
            for members in args.members:
                population = new_population(config, list(range(members)))
                ref_rates, rates = [], []
                for _ in range(args.rounds):
                    torch.set_num_threads(1)
                    ref_rates.append(episodes_per_second(reference.step, batch, args.updates))
                    torch.set_num_threads(args.threads)
                    update = functools.partial(step, population)
                    rate = episodes_per_second(update, members * batch, args.updates, synchronize)
                    rates.append(rate / args.threads)
                ref, rate = statistics.median(ref_rates), statistics.median(rates)
                milliseconds = 1000 * members * batch / (rate * args.threads)
                print(
                    f"{batch:>6} {hidden:>6} {members:>5} {ref:>10,.0f} {rate:>11,.0f} "
                    f"{rate / ref:>6.2f}x {milliseconds:>10.1f}"
                )
                if args.profile:
                    profile(population, args.updates)
                if args.phases:  # one batched step of all K members (train_step), ms per member
                    whole, forward, forward_backward = phases(population, args.updates)
                    print(
                        f"{'':>20} per member, one step of K: update {whole:.2f} ms = rollout forward "
                        f"{forward:.2f} + its backward {forward_backward - forward:.2f} + the rest "
                        f"{whole - forward_backward:.2f}"
                    )


if __name__ == "__main__":
    main()
