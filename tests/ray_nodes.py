"""A Ray cluster of separate processes on this machine, for tests: a head and worker nodes started
with `ray start`, each with its own temporary folder and ports, token authentication on, and every
process it started found (and killed) by process id, never by `ray stop`, which would stop every
Ray on the machine."""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import time
from pathlib import Path

from processes import kill, process_table

from distributed_agent.slurm import KERNEL_CHOSEN_PORTS, RAY, free_port


class RayNodes:
    """`nodes = RayNodes(tmp_path); nodes.start_head(); nodes.add_worker(cpus=1)`; `nodes.address`."""

    def __init__(self, root: Path):
        self.root = root
        self.token = secrets.token_hex(32)
        self.env = {**os.environ, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": self.token}
        self.env.pop("RAY_ADDRESS", None)
        self.folders: list[Path] = []
        self.node_manager_ports: dict[Path, int] = {}
        self.address = ""

    def _start(self, name: str, *arguments: str) -> Path:
        folder = Path(f"/tmp/da-test-{os.getpid()}-{name}")  # short: Ray's socket paths must fit 107 bytes
        node_manager_port = free_port()  # known, so that node_ids can tell the nodes apart
        self.folders.append(folder)
        self.node_manager_ports[folder] = node_manager_port
        command = [RAY, "start", *arguments, "--node-ip-address=127.0.0.1", f"--temp-dir={folder}"]
        command += ["--disable-usage-stats", f"--node-manager-port={node_manager_port}", *KERNEL_CHOSEN_PORTS]
        log = self.root / f"{name}.log"
        with open(log, "w") as out:
            started = subprocess.run(command, env=self.env, stdout=out, stderr=subprocess.STDOUT, timeout=120)
        if started.returncode:
            raise RuntimeError(f"ray start ({name}) failed: {log.read_text()[-2000:]}")
        return folder

    def start_head(self) -> None:
        port = free_port()
        self._start("head", "--head", f"--port={port}", "--num-cpus=0", "--include-dashboard=false")
        self.address = f"127.0.0.1:{port}"

    def add_worker(self, name: str, cpus: int) -> Path:
        return self._start(name, f"--address={self.address}", f"--num-cpus={cpus}")

    def node_ids(self) -> dict[Path, str]:
        """folder -> Ray node id of each node started here, asked of the cluster by a separate driver."""
        script = (
            "import json, sys, ray; ray.init(address=sys.argv[1], log_to_driver=False); "
            "print(json.dumps({n['NodeManagerPort']: n['NodeID'] for n in ray.nodes()}))"
        )
        command = [sys.executable, "-c", script, self.address]
        out = subprocess.run(command, env=self.env, capture_output=True, text=True, timeout=120)
        by_port = {int(port): node for port, node in json.loads(out.stdout.strip().splitlines()[-1]).items()}
        return {folder: by_port[port] for folder, port in self.node_manager_ports.items()}

    def processes_of(self, folder: Path) -> set[int]:
        """The processes of the node whose temporary folder is `folder`: those naming it, and their
        descendants (its workers)."""
        table = process_table()
        found = {pid for pid, p in table.items() if str(folder) in p.command and pid != os.getpid()}
        grown = True
        while grown:
            children = {pid for pid, p in table.items() if p.parent in found} - found
            found |= children
            grown = bool(children)
        return found

    def kill(self, folder: Path, wait_s: float = 10) -> set[int]:
        """Kill a node as a crash or an out-of-memory kill does: SIGKILL to each of its processes,
        then wait (up to wait_s) until they are gone. A killed process stays in /proc while the
        kernel tears it down (CI once saw one there right after the kill), and one it was starting
        may appear meanwhile: it is killed too. The processes killed."""
        victims, deadline = set(), time.time() + wait_s
        while (alive := self.processes_of(folder)) and time.time() < deadline:
            kill(alive)
            victims |= alive
            time.sleep(0.1)
        return victims

    def stop(self) -> None:
        for folder in self.folders:
            self.kill(folder)
        for folder in self.folders:
            subprocess.run(["rm", "-rf", str(folder)], check=False)
