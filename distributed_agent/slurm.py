"""A sweep on a Slurm allocation: `distributed-agent slurm SPEC --nodes N --cpus-per-node C` writes
an sbatch script and submits it (`--dry-run` prints it, to read or adapt). The job

- starts Ray on every node of the allocation, one `srun` step per node, the head on the first;
- runs the sweep there as a driver with `--address`, writing to the storage given (a shared file
  system path, or an object-store URI, that every node sees);
- stops Ray and removes its temporary folders at the end.

Ports: the head's port is a free port chosen when the job starts; the ports Ray would take from
fixed defaults (the dashboard agent's 52365, the workers' range 10002-19999) are given as 0, so each
of those processes binds a port the kernel hands it (`distributed-agent ray-node`), and two jobs
sharing a node do not clash. (Ranges the job chose itself could overlap another job's ranges or the
ports its Ray processes take at random, and Ray may wait forever for a worker that cannot bind its
port, ray-project/ray#28071: the suspected cause of a CI run in which one of two jobs sharing a node
never finished.)

Ray's nodes and the driver authenticate with a token made in the job (in the environment of its
processes only, never on disk); Ray has no encryption, so the cluster's network must be private, as
Slurm clusters' are.

A job cancelled (`scancel`) or out of time leaves an interrupted experiment; `--resume` submits a
job that continues it, nothing lost (sweep.py's resume).
"""

from __future__ import annotations

import re
import shlex
import shutil
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from .config import ConfigError
from .spec import load_spec, spec_path
from .storage import open_storage
from .sweep import check_experiment

RAY = str(Path(sys.executable).parent / "ray")  # the `ray` command of this environment
# `ray start` flags for the ports whose defaults are fixed: port 0, the kernel's choice, so that two
# Rays on one machine (two jobs on a node) cannot take the same (see this module's docstring).
KERNEL_CHOSEN_PORTS = ("--dashboard-agent-listen-port=0", "--min-worker-port=0", "--max-worker-port=0")
SLURM_TIME = re.compile(r"^(\d+-)?\d+(:\d+){0,2}$|^\d+-\d+$")  # minutes, MM:SS, HH:MM:SS, D-HH[:MM[:SS]]
SLURM_NAME = re.compile(r"^[A-Za-z0-9_.,-]+$")


@dataclass(frozen=True)
class SlurmJob:
    """What the sbatch script runs, every path absolute (the job may start in another folder)."""

    spec: Path
    name: str
    storage: str
    nodes: int
    cpus_per_node: int
    gpus_per_node: int = 0
    partition: str | None = None
    time: str | None = None
    output: str = ""
    resume: bool = False
    sbatch_options: tuple[str, ...] = field(default_factory=tuple)
    python: str = sys.executable


def plan_job(args) -> SlurmJob:
    """The job of the `slurm` command's flags, checked before anything is submitted: one line naming
    the flag at fault, and nothing started."""
    if args.nodes < 1:
        raise ConfigError(f"--nodes: at least 1 (got {args.nodes})")
    if args.cpus_per_node < 1:
        raise ConfigError(f"--cpus-per-node: at least 1 (got {args.cpus_per_node})")
    if args.gpus_per_node < 0:
        raise ConfigError(f"--gpus-per-node: 0 or more (got {args.gpus_per_node})")
    if args.time is not None and not SLURM_TIME.match(args.time):
        raise ConfigError(f"--time: a Slurm time limit: MINUTES, HH:MM:SS or D-HH:MM:SS (got {args.time!r})")
    if args.partition is not None and not SLURM_NAME.match(args.partition):
        raise ConfigError(f"--partition: a Slurm partition name (letters, digits, _ . , -) (got {args.partition!r})")
    for option in args.sbatch:
        if not option.startswith("--") or "\n" in option:
            raise ConfigError(f"--sbatch: one sbatch option of the form --name[=value] (got {option!r})")
    path = spec_path(args.spec).resolve()
    spec = load_spec(path)
    if spec.gpus_per_trial > 0 and args.gpus_per_node == 0:
        raise ConfigError(
            f"--gpus-per-node: the spec asks for {spec.gpus_per_trial:g} GPU per trial; ask for GPUs per node"
        )
    storage = args.storage if "://" in args.storage else str(Path(args.storage).resolve())
    check_experiment(spec, open_storage(storage), args.resume)
    output = args.output or f"slurm-{spec.name}-%j.out"
    return SlurmJob(
        spec=path,
        name=spec.name,
        storage=storage,
        nodes=args.nodes,
        cpus_per_node=args.cpus_per_node,
        gpus_per_node=args.gpus_per_node,
        partition=args.partition,
        time=args.time,
        output=str(Path(output).resolve()),
        resume=args.resume,
        sbatch_options=tuple(args.sbatch),
    )


def sbatch_script(job: SlurmJob, command_line: str) -> str:
    """The batch script of a job (bash, with #SBATCH directives)."""
    q = shlex.quote
    directives = [
        f"--job-name=da-{job.name}",
        f"--nodes={job.nodes}",
        "--ntasks-per-node=1",
        f"--cpus-per-task={job.cpus_per_node}",
        f"--output={job.output}",
        *([f"--gpus-per-node={job.gpus_per_node}"] if job.gpus_per_node else []),
        *([f"--partition={job.partition}"] if job.partition else []),
        *([f"--time={job.time}"] if job.time else []),
        *job.sbatch_options,
    ]
    resources = f"--cpus {job.cpus_per_node} --gpus {job.gpus_per_node}"
    others = job.nodes - 1
    cleanup = f'srun --nodes={others} --ntasks={others} --exclude="$HEAD" rm -rf "$RAY_TMP"\n' if others else ""
    sweep = (
        f'"$PYTHON" -m distributed_agent sweep {q(str(job.spec))} --address "$HEAD_IP:$PORT" --storage {q(job.storage)}'
    )
    return f"""#!/bin/bash
{chr(10).join(f"#SBATCH {d}" for d in directives)}
# Written by: {command_line}
# A sweep on this allocation: Ray on every node (the head on the first), the sweep's driver here,
# results in the shared storage, Ray stopped at the end. Resume an interrupted job with the same
# command and --resume.
set -uo pipefail
PYTHON={q(job.python)}
# Ray's nodes and the driver authenticate with a token made for this job, kept in its environment.
export RAY_AUTH_MODE=token
RAY_AUTH_TOKEN=$("$PYTHON" -c 'import secrets; print(secrets.token_hex(32))')
export RAY_AUTH_TOKEN
RAY_TMP=/tmp/da-ray-$SLURM_JOB_ID  # each node's Ray folder (logs, sockets), removed at the end
export RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S=0  # a stopped node stops at once (Ray waits 30 s by default)

mapfile -t NODES < <(scontrol show hostnames "$SLURM_JOB_NODELIST")
HEAD=${{NODES[0]}}
# This script runs on the first node; its address as Ray sees it (the interface of the default
# route: `hostname --ip-address` gives 127.0.1.1 where /etc/hosts maps the host name there).
HEAD_IP=$("$PYTHON" -m distributed_agent ray-node --node-ip)
PORT=$("$PYTHON" -m distributed_agent ray-node --free-port)
STEPS=()
stop_ray() {{  # SIGTERM to each node's `ray start --block` (step N of this job): it stops its node's Ray
    for step in "${{!STEPS[@]}}"; do scancel --signal=TERM "$SLURM_JOB_ID.$step" 2>/dev/null; done
    wait "${{STEPS[@]}}" 2>/dev/null
    rm -rf "$RAY_TMP"
}}
trap stop_ray EXIT

srun --nodes=1 --ntasks=1 -w "$HEAD" "$PYTHON" -m distributed_agent ray-node --head --ip "$HEAD_IP" \\
    --port "$PORT" {resources} --temp-dir "$RAY_TMP" &
STEPS+=($!)
for node in "${{NODES[@]:1}}"; do
    srun --nodes=1 --ntasks=1 -w "$node" "$PYTHON" -m distributed_agent ray-node --address "$HEAD_IP:$PORT" \\
        {resources} --temp-dir "$RAY_TMP" &
    STEPS+=($!)
done
"$PYTHON" -m distributed_agent ray-node --wait "$HEAD_IP:$PORT" --nodes {job.nodes} --timeout 300 || exit 1

{sweep}{" --resume" if job.resume else ""}
status=$?
stop_ray
trap - EXIT
{cleanup}exit $status
"""


def submit(script: str) -> str:
    """Submit a batch script (on standard input, so no file is left behind); returns the job id."""
    if shutil.which("sbatch") is None:
        raise ConfigError("slurm: sbatch is not on PATH (run on a Slurm login node, or use --dry-run)")
    done = subprocess.run(["sbatch", "--parsable"], input=script, capture_output=True, text=True)
    if done.returncode:
        raise ConfigError(f"slurm: sbatch refused the job: {done.stderr.strip() or done.stdout.strip()}")
    return done.stdout.strip().split(";")[0]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("", 0))
        return probe.getsockname()[1]


def ray_start_command(args) -> list[str]:
    """`ray start --block` for this node; port 0 (the kernel's choice) for those whose defaults are fixed."""
    command = [RAY, "start", "--block", "--disable-usage-stats"]
    command += [f"--num-cpus={args.cpus}", f"--num-gpus={args.gpus}", f"--temp-dir={args.temp_dir}"]
    command += KERNEL_CHOSEN_PORTS
    if args.head:
        command += ["--head", f"--port={args.port}", f"--node-ip-address={args.ip}", "--include-dashboard=false"]
    else:
        command += [f"--address={args.address}"]
    return command


def wait_for_nodes(address: str, nodes: int, timeout: float) -> None:
    """Return once `nodes` Ray nodes are alive at address (raises ConfigError after timeout)."""
    import ray

    deadline = time.time() + timeout
    while True:
        try:
            ray.init(address=address, log_to_driver=False, logging_level="ERROR")
            try:
                alive = sum(node["Alive"] for node in ray.nodes())
            finally:
                ray.shutdown()
            if alive >= nodes:
                return
        except ConnectionError:
            alive = 0
        if time.time() > deadline:
            raise ConfigError(f"ray-node: {alive} of {nodes} Ray nodes up at {address} after {timeout:g} s")
        time.sleep(2)
