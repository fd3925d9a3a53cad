"""This machine's processes as the tests see them (Linux /proc): to find what a test started, by
the folder its command line names or the session it runs in, and to kill it by process id."""

from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import NamedTuple


class Process(NamedTuple):
    parent: int
    session: int
    command: str


def process_table() -> dict[int, Process]:
    """pid -> (parent pid, session id, command line) of every process (a process that ended while
    the table was read is left out)."""
    table = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                command = Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
                fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
            except (OSError, IndexError):
                continue
            table[int(entry)] = Process(int(fields[1]), int(fields[3]), command)  # stat fields 4 and 6
    return table


def processes_naming(text: str) -> set[int]:
    """The processes whose command line contains text (this one left out)."""
    return {pid for pid, p in process_table().items() if text in p.command and pid != os.getpid()}


def kill(pids) -> None:
    """SIGKILL each process, as a crash or an out-of-memory kill does."""
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
