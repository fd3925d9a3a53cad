"""How often does the tutorial, transcribed independently of the package (tutorial_reference.py),
learn each stage? 60 updates of 192 on the tutorial's stage list, then greedy success on 1,000
episodes per stage, for each seed. A cross-check of results/tutorial_reproduction.

    python benchmarks/tutorial_transcription_seeds.py --seeds 20
"""

import argparse

import torch
from tutorial_reference import ReferenceUpdate

from distributed_agent.curriculum import tutorial_stage


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=20)
    parser.add_argument("--updates", type=int, default=60)
    args = parser.parse_args()
    torch.set_num_threads(1)
    learnt = [0, 0, 0]
    for seed in range(args.seeds):
        run = ReferenceUpdate(192, seed=seed)
        for update in range(1, args.updates + 1):
            run.step(tutorial_stage(update))
        success = [run.greedy_success(stage) for stage in range(3)]
        learnt = [n + (s >= 0.99) for n, s in zip(learnt, success)]
        print(f"seed {seed:3d}: greedy success " + " ".join(f"{s:.3f}" for s in success))
    print(f"seeds with >= 0.99 greedy success, per stage: {learnt} of {args.seeds}")


if __name__ == "__main__":
    main()
