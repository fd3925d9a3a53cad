"""One driver per experiment: an exclusive lock on the experiment folder."""

from __future__ import annotations

import fcntl
import os
import socket

from .config import ConfigError
from .storage import Storage

LOCK_FILE = "driver.lock"


class ExperimentLock:
    """An exclusive lock on the experiment folder, held while the driver runs.

    Locally it is an flock, released by the kernel when the holder dies, so the successor of a
    killed driver takes it over without any clean-up. On object storage there is no such lock:
    a lock file names its holder and is removed at the end; a stale one must be deleted by hand.
    """

    def __init__(self, storage: Storage, name: str):
        self.storage, self.name = storage, name
        self.file = None  # the open lock file (local storage)
        self.held = False

    def acquire(self) -> None:
        where = self.storage.uri_of(self.name)
        holder = {"pid": os.getpid(), "host": socket.gethostname()}
        if self.storage.local:
            self.file = open(self.storage.path(self.name, LOCK_FILE), "a+")
            try:
                fcntl.flock(self.file, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                self.file.seek(0)
                text = self.file.read().strip() or "an unknown process"
                self.file.close()
                self.file = None
                raise ConfigError(
                    f"experiment {where} is in use by another driver ({text}); wait for it "
                    "to end or stop it, then --resume"
                ) from None
            self.file.seek(0)
            self.file.truncate()
            self.file.write(f"pid {holder['pid']} on {holder['host']}")
            self.file.flush()
            self.held = True
        else:
            if self.storage.exists(self.name, LOCK_FILE):
                text = self.storage.read_text(self.name, LOCK_FILE).strip()
                raise ConfigError(
                    f"experiment {where} is in use by another driver ({text}); if that driver "
                    f"is gone, delete {self.storage.uri_of(self.name, LOCK_FILE)} and --resume"
                )
            self.storage.write_text(f"pid {holder['pid']} on {holder['host']}", self.name, LOCK_FILE)
            self.held = True

    def release(self) -> None:
        if not self.held:
            return
        if self.storage.local:
            self.file.close()  # the file stays: removing it would race with a waiting successor
            self.file = None
        else:
            try:
                self.storage.fs.delete_file(self.storage.path(self.name, LOCK_FILE))
            except OSError:
                pass
        self.held = False
