"""Sweeps on object storage: a real S3-compatible server (moto's) on loopback.

moto cannot be installed beside the project's pins (its botocore needs python-dateutil < 3, the
project pins 4), so the fixture installs it into a virtual environment of its own, kept in
~/.cache/distributed_agent/, and skips with its reason where the package registry is out of reach.
"""

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from test_sweep import TINY_TRAIN, direct_final

from distributed_agent.cli import main
from distributed_agent.report import build_report
from distributed_agent.spec import parse_spec
from distributed_agent.sweep import run_sweep

MOTO = "moto[server]==5.2.5"
CACHE = Path.home() / ".cache" / "distributed_agent" / "moto-5.2.5"


def moto_server_command() -> list[str]:
    server = CACHE / "bin" / "moto_server"
    if not server.exists():
        made = subprocess.run([sys.executable, "-m", "venv", str(CACHE)], capture_output=True, text=True)
        installed = made.returncode == 0 and (
            subprocess.run(
                [str(CACHE / "bin" / "pip"), "install", "--quiet", MOTO], capture_output=True, text=True, timeout=600
            ).returncode
            == 0
        )
        if not installed or not server.exists():
            pytest.skip(f"cannot install {MOTO} into {CACHE} (needs the Python package registry)")
    return [str(server)]


@pytest.fixture(scope="module")
def s3_endpoint():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = subprocess.Popen(
        [*moto_server_command(), "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.time() + 30
        while time.time() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.2)
        else:
            pytest.skip("moto's S3 server did not start")
        yield f"127.0.0.1:{port}"
    finally:
        server.terminate()
        server.wait(timeout=10)


@pytest.mark.slow  # installs moto once (~30 s), then a sweep on S3 (~20 s)
def test_a_sweep_on_s3_resumes_and_is_reported_from_its_uri(s3_endpoint, tmp_path, monkeypatch):
    from pyarrow import fs

    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.setenv(name, "test")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    options = f"endpoint_override={s3_endpoint}&scheme=http"
    bucket, _ = fs.FileSystem.from_uri(f"s3://sweeps?{options}&allow_bucket_creation=true")
    bucket.create_dir("sweeps")
    spec = parse_spec({"name": "on_s3", "train": TINY_TRAIN, "seeds": 2})
    storage = f"s3://sweeps/runs?{options}"
    run_sweep(spec, storage=storage, verbose=0)
    run_sweep(spec, storage=storage, resume=True, verbose=0)  # nothing left: no trial runs again
    folders = bucket.get_file_info(fs.FileSelector("sweeps/runs/on_s3"))
    assert sorted(f.base_name for f in folders if f.base_name.startswith("trial_")) == ["trial_0000", "trial_0001"]
    uri = f"s3://sweeps/runs/on_s3?{options}"
    trials = build_report(uri).trials.set_index("seed")
    assert (trials["status"] == "terminated").all() and sorted(trials.index) == [0, 1]
    for seed in (0, 1):  # the numbers of direct training, read back from S3
        success, _ = direct_final(spec, {"seed": seed})
        assert [trials.loc[seed, f"success/stage{s}"] for s in range(3)] == success
    assert main(["report", uri, "--out", str(tmp_path / "report")]) == 0
    assert (tmp_path / "report" / "summary.csv").exists()
    assert not os.path.exists("sweeps")  # nothing was written locally under the bucket's name
