"""Command line: `distributed-agent train | fields | explain | sweep | report`."""

from __future__ import annotations

import argparse
import os
import shlex
import sys
from pathlib import Path

from .config import ConfigError
from .safe_yaml import load_yaml
from .storage import StorageFull, check_writable

DEFAULT_SPEC = "default"


def parse_overrides(pairs: list[str]) -> dict:
    """`--set lr=3e-3 --set loss=masked` -> {'lr': 0.003, 'loss': 'masked'} (values read as YAML)."""
    overrides = {}
    for pair in pairs:
        key, sep, text = pair.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--set: expected key=value with a TrainConfig field as key (got {pair!r})")
        try:
            overrides[key.strip()] = load_yaml(text, f"--set {key.strip()}") if text.strip() else None
        except ConfigError:
            raise ConfigError(f"--set {key.strip()}: value {text!r} does not parse") from None
    return overrides


def format_evaluation(evaluation) -> str:
    success = " ".join(f"{s:.3f}" for s in evaluation.success)
    reward = " ".join(f"{r:.3f}" for r in evaluation.reward)
    return (
        f"update {evaluation.update:5d}  episodes {evaluation.episodes:8d}  stage {evaluation.stage}  "
        f"success {success}  reward {reward}  loss {evaluation.loss:.4f}"
    )


def print_explained(samples: list[dict]) -> None:
    for sample in samples:
        scored = (
            ""
            if sample["target"].endswith(f"= {sample['scored_against']}")
            else f" (scored against {sample['scored_against']})"
        )
        print(
            f"  stage {sample['stage']}  context {sample['context']}  target {sample['target']}{scored}\n"
            f"    tools: {sample['actions']:<40s} answer {sample['answer']}  "
            f"{'correct' if sample['correct'] else 'wrong'}  reward {sample['reward']:.3f}"
        )


def print_final(result) -> None:
    n = result.config.final_eval_episodes
    print(
        f"Final greedy evaluation ({n} episodes per stage; success = share of correct answers, "
        "reward = mean reward with shaping):"
    )
    for stage, (success, reward) in enumerate(zip(result.final_success, result.final_reward)):
        print(f"  stage {stage}: success {success:.3f}  reward {reward:.3f}")
    print(f"Trained {result.updates} updates, {result.episodes} episodes in {result.seconds:.1f} s.")


def command_train(args) -> int:
    from . import checkpoint
    from .runtime import apply_process_settings
    from .spec import load_spec
    from .train import new_run, results, run_updates

    spec = load_spec(args.config)
    config = spec.train.replace(**parse_overrides(args.set)) if args.set else spec.train
    save = Path(args.save) if args.save else None
    if save is not None and save.exists():
        raise ConfigError(f"--save: {str(save)!r} exists; choose a new path (nothing is overwritten)")
    apply_process_settings(config)
    run = new_run(config)
    changed = ", ".join(f"{k}={v}" for k, v in config.changed_fields().items()) or "none"
    print(f"Training {spec.name}, fields other than the defaults: {changed} (all: distributed-agent fields)")
    run_updates([run], callback=lambda members: print(format_evaluation(members[0].history[-1]), flush=True))
    [result] = results([run])
    print("\nExplained greedy samples:")
    print_explained(result.samples)
    print()
    print_final(result)
    if save is not None:
        checkpoint.save([run], save)
        print(f"Checkpoint saved to {save} (see it again with: distributed-agent explain --checkpoint {save})")
    return 0


def command_explain(args) -> int:
    from . import checkpoint
    from .runtime import apply_process_settings
    from .train import results

    members = checkpoint.load(args.checkpoint, device=args.device)
    apply_process_settings(members[0].config)
    for run, result in zip(members, results(members)):
        print(f"Checkpoint {args.checkpoint}, seed {run.config.seed}: update {run.update}, {run.episodes} episodes")
        print("Explained greedy samples:")
        print_explained(result.samples)
        print()
        print_final(result)
    return 0


def command_sweep(args) -> int:
    from .report import build_report, print_summary, write_report
    from .spec import load_spec
    from .sweep import run_sweep

    spec = load_spec(args.spec)
    address = args.address or os.environ.get("RAY_ADDRESS") or None
    path = run_sweep(
        spec,
        storage=args.storage,
        address=address,
        resume=args.resume,
        restart_errored=args.restart_errored,
        verbose=0 if args.quiet else 2 if args.verbose else 1,
        mlflow=args.mlflow,
        wandb=args.wandb,
    )
    resume = f"distributed-agent sweep {args.spec} --storage {args.storage} --resume"
    if "://" in path:  # object storage: no local report; still say whether anything is left
        from .experiment import trials_left
        from .storage import open_storage

        print(f"\nResults in {path}; tables and plots: distributed-agent report {path}")
        left = trials_left(spec, open_storage(args.storage))
        if left:
            print(f"{left} trials unfinished, errored or not started. Continue with: {resume}", file=sys.stderr)
        return 1 if left else 0
    report = build_report(path)
    counts = report.trials["status"].value_counts()
    print(
        f"\nExperiment {spec.name}: "
        + ", ".join(f"{n} {status}" for status, n in counts.items())
        + f" (of {len(report.trials)} runs, one per configuration and seed). Results in {path}"
    )
    print_summary(report)
    written = write_report(report, Path(path) / "report")
    print(f"Report written to {written[0].parent} (TensorBoard: tensorboard --logdir {path})")
    left = int(counts.get("unfinished", 0) + counts.get("not started", 0))
    if left:
        print(f"Interrupted: {left} trials unfinished or not started. Continue with: {resume}", file=sys.stderr)
        return 1
    if counts.get("errored", 0):
        print(
            f"{counts['errored']} trials errored (see the error column of {written[0].parent}/trials.csv); "
            f"retry them with: {resume} [--restart-errored]",
            file=sys.stderr,
        )
        return 1
    return 0


def command_slurm(args) -> int:
    from .slurm import plan_job, sbatch_script, submit

    job = plan_job(args)
    words = [a for a in sys.argv[1:] if a != "--dry-run"]
    script = sbatch_script(job, "distributed-agent " + " ".join(shlex.quote(a) for a in words))
    if args.dry_run:
        print(script, end="")
        return 0
    job_id = submit(script)
    output = job.output.replace("%j", job_id)
    print(f"Submitted Slurm job {job_id}: {job.nodes} node(s) x {job.cpus_per_node} CPUs, sweep {job.name}")
    print(f"  progress: tail -f {output}")
    print(f"  results:  {job.storage}/{job.name} (report: distributed-agent report {job.storage}/{job.name})")
    print(f"  cancel:   scancel {job_id}; continue later with the same command and --resume")
    return 0


def command_ray_node(args) -> int:
    from .slurm import free_port, ray_start_command, wait_for_nodes

    if args.free_port:
        print(free_port())
        return 0
    if args.node_ip:
        from ray.util import get_node_ip_address

        print(get_node_ip_address())
        return 0
    if args.wait:
        wait_for_nodes(args.wait, args.nodes, args.timeout)
        return 0
    if args.head == bool(args.address):
        raise ConfigError("ray-node: give --head (with --port and --ip) or --address HEAD:PORT")
    command = ray_start_command(args)
    os.execv(command[0], command)  # srun's signals reach `ray start --block` itself


def check_report_out(out: Path, overwrite: bool) -> None:
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out: {str(out)!r} is a file; give a folder")
    check_writable(next(p for p in (out, *out.parents) if p.exists()), "--out")
    if ((out / "summary.csv").exists() or (out / "comparison.csv").exists()) and not overwrite:
        raise ConfigError(
            f"--out: {out} already holds a report; pass --overwrite to replace it, or choose another --out"
        )


def command_report(args) -> int:
    from .report import build_report, compare_reports, merge_parts, print_summary, write_report

    folder_labels = args.labels.split(",") if args.labels else [Path(d).name for d in args.run_dirs]
    if len(folder_labels) != len(args.run_dirs):
        raise ConfigError(
            f"--labels: {len(folder_labels)} labels for {len(args.run_dirs)} run folders; give one per folder"
        )
    if args.out:  # checked before any folder is read
        out = Path(args.out)
        check_report_out(out, args.overwrite)
    read = [build_report(run_dir) for run_dir in args.run_dirs]
    if args.labels:  # folders given one label are parts of one experiment
        labels = list(dict.fromkeys(folder_labels))
        reports = [merge_parts([r for r, x in zip(read, folder_labels) if x == label], label) for label in labels]
    else:  # named after their folders, each its own experiment, even where two folders share a name
        labels, reports = folder_labels, read
    if not args.out:  # the default folder is named after what the reports hold
        out = Path("results") / ("_vs_".join(labels) if len(reports) > 1 else reports[0].name)
        check_report_out(out, args.overwrite)
    if len(reports) == 1:
        print_summary(reports[0])
        written = write_report(reports[0], out)
    else:
        written = compare_reports(reports, labels, out, configs=args.config)
        print(written[1].read_text())  # comparison.md: both tables, with what they show
    print("Wrote " + ", ".join(str(p) for p in written))
    return 0


def command_fields(args) -> int:
    """Every TrainConfig field: name, default, what is allowed and what it does (from config.py)."""
    from .config import TrainConfig

    for name, default, text in TrainConfig.field_help():
        print(f"{name:26s} {default:18s} {text}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="distributed-agent", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    train = commands.add_parser("train", help="train one agent from a spec's train: fields")
    train.add_argument("--config", required=True, help="experiment YAML (its train: block is used)")
    train.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE", help="override a TrainConfig field (repeatable)"
    )
    train.add_argument("--save", help="write the trained state here (refuses an existing file)")
    train.set_defaults(run=command_train)

    fields = commands.add_parser("fields", help="list every train: field with its default and allowed values")
    fields.set_defaults(run=command_fields)

    explain = commands.add_parser("explain", help="explained trajectories and final evaluation of a checkpoint")
    explain.add_argument("--checkpoint", required=True)
    explain.add_argument("--device", default="auto", help="auto, cpu, cuda (default auto)")
    explain.set_defaults(run=command_explain)

    sweep = commands.add_parser("sweep", help="run a Ray Tune sweep from an experiment spec")
    sweep.add_argument(
        "spec",
        nargs="?",
        default=DEFAULT_SPEC,
        help=f"experiment YAML, or a packaged spec's name (default: {DEFAULT_SPEC})",
    )
    sweep.add_argument("--address", help="join this Ray cluster (default: $RAY_ADDRESS, else start a local Ray)")
    sweep.add_argument("--storage", default="runs", help="where Tune writes: a path or a URI (default runs/)")
    sweep.add_argument("--resume", action="store_true", help="continue the interrupted experiment of this name")
    sweep.add_argument(
        "--restart-errored",
        action="store_true",
        help="with --resume: restart errored trials from scratch (default: from their checkpoint)",
    )
    sweep.add_argument(
        "--mlflow",
        metavar="PATH_OR_URI",
        help="also track every trial in MLflow: an SQLite file (e.g. runs/mlflow.db) or a tracking URI "
        "(needs the mlflow extra)",
    )
    sweep.add_argument(
        "--wandb",
        metavar="PROJECT",
        help="also track every trial in Weights & Biases, offline (runs under the experiment's folder; "
        "`wandb sync` uploads them; needs the wandb extra)",
    )
    output = sweep.add_mutually_exclusive_group()
    output.add_argument("--verbose", action="store_true", help="Tune's own tables instead of one progress line")
    output.add_argument("--quiet", action="store_true", help="print only the final summary")
    sweep.set_defaults(run=command_sweep)

    slurm = commands.add_parser("slurm", help="run a sweep on a Slurm allocation: write and submit an sbatch script")
    slurm.add_argument("spec", help="experiment YAML, or a packaged spec's name")
    slurm.add_argument("--nodes", type=int, required=True, help="nodes to allocate")
    slurm.add_argument("--cpus-per-node", type=int, required=True, help="CPUs per node (one trial per CPU)")
    slurm.add_argument("--gpus-per-node", type=int, default=0, help="GPUs per node (default 0)")
    slurm.add_argument("--partition", help="Slurm partition (default: the cluster's default)")
    slurm.add_argument("--time", help="time limit: MINUTES, HH:MM:SS or D-HH:MM:SS")
    slurm.add_argument(
        "--storage",
        default="runs",
        help="where the sweep writes, seen by every node: a shared file-system path or a URI (default runs/)",
    )
    slurm.add_argument("--resume", action="store_true", help="continue the experiment of an interrupted job")
    slurm.add_argument("--output", help="the job's log file (default slurm-NAME-%%j.out here; %%j: the job id)")
    slurm.add_argument(
        "--sbatch", action="append", default=[], metavar="--OPTION[=VALUE]", help="another sbatch option (repeatable)"
    )
    slurm.add_argument("--dry-run", action="store_true", help="print the sbatch script instead of submitting it")
    slurm.set_defaults(run=command_slurm)

    node = commands.add_parser("ray-node", help="(used by the Slurm job script) start Ray on this node")
    node.add_argument("--head", action="store_true", help="start the head")
    node.add_argument("--address", help="join the head at HEAD_IP:PORT")
    node.add_argument("--ip", help="the head's IP address")
    node.add_argument("--port", type=int, help="the head's port")
    node.add_argument("--cpus", type=int, default=1)
    node.add_argument("--gpus", type=int, default=0)
    node.add_argument("--temp-dir", help="this node's Ray folder")
    node.add_argument("--free-port", action="store_true", help="print a free port of this node and exit")
    node.add_argument("--node-ip", action="store_true", help="print this node's address as Ray sees it and exit")
    node.add_argument("--wait", metavar="HEAD_IP:PORT", help="wait until --nodes nodes are up there")
    node.add_argument("--nodes", type=int, default=1)
    node.add_argument("--timeout", type=float, default=300)
    node.set_defaults(run=command_ray_node)

    report = commands.add_parser("report", help="tables and plots of one experiment, or a comparison of several")
    report.add_argument(
        "run_dirs", nargs="+", metavar="RUN_DIR", help="experiment folder(s) or storage URI(s), e.g. runs/default"
    )
    report.add_argument("--out", help="output folder (default results/NAME)")
    report.add_argument(
        "--labels",
        help="comma-separated names of the experiments compared, one per folder; folders given the same "
        "label are parts of one experiment (the same spec, other seeds) and are reported as one",
    )
    report.add_argument(
        "--config",
        action="append",
        default=[],
        metavar="LABEL:KEY=VALUE,...",
        help="compare this configuration of an experiment instead of its best one",
    )
    report.add_argument("--overwrite", action="store_true", help="replace a report already in --out")
    report.set_defaults(run=command_report)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.run(args)
    except ConfigError as error:
        print(f"distributed-agent: error: {error}", file=sys.stderr)
        return 2
    except StorageFull as error:
        print(
            f"distributed-agent: storage full: {error}; finished results are kept: free space, then run "
            "the same command with --resume",
            file=sys.stderr,
        )
        return 1
    except KeyboardInterrupt:
        print("distributed-agent: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
