"""Driver-side bookkeeping of a sweep, as Tune's callback and stopper: each attempt's outcome
(outcome.json), a bounded number of checkpoints per attempt, and a stop before the storage is
full. With it the experiment folder is the whole state of the sweep (experiment.py).
"""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

from .experiment import OUTCOME_FILE, checkpoint_evaluation
from .storage import Storage, StorageFull, is_storage_full

KEEP_CHECKPOINTS = 2  # per trial attempt: the newest (to resume) and the one before; with PBT
# also the newest two of its rounds (one a trial may still go on from, one --resume restarts from)
FREE_SPACE_MARGIN = 4  # stop while the disk still holds this many checkpoints per running trial
MIN_FREE_BYTES = 4 * 2**20


def bookkeeping_class():
    """Bookkeeping as Tune's callback and stopper (Ray is imported only where it runs)."""
    from ray import tune
    from ray.tune.stopper import Stopper

    class TrialBookkeeping(Bookkeeping, tune.Callback, Stopper):
        pass

    return TrialBookkeeping


class Bookkeeping:
    """Driver-side records that make the experiment folder its own state: each attempt's outcome
    (outcome.json), a bounded number of checkpoints, and a stop before the storage is full."""

    def __init__(self, storage: Storage, name: str, round_every: int | None = None):
        self.storage, self.name, self.round_every = storage, name, round_every
        self.ended = 0
        self.storage_full: str | None = None
        self.checkpoint_bytes = 0

    # Tune's Stopper interface (stop_all) ends every trial once the storage is (nearly) full.
    def __call__(self, trial_id, result) -> bool:
        return False

    def stop_all(self) -> bool:
        return self.storage_full is not None

    def _dirname(self, trial) -> str:
        return Path(trial.storage.trial_fs_path).name

    def _write_outcome(self, trial, status: str) -> None:
        try:
            self.storage.write_text(
                json.dumps({"status": status, "failures": trial.num_failures}),
                self.name,
                self._dirname(trial),
                OUTCOME_FILE,
            )
        except StorageFull as error:
            self.storage_full = self.storage_full or str(error)

    def on_trial_complete(self, iteration, trials, trial, **info):
        self.ended += 1
        final = (trial.last_result or {}).get("final") == 1
        if final or self.storage_full is None:  # trials ended by a full storage stay unfinished
            self._write_outcome(trial, "terminated" if final else "stopped early")

    def on_trial_error(self, iteration, trials, trial, **info):
        self.ended += 1
        self._check_error(trial)
        if self.storage_full is None:
            self._write_outcome(trial, "errored")

    def on_trial_recover(self, iteration, trials, trial, **info):
        self._check_error(trial)

    def on_trial_start(self, iteration, trials, trial, **info):
        """Copy the trial's result.json from the driver's staging folder to the storage before Tune
        (re)starts it. A trial restarted after a failure, or after a pause (PBT pauses every trial at
        every round), gets the storage's result.json copied back over the staging one (Tune's
        JsonLoggerCallback, called after this callback, `_restore_from_remote`), and Tune uploads the
        staging folder only every few minutes: the reports since the last upload were lost (seen
        under load: a restarted trial kept only its later reports; a PBT trial lost all of them)."""
        staged = Path(trial.local_path, "result.json")
        try:
            if staged.is_file():
                self.storage.write_text(staged.read_text(), self.name, self._dirname(trial), "result.json")
        except StorageFull as error:
            self.storage_full = self.storage_full or str(error)

    def _check_error(self, trial) -> None:
        try:
            text = str(trial.get_error() or "")
        except Exception:
            text = ""
        if is_storage_full(text) or self._free_bytes() < MIN_FREE_BYTES:
            self.storage_full = (
                self.storage_full
                or f"{self.storage.uri} ({text.strip().splitlines()[-1][:200] if text.strip() else 'no space left'})"
            )

    def on_checkpoint(self, iteration, trials, trial, checkpoint, **info):
        """Keep the newest KEEP_CHECKPOINTS of the attempt (Tune's own num_to_keep forces an
        experiment snapshot on every checkpoint); watch the free space of local storage."""
        dirname = self._dirname(trial)
        checkpoints = [d for d in self.storage.list_dirs(self.name, dirname) if d.startswith("checkpoint_")]
        kept = set(checkpoints[-KEEP_CHECKPOINTS:])
        if self.round_every:
            kept |= set([d for d in checkpoints if self._at_round(dirname, d)][-KEEP_CHECKPOINTS:])
        for old in [d for d in checkpoints if d not in kept]:
            try:
                self.storage.delete_dir(self.name, dirname, old)
            except OSError:
                pass
        if self.storage.local and checkpoints:
            newest = Path(self.storage.path(self.name, dirname, checkpoints[-1]))
            size = sum(f.stat().st_size for f in newest.rglob("*") if f.is_file())
            self.checkpoint_bytes = max(self.checkpoint_bytes, size)
            running = sum(t.status == "RUNNING" for t in trials) or 1
            needed = max(MIN_FREE_BYTES, FREE_SPACE_MARGIN * running * self.checkpoint_bytes)
            free = self._free_bytes()
            if free < needed:
                self.storage_full = self.storage_full or (
                    f"{self.storage.uri} has {free / 2**20:.1f} MiB free, "
                    f"less than the {needed / 2**20:.1f} MiB the running "
                    "trials need for their next checkpoints"
                )

    def _at_round(self, dirname: str, checkpoint: str) -> bool:
        evaluation = checkpoint_evaluation(self.storage, self.name, dirname, checkpoint)
        return evaluation is not None and evaluation % self.round_every == 0

    def _free_bytes(self) -> float:
        if not self.storage.local:
            return math.inf
        try:
            return shutil.disk_usage(self.storage.root).free
        except OSError:
            return math.inf
