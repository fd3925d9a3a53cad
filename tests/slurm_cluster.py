"""A real Slurm on this machine, for tests: Debian's slurmctld, slurmd and munge (installed with
apt-get where missing and this runs as root), started with their own configuration, key, ports and
folders, so that a Slurm the machine already runs is left alone; stopped by process id."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

from distributed_agent.slurm import free_port

PACKAGES = ["slurmd", "slurmctld", "slurm-client", "munge"]
PROGRAMS = ["slurmctld", "slurmd", "sbatch", "squeue", "scancel", "munged"]


def install_slurm() -> str | None:
    """None once Slurm's programs are here, else why they cannot be."""
    if all(shutil.which(p) for p in PROGRAMS):
        return None
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        return (
            "Slurm is not installed and cannot be (needs root and apt-get: apt-get install " + " ".join(PACKAGES) + ")"
        )
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    done = subprocess.run(["apt-get", "install", "-y", "-q", *PACKAGES], env=env, capture_output=True, text=True)
    if done.returncode or not all(shutil.which(p) for p in PROGRAMS):
        return f"apt-get install {' '.join(PACKAGES)} failed: {done.stderr.strip()[-300:]}"
    return None


class SlurmCluster:
    """One node (this machine, all its CPUs) in one partition; `env` points Slurm's commands at it."""

    def __init__(self, root: Path):
        self.root = root
        self.conf = root / "slurm.conf"
        self.env = {**os.environ, "SLURM_CONF": str(self.conf)}
        self.node = socket.gethostname().split(".")[0]

    def start(self) -> None:
        for folder in ("state", "spool", "log"):
            (self.root / folder).mkdir(parents=True, exist_ok=True)
        key = self.root / "munge.key"
        key.write_bytes(os.urandom(1024))
        key.chmod(0o400)
        self.root.chmod(0o755)  # munge's socket must be reachable
        self._run(
            "munged",
            "--force",
            f"--key-file={key}",
            f"--socket={self.root / 'munge.socket'}",
            f"--pid-file={self.root / 'munged.pid'}",
            f"--log-file={self.root / 'log' / 'munged.log'}",
            f"--seed-file={self.root / 'munged.seed'}",
        )
        self.conf.write_text(
            "\n".join(
                [
                    "ClusterName=datest",
                    f"SlurmctldHost={self.node}",
                    f"SlurmctldPort={free_port()}",
                    f"SlurmdPort={free_port()}",
                    "AuthType=auth/munge",
                    "CredType=cred/munge",
                    f"AuthInfo=socket={self.root / 'munge.socket'}",
                    "SlurmUser=root",
                    "SlurmdUser=root",
                    f"StateSaveLocation={self.root / 'state'}",
                    f"SlurmdSpoolDir={self.root / 'spool'}",
                    f"SlurmctldPidFile={self.root / 'slurmctld.pid'}",
                    f"SlurmdPidFile={self.root / 'slurmd.pid'}",
                    f"SlurmctldLogFile={self.root / 'log' / 'slurmctld.log'}",
                    f"SlurmdLogFile={self.root / 'log' / 'slurmd.log'}",
                    "ProctrackType=proctrack/linuxproc",
                    "TaskPlugin=task/none",
                    "SelectType=select/cons_tres",
                    "SelectTypeParameters=CR_CPU",
                    "ReturnToService=2",
                    "MpiDefault=none",
                    "KillWait=5",
                    "AccountingStorageType=accounting_storage/none",
                    "JobCompType=jobcomp/none",
                    f"NodeName={self.node} CPUs={os.cpu_count()} State=UNKNOWN",
                    f"PartitionName=test Nodes={self.node} Default=YES MaxTime=INFINITE State=UP",
                    "",
                ]
            )
        )
        self._run("slurmctld", "-f", str(self.conf))
        self._run("slurmd", "-f", str(self.conf))
        deadline = time.time() + 60
        while time.time() < deadline:
            state = subprocess.run(["sinfo", "-h", "-o", "%T"], env=self.env, capture_output=True, text=True)
            if state.stdout.strip() == "idle":
                return
            time.sleep(0.5)
        raise RuntimeError(f"the test Slurm did not come up: {self.log('slurmctld')[-1500:]}")

    def _run(self, *command: str) -> None:
        subprocess.run(list(command), env=self.env, check=True, capture_output=True, timeout=60)

    def log(self, name: str) -> str:
        path = self.root / "log" / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def jobs(self) -> list[str]:
        out = subprocess.run(["squeue", "-h", "-o", "%i"], env=self.env, capture_output=True, text=True)
        return out.stdout.split()

    def running(self) -> list[str]:
        out = subprocess.run(
            ["squeue", "-h", "-t", "RUNNING", "-o", "%i"], env=self.env, capture_output=True, text=True
        )
        return out.stdout.split()

    def wait_until_done(self, job: str, timeout: float, output: Path | None = None) -> None:
        """Wait for a job to leave the queue; on timeout the error shows the end of its output file."""
        deadline = time.time() + timeout
        while job in self.jobs():
            if time.time() > deadline:
                raise TimeoutError(
                    f"Slurm job {job} still running after {timeout:g} s; its output ends:\n{_tail(output)}\n"
                    f"and its head's raylet.out:\n{_tail(Path(f'/tmp/da-ray-{job}/session_latest/logs/raylet.out'))}"
                )
            time.sleep(1)

    def stop(self) -> None:
        for job in self.jobs():
            subprocess.run(["scancel", job], env=self.env, capture_output=True)
        for name in ("slurmd", "slurmctld", "munged"):
            pid_file = self.root / f"{name}.pid"
            try:
                os.kill(int(pid_file.read_text().split()[0]), signal.SIGTERM)
            except (OSError, ValueError, IndexError):
                pass


def _tail(path: Path | None) -> str:
    return path.read_text(errors="replace")[-3000:] if path and path.exists() else "(none)"
