"""Would torch.compile reach the 4x that the hand-fused update does not? A probe, in one process.

Compiles the straightforward update (nn.GRUCell rollout with the same Gumbel noise, the batched
environment, the loss: one graph, no breaks) with inductor's C++ backend, and times it against the
tutorial's update (the reference of throughput.py) and the project's hand-fused `update.train_step`.
Same config as throughput.py (tutorial environment, hidden 96, one thread). Needs a C compiler.

    python benchmarks/compile_probe.py                 # batch 192
    python benchmarks/compile_probe.py --batch 8 --updates 2 --rounds 1   # smoke test
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from throughput import episodes_per_second
from tutorial_reference import ReferenceUpdate

from distributed_agent.a2c import a2c_loss
from distributed_agent.config import TrainConfig
from distributed_agent.model import Rollout
from distributed_agent.runtime import apply_process_settings
from distributed_agent.state import TrainState, new_run
from distributed_agent.update import train_step


def compiled_update(trainer: TrainState):
    """A train step whose rollout (the readable `ActorCritic.rollout`), scoring and loss run as one torch.compile'd
    graph; batch sampling and the optimiser step as in update.train_step (the tutorial config uses none
    of its optional terms)."""
    model, env, config = trainer.model, trainer.env, trainer.config

    def loss(context, stages, operands, noise):
        rollout = model.rollout(context, stages, env.max_len, noise=noise)
        outcome = env.run(rollout.actions, operands, stages)
        as_population = Rollout(rollout.actions[None], rollout.logits[None], rollout.values[None])
        return a2c_loss(
            as_population,
            outcome.reward[None],
            loss=config.loss,
            entropy_coef=config.entropy_coef,
            value_coef=config.value_coef,
            normalize_advantage=config.normalize_advantage,
        ).total[0]

    compiled_loss = torch.compile(loss, dynamic=False, fullgraph=True)

    def step():
        trainer.update += 1
        stages = trainer.curriculum.batch_stages(trainer.update, config.batch_size, trainer.device)
        operands, context = env.sample(config.batch_size, stages, trainer.generator)
        noise = model.gumbel_noise(env.max_len, config.batch_size, trainer.generator)
        total = compiled_loss(context, stages, operands, noise)
        trainer.optimizer.zero_grad()
        total.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip, foreach=True)
        trainer.optimizer.step()

    return step


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=192)
    parser.add_argument("--updates", type=int, default=40, help="updates per timing round")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    config = TrainConfig(batch_size=args.batch, device="cpu", num_threads=1)
    apply_process_settings(config)
    reference, fused = ReferenceUpdate(args.batch), new_run(config)
    compiled = compiled_update(new_run(config))
    started = time.perf_counter()
    compiled()
    print(
        f"torch {torch.__version__}, batch {args.batch}, one thread; first compiled step (compiling) "
        f"{time.perf_counter() - started:.1f} s; median of {args.rounds} rounds of {args.updates} updates"
    )
    rates = {"reference (tutorial's update)": [], "project, hand-fused": [], "project, torch.compile": []}
    for _ in range(args.rounds):
        for name, step in zip(rates, (reference.step, lambda: train_step([fused]), compiled)):
            rates[name].append(episodes_per_second(step, args.batch, args.updates)[0])
    reference_rate = statistics.median(rates["reference (tutorial's update)"])
    for name, values in rates.items():
        rate = statistics.median(values)
        print(f"{name:32s} {rate:>10,.0f} eps/s {rate / reference_rate:>6.2f}x")


if __name__ == "__main__":
    main()
