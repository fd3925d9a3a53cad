"""Command line: `distributed-agent train | explain | sweep | report`."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import yaml

from .config import ConfigError, TrainConfig

DEFAULT_SPEC = "experiments/default.yaml"


def parse_overrides(pairs: list[str]) -> dict:
    """`--set lr=3e-3 --set loss=masked` -> {'lr': 0.003, 'loss': 'masked'} (values read as YAML)."""
    overrides = {}
    for pair in pairs:
        key, sep, text = pair.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--set: expected key=value with a TrainConfig field as key (got {pair!r})")
        try:
            overrides[key.strip()] = yaml.safe_load(text) if text.strip() else None
        except yaml.YAMLError:
            raise ConfigError(f"--set {key.strip()}: value {text!r} does not parse")
    return overrides


def format_evaluation(evaluation) -> str:
    success = " ".join(f"{s:.3f}" for s in evaluation.success)
    reward = " ".join(f"{r:.3f}" for r in evaluation.reward)
    return (f"update {evaluation.update:5d}  episodes {evaluation.episodes:8d}  stage {evaluation.stage}  "
            f"success {success}  reward {reward}  loss {evaluation.loss:.4f}")


def print_explained(samples: list[dict]) -> None:
    for sample in samples:
        scored = "" if sample["target"].endswith(f"= {sample['scored_against']}") else \
            f" (scored against {sample['scored_against']})"
        print(f"  stage {sample['stage']}  context {sample['context']}  target {sample['target']}{scored}\n"
              f"    tools: {sample['actions']:<40s} answer {sample['answer']}  "
              f"{'correct' if sample['correct'] else 'wrong'}  reward {sample['reward']:.3f}")


def print_final(result) -> None:
    n = result.config.final_eval_episodes
    print(f"Final greedy evaluation ({n} episodes per stage; success = share of correct answers, "
          "reward = mean reward with shaping):")
    for stage, (success, reward) in enumerate(zip(result.final_success, result.final_reward)):
        print(f"  stage {stage}: success {success:.3f}  reward {reward:.3f}")
    print(f"Trained {result.updates} updates, {result.episodes} episodes in {result.seconds:.1f} s.")


def command_train(args) -> int:
    from .spec import load_spec
    from .train import Trainer

    spec = load_spec(args.config)
    config = spec.train.replace(**parse_overrides(args.set)) if args.set else spec.train
    save = Path(args.save) if args.save else None
    if save is not None and save.exists():
        raise ConfigError(f"--save: {str(save)!r} exists; choose a new path (nothing is overwritten)")
    trainer = Trainer(config)
    print(f"Training {spec.name}: " + ", ".join(f"{k}={v}" for k, v in config.to_dict().items()))
    trainer.run(callback=lambda evaluation, _: print(format_evaluation(evaluation), flush=True))
    result = trainer.result()
    print("\nExplained greedy samples:")
    print_explained(result.samples)
    print()
    print_final(result)
    if save is not None:
        trainer.save(save)
        print(f"Checkpoint saved to {save} (see it again with: distributed-agent explain --checkpoint {save})")
    return 0


def command_explain(args) -> int:
    from .train import Trainer

    trainer = Trainer.from_checkpoint(args.checkpoint, device=args.device)
    result = trainer.result()
    print(f"Checkpoint {args.checkpoint}: update {trainer.update}, {trainer.episodes} episodes")
    print("Explained greedy samples:")
    print_explained(result.samples)
    print()
    print_final(result)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="distributed-agent", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    train = commands.add_parser("train", help="train one agent from a spec's train: fields")
    train.add_argument("--config", required=True, help="experiment YAML (its train: block is used)")
    train.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                       help="override a TrainConfig field (repeatable)")
    train.add_argument("--save", help="write the trained state here (refuses an existing file)")
    train.set_defaults(run=command_train)

    explain = commands.add_parser("explain", help="explained trajectories and final evaluation of a checkpoint")
    explain.add_argument("--checkpoint", required=True)
    explain.add_argument("--device", default="auto", help="auto, cpu, cuda (default auto)")
    explain.set_defaults(run=command_explain)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.run(args)
    except ConfigError as error:
        print(f"distributed-agent: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("distributed-agent: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
