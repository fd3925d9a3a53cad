"""Test-session housekeeping."""

import shutil
import tempfile
from pathlib import Path

import pytest
from processes import processes_naming


@pytest.fixture(scope="session", autouse=True)
def remove_kept_ray_folders():
    """A sweep that fails keeps its private Ray folder (da-ray-*) for its user to read the logs; the
    tests that make sweeps fail on purpose would leave theirs behind, so the session removes the ones
    that appeared while it ran and that no running process uses (a sweep run beside the tests keeps
    its own)."""
    root = Path(tempfile.gettempdir())
    before = set(root.glob("da-ray-*"))
    yield
    if not Path("/proc").is_dir():
        return
    for folder in set(root.glob("da-ray-*")) - before:
        if not processes_naming(str(folder)):
            shutil.rmtree(folder, ignore_errors=True)
