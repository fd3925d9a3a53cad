"""Training speed beside the peers: our update against Stable-Baselines3 PPO, A2C and sb3-contrib
RecurrentPPO on the same environment, in one process, on one CPU thread (episodes per second per core).

Ours: `update.train_step` on one batch of `--batch` episodes (the config of the published tutorial
recipe: tutorial environment, init episode, masked loss, width `--hidden`). The peers: one SB3
rollout of `--envs` environments x n_steps, then SB3's own update on it (`learn` of one rollout),
on the Gymnasium vector environment backed by the same torch scoring (gym_env.py), with the width
`--hidden` for their MLP (two layers) or LSTM; n_steps is SB3's default unless `--n-steps`. An
episode is one task: ours always emits 6 tokens; the peers' episodes end at ANS, so untrained
policies' episodes are shorter (steps per episode is printed beside). Rounds alternate between the
agents so that machine noise hits them alike; the median round is printed.

    python benchmarks/peers.py
    python benchmarks/peers.py --rounds 1 --seconds 0.5      # smoke test
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from distributed_agent.config import TrainConfig
from distributed_agent.runtime import apply_process_settings
from distributed_agent.state import new_run
from distributed_agent.update import train_step

PEERS = ("ppo", "a2c", "recurrent_ppo")


def ours(batch: int, hidden: int):
    """A step function and the episodes it trains per call."""
    config = TrainConfig(variant="shifted", init="episode", loss="masked", hidden_size=hidden, batch_size=batch)
    apply_process_settings(config)
    run = new_run(config)
    return lambda: (train_step([run]), batch)[1], lambda: batch * 6


def peer(agent: str, envs: int, hidden: int, n_steps: int | None):
    from distributed_agent import baselines

    config = TrainConfig(agent=agent, parallel_envs=envs, hidden_size=hidden, rollout_steps=n_steps)
    run = baselines.new_run(config)

    def step():
        before = run.vector.episodes_finished
        with baselines.own_random_streams(run):
            run.model.learn(baselines.rollout_steps(run), reset_num_timesteps=False, log_interval=None)
        return run.vector.episodes_finished - before

    return step, lambda: baselines.rollout_steps(run)


def rate(step, steps_of, seconds: float) -> tuple[float, float]:
    """(episodes per second, steps per episode) of calls to `step` for at least `seconds`."""
    step()  # warm-up
    episodes = tokens = 0
    started = time.perf_counter()
    while time.perf_counter() - started < seconds:
        episodes += step()
        tokens += steps_of()
    return episodes / (time.perf_counter() - started), tokens / max(episodes, 1)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=256, help="our episodes per update")
    parser.add_argument("--envs", type=int, default=16, help="the peers' parallel environments")
    parser.add_argument("--n-steps", type=int, default=None, help="the peers' rollout steps (default: SB3's)")
    parser.add_argument("--hidden", type=int, default=64)
    parser.add_argument("--seconds", type=float, default=5.0, help="per agent per round")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(1)
    agents = {"ours": ours(args.batch, args.hidden)}
    agents.update({name: peer(name, args.envs, args.hidden, args.n_steps) for name in PEERS})
    measured = {name: [] for name in agents}
    for _ in range(args.rounds):
        for name, (step, steps_of) in agents.items():
            measured[name].append(rate(step, steps_of, args.seconds))
    print(
        f"torch {torch.__version__}, 1 thread; ours: batch {args.batch}; peers: {args.envs} envs, "
        f"n_steps {args.n_steps or 'SB3 default'}; width {args.hidden}; "
        f"median of {args.rounds} rounds of {args.seconds} s"
    )
    print(f"{'agent':>14} {'episodes/s/core':>16} {'steps/episode':>14} {'ours / agent':>13}")
    ours_rate = statistics.median(r for r, _ in measured["ours"])
    for name, rows in measured.items():
        episodes = statistics.median(r for r, _ in rows)
        steps = statistics.median(s for _, s in rows)
        print(f"{name:>14} {episodes:>16,.0f} {steps:>14.2f} {ours_rate / episodes:>12.2f}x")


if __name__ == "__main__":
    main()
