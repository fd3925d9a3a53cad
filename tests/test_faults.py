"""Security and faults: a local sweep reachable from this machine only, one driver per
experiment, resume from the spec and trial folders whatever Tune's state files hold, and a
storage that fills up."""

import json
import os
import pickle
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import pytest
import ray.cloudpickle
import yaml
from test_sweep import ROOT, TINY_TRAIN, direct_final, hp, kill_session, results_by_trial, session_processes

from distributed_agent.cli import main
from distributed_agent.config import ConfigError
from distributed_agent.report import build_report
from distributed_agent.runtime import cpu_description
from distributed_agent.spec import parse_spec
from distributed_agent.storage import StorageFull
from distributed_agent.sweep import run_sweep

ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])

SLOW_TRAIN = {**TINY_TRAIN, "updates": 12000, "batch_size": 64, "eval_every": 10}


def start_driver(spec: dict, tmp_path: Path, *extra: str, name: str = "spec.yaml") -> subprocess.Popen:
    """Start a sweep driver in its own session. Its output goes to files beside the spec (see
    `driver_errors`), not to pipes: a driver that fills a pipe nobody reads stalls."""
    spec_path = tmp_path / name
    spec_path.write_text(yaml.safe_dump(spec))
    command = [
        sys.executable,
        "-m",
        "distributed_agent",
        "sweep",
        str(spec_path),
        "--storage",
        str(tmp_path / "runs"),
        *extra,
    ]
    with (tmp_path / f"{name}.out").open("wb") as out, (tmp_path / f"{name}.err").open("wb") as err:
        return subprocess.Popen(
            command,
            cwd=ROOT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
            stdout=out,
            stderr=err,
            start_new_session=True,
        )


def driver_errors(tmp_path: Path, name: str = "spec.yaml") -> str:
    return (tmp_path / f"{name}.err").read_text()


def wait_for(condition, seconds: float, what: str) -> None:
    deadline = time.time() + seconds
    while time.time() < deadline:
        if condition():
            return
        time.sleep(0.2)
    pytest.fail(f"timed out waiting for {what}")


def listening_sockets(pids: set[int]) -> list[tuple[int, str, str, int]]:
    """(pid, process name, local address, port) of every listening TCP socket the processes own."""
    inodes = {}
    for pid in pids:
        try:
            for fd in (Path("/proc") / str(pid) / "fd").iterdir():
                target = os.readlink(fd)
                if target.startswith("socket:["):
                    inodes[target[8:-1]] = pid
        except OSError:
            continue
    found = []
    for table, width in (("/proc/net/tcp", 8), ("/proc/net/tcp6", 32)):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            local, state, inode = fields[1], fields[3], fields[9]
            if state != "0A" or inode not in inodes:  # 0A: LISTEN
                continue
            address, port = local.split(":")
            raw = bytes.fromhex(address)
            if width == 8:
                ip = socket.inet_ntop(socket.AF_INET, raw[::-1])
            else:  # four little-endian 32-bit words
                ip = socket.inet_ntop(socket.AF_INET6, b"".join(raw[i : i + 4][::-1] for i in range(0, 16, 4)))
            pid = inodes[inode]
            found.append((pid, (Path("/proc") / str(pid) / "comm").read_text().strip(), ip, int(port, 16)))
    return found


def is_loopback(ip: str) -> bool:
    return ip.startswith("127.") or ip in ("::1", "::ffff:127.0.0.1") or ip.startswith("::ffff:127.")


def non_loopback_address() -> str | None:
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            probe.connect(("192.0.2.1", 9))  # no packet is sent: this only picks the outgoing interface
            address = probe.getsockname()[0]
    except OSError:
        return None
    return None if address.startswith("127.") else address


def test_a_local_sweep_listens_on_loopback_only_takes_a_token_and_runs_one_driver_per_experiment(tmp_path):
    spec = {"name": "secure", "seeds": 2, "train": SLOW_TRAIN}
    driver = start_driver(spec, tmp_path)
    sessions = [driver.pid]
    try:
        wait_for(lambda: any((tmp_path / "runs" / "secure").glob("trial_*/result.json")), 120, "a first report")
        sockets = listening_sockets(set(session_processes(driver.pid)))
        names = {name for _, name, _, _ in sockets}
        assert {"gcs_server", "raylet"} <= names, sockets  # the sweep's own servers were found
        assert all(is_loopback(ip) for _, _, ip, _ in sockets), sockets
        outside = non_loopback_address()
        if outside:  # nothing answers on the machine's network address
            for _, _, _, port in sockets:
                with socket.socket() as client:
                    client.settimeout(2)
                    assert client.connect_ex((outside, port)) != 0, f"port {port} answers on {outside}"
        # A second driver on the same experiment is refused in one line naming the holder.
        for extra in ((), ("--resume",)):
            second = start_driver(spec, tmp_path, *extra, name="second.yaml")
            sessions.append(second.pid)
            second.wait(timeout=120)
            err = driver_errors(tmp_path, "second.yaml")
            assert second.returncode == 2, err
            lines = err.strip().splitlines()
            assert len(lines) == 1, err
            if extra:
                assert f"pid {driver.pid}" in lines[0] and "secure" in lines[0], lines[0]
            else:
                assert "exists; continue it with --resume" in lines[0]
        # A client on this machine with the wrong token is refused.
        gcs_port = next(port for _, name, _, port in sockets if name == "gcs_server")
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("RAY_")},
            "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
            "RAY_AUTH_MODE": "token",
            "RAY_AUTH_TOKEN": "0" * 64,
        }
        intruder = subprocess.Popen(
            [
                sys.executable,
                "-c",
                f"import ray; ray.init(address='127.0.0.1:{gcs_port}'); "
                "print('ran', ray.get(ray.remote(lambda: 1).remote()))",
            ],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        sessions.append(intruder.pid)
        try:  # Ray's client keeps retrying a refused token: it must never get to run its task
            out, _ = intruder.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            kill_session(intruder.pid)
            out, _ = intruder.communicate()
        assert "ran" not in out
        # The driver is killed; its successor takes the experiment over: the dead holder's lock does not
        # stop it, and its later attempts of the trials (trial_N.r1) train on from the checkpoints.
        # (Finishing after a SIGKILL is what test_sweep's killed-driver tests prove.)
        os.killpg(driver.pid, signal.SIGKILL)
        driver.wait(timeout=30)
        kill_session(driver.pid)
        successor = start_driver(spec, tmp_path, "--resume")
        sessions.append(successor.pid)
        experiment = tmp_path / "runs" / "secure"

        def successor_checkpoints() -> bool:
            assert successor.poll() is None, driver_errors(tmp_path)[-3000:]
            return any(experiment.glob("trial_*.r1/checkpoint_*/trainer_state.pt"))

        wait_for(successor_checkpoints, 240, "a checkpoint from the successor's attempts")
        assert (experiment / "driver.lock").read_text().startswith(f"pid {successor.pid} ")
    finally:
        for session in sessions:
            kill_session(session)


def test_the_ray_session_folder_is_removed_at_the_end_of_a_sweep(tmp_path):
    before = set(Path(tempfile.gettempdir()).glob("da-ray-*"))
    spec = parse_spec({"name": "private", "train": {**TINY_TRAIN, "updates": 10}, "seeds": 1})
    path = run_sweep(spec, storage=str(tmp_path), verbose=0)
    assert set(Path(tempfile.gettempdir()).glob("da-ray-*")) == before  # nothing left behind
    trials = build_report(path).trials
    assert trials["status"].tolist() == ["terminated"]
    assert trials["cpu"].tolist() == [cpu_description()]  # what the numbers were made on, per trial


class Exploit:
    """A pickle that writes a file when loaded."""

    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (Path(self.marker).write_text, ("pickle loaded",))


def make_failing_trial(marker: str, seed: int, at_update: int):
    def failing_trial(config, **kwargs):
        from distributed_agent import train, trainable

        original = train.train_step

        def train_step(members):
            hit = any(run.config.seed == seed and run.update + 1 == at_update for run in members)
            if hit and not os.path.exists(marker):
                Path(marker).write_text("failed once")
                raise RuntimeError("injected failure")
            return original(members)

        train.train_step = train_step
        try:
            trainable.run_trial(config, **kwargs)
        finally:
            train.train_step = original

    return failing_trial


@pytest.mark.parametrize(
    "damage",
    ["garbage", pytest.param("empty", marks=pytest.mark.slow), pytest.param("wrong_shape", marks=pytest.mark.slow)],
)
def test_resume_rebuilds_from_the_spec_and_trial_folders_whatever_tunes_state_holds(tmp_path, damage):
    spec = parse_spec(
        {
            "name": "damaged",
            "train": {**TINY_TRAIN, "updates": 40},
            "seeds": 4,
            "max_failures": 0,
            "checkpoint_every": 1,
        }
    )
    failed = tmp_path / "failed"
    path = Path(
        run_sweep(spec, storage=str(tmp_path / "runs"), trial_fn=make_failing_trial(str(failed), 2, 23), verbose=0)
    )
    report = build_report(path).trials.set_index("seed")
    assert report.loc[2, "status"] == "errored" and (report.drop(index=2)["status"] == "terminated").all()
    # Damage: Tune's state files, a crafted tuner.pkl, a lost trial folder, a truncated final line.
    for state in path.glob("experiment_state-*.json"):
        state.write_text({"garbage": "{garbage", "empty": "", "wrong_shape": '{"trial_data": 5}'}[damage])
    marker = tmp_path / "exploited"
    (path / "tuner.pkl").write_bytes(pickle.dumps(Exploit(str(marker))))
    by_seed = {hp(lines[-1])["seed"]: folder for folder, lines in results_by_trial(path).items()}
    import shutil

    shutil.rmtree(path / by_seed[3])
    result = path / by_seed[0] / "result.json"
    text = result.read_text()
    result.write_text(text[: text.rstrip().rfind("\n") + 1] + text.rstrip().rsplit("\n", 1)[1][:40])
    report = build_report(path).trials.set_index("seed")
    assert report.loc[3, "status"] == "not started" and report.loc[0, "status"] == "unfinished"

    run_sweep(spec, storage=str(tmp_path / "runs"), resume=True, verbose=0)
    assert not marker.exists()  # no pickle of the folder was loaded
    for params in path.glob("trial_*/params.json"):  # no trial ever ran without its configuration
        assert "hp" in json.loads(params.read_text())["trial"]
    trials = build_report(path).trials.set_index("seed")
    assert sorted(trials.index) == [0, 1, 2, 3] and (trials["status"] == "terminated").all()
    for seed in range(4):  # each as if never disturbed
        success, reward = direct_final(spec, {"seed": seed})
        assert [trials.loc[seed, f"success/stage{s}"] for s in range(3)] == success
        assert [trials.loc[seed, f"reward/stage{s}"] for s in range(3)] == reward
    assert trials.loc[2, "attempts"] == 2  # errored seed resumed from its checkpoint in a new attempt
    for folder in path.glob("trial_*"):
        assert len(list(folder.glob("checkpoint_*"))) <= 3  # bounded (2 kept, +1 while the next lands)


@pytest.mark.slow  # a pbt sweep and its resume (~35 s); the default run keeps pbt's reproducibility test
def test_a_pbt_experiment_resumes_its_errored_trial_with_the_hyperparameters_it_had(tmp_path):
    spec = parse_spec(
        {
            "name": "pbt_resume",
            "train": {**TINY_TRAIN, "updates": 40},
            "seeds": [0, 1],
            "seeds_per_trial": "all",
            "samples": 3,
            "scheduler": "pbt",
            "checkpoint_every": 1,
            "max_failures": 0,
            "mutations": {"lr": {"loguniform": [1e-4, 1e-2]}},
            "pbt": {"perturbation_interval": 2, "quantile_fraction": 0.34, "seed": 1},
        }
    )
    failed = tmp_path / "failed"
    path = Path(
        run_sweep(spec, storage=str(tmp_path / "runs"), trial_fn=make_failing_trial(str(failed), 0, 33), verbose=0)
    )
    statuses = build_report(path).trials.groupby("pbt_trial")["status"].first()
    assert (statuses == "errored").sum() >= 1  # every trial holds seed 0; the first to reach update 33 failed
    errored = statuses[statuses == "errored"].index[0]
    recorded = json.loads((path / f"trial_{errored}" / "params.json").read_text())["trial"]["hp"]["lr"]
    run_sweep(spec, storage=str(tmp_path / "runs"), resume=True, verbose=0)
    trials = build_report(path).trials
    assert (trials["status"] == "terminated").all() and len(trials) == 6
    lines = results_by_trial(path)[f"trial_{errored}"]
    assert lines[-1]["final"] == 1 and lines[-1]["hp/lr"] == recorded  # continued with its own lr of the moment


def test_resume_refuses_a_changed_spec_for_any_storage_and_a_damaged_saved_spec(tmp_path):
    spec = {"name": "uri", "train": {**TINY_TRAIN, "updates": 10}, "seeds": 1}
    storage = f"file://{tmp_path}/runs"
    run_sweep(parse_spec(spec), storage=storage, verbose=0)
    # The report reads the experiment at its URI as it reads the folder.
    by_uri, by_path = build_report(f"{storage}/uri"), build_report(tmp_path / "runs" / "uri")
    pd.testing.assert_frame_equal(by_uri.trials, by_path.trials)
    assert by_uri.name == "uri" and (by_uri.trials["status"] == "terminated").all()
    assert main(["report", f"{storage}/uri", "--out", str(tmp_path / "report")]) == 0
    assert (tmp_path / "report" / "summary.csv").exists()
    with pytest.raises(ConfigError, match="does not exist"):
        build_report(f"{storage}/nothing")
    saved = tmp_path / "runs" / "uri" / "spec.yaml"
    assert yaml.safe_load(saved.read_text()) == json.loads(json.dumps(spec))
    changed = parse_spec({**spec, "train": {**spec["train"], "updates": 20}})
    with pytest.raises(ConfigError, match="the spec differs"):
        run_sweep(changed, storage=storage, resume=True)
    with pytest.raises(ConfigError, match="exists; continue it with --resume"):
        run_sweep(parse_spec(spec), storage=storage)
    saved.write_text("train: {updates: [")
    with pytest.raises(ConfigError, match="spec.yaml is damaged"):
        run_sweep(parse_spec(spec), storage=storage, resume=True)


def mount_tmpfs(where: Path, megabytes: int) -> None:
    where.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={megabytes}m", "tmpfs", str(where)], capture_output=True, text=True
    )
    if done.returncode:
        pytest.skip(f"cannot mount a small tmpfs here ({done.stderr.strip() or 'mount failed'}); needs root")


@pytest.mark.slow  # the default run keeps the API-level storage-full test below
@pytest.mark.parametrize("how", ["small_disk", "filled_during_sweep"])
def test_a_full_storage_stops_in_one_line_keeps_results_and_resumes(tmp_path, how):
    disk = tmp_path / "disk"
    mount_tmpfs(disk, 3 if how == "small_disk" else 40)
    filler = disk / "filler"
    try:
        spec = {
            "name": "full",
            "seeds": 4,
            "checkpoint_every": 1,
            "train": {**TINY_TRAIN, "hidden_size": 64, "batch_size": 64, "updates": 600, "eval_every": 5},
        }
        spec_path = tmp_path / "full.yaml"
        spec_path.write_text(yaml.safe_dump(spec))
        command = [sys.executable, "-m", "distributed_agent", "sweep", str(spec_path), "--storage", str(disk)]
        driver = subprocess.Popen(
            command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True
        )
        try:
            if how == "filled_during_sweep":  # another program fills the disk under the running sweep
                wait_for(lambda: len(list(disk.glob("full/trial_*/checkpoint_*"))) >= 2, 120, "checkpoints")
                free = os.statvfs(disk).f_bavail * os.statvfs(disk).f_frsize
                with open(filler, "wb") as file:
                    try:
                        file.write(b"\0" * (free + 2**20))
                    except OSError:
                        pass
            out, err = driver.communicate(timeout=300)
        finally:
            kill_session(driver.pid)
        assert driver.returncode == 1, err[-3000:]
        last = err.strip().splitlines()[-1]
        assert last.startswith("distributed-agent: storage full: ") and "--resume" in last, err[-3000:]
        report = build_report(disk / "full")  # everything written is readable
        assert set(report.trials["status"]) <= {"terminated", "unfinished", "not started", "errored"}
        filler.unlink(missing_ok=True)
        subprocess.run(["mount", "-o", "remount,size=64m", str(disk)], check=True)
        resumed = subprocess.run(command + ["--resume"], cwd=ROOT, capture_output=True, text=True, timeout=400)
        assert resumed.returncode == 0, resumed.stderr[-3000:]
        trials = build_report(disk / "full").trials.set_index("seed")
        assert (trials["status"] == "terminated").all() and len(trials) == 4
        success, _ = direct_final(parse_spec(spec), {"seed": 1})
        assert [trials.loc[1, f"success/stage{s}"] for s in range(3)] == success
    finally:
        subprocess.run(["umount", "-l", str(disk)], capture_output=True)


def test_storage_full_is_a_clear_error_in_the_api_too(tmp_path):
    disk = tmp_path / "disk"
    mount_tmpfs(disk, 1)
    try:
        spec = parse_spec({"name": "tiny", "train": {**TINY_TRAIN, "hidden_size": 64}, "seeds": 1})
        with pytest.raises(StorageFull):
            run_sweep(spec, storage=str(disk), verbose=0)
        assert (disk / "tiny" / "spec.yaml").exists()
    finally:
        subprocess.run(["umount", "-l", str(disk)], capture_output=True)


def test_a_checkpoint_is_found_by_its_evaluation_under_a_storage_uri_with_options(tmp_path):
    from pyarrow import fs

    from distributed_agent import checkpoint
    from distributed_agent.config import TrainConfig
    from distributed_agent.experiment import checkpoint_at, newest_checkpoint, scan_trials
    from distributed_agent.state import new_population
    from distributed_agent.storage import Storage

    folder = tmp_path / "exp" / "trial_0000" / "checkpoint_000001"
    folder.mkdir(parents=True)
    checkpoint.save(new_population(TrainConfig(**TINY_TRAIN), [0]), folder / "trainer_state.pt")
    (folder / "meta.json").write_text('{"evaluation": 4}')
    (folder.parent / "result.json").write_text("")
    # An s3:// URI keeps options such as endpoint_override after the path, as here.
    storage = Storage(uri=f"{tmp_path}?scheme=http", root=str(tmp_path), fs=fs.LocalFileSystem(), local=True)
    record = scan_trials(storage, "exp")["0000"]
    expected = f"{tmp_path}/exp/trial_0000/checkpoint_000001?scheme=http"
    assert newest_checkpoint(storage, "exp", record) == expected
    assert checkpoint_at(storage, "exp", record, 4) == expected and checkpoint_at(storage, "exp", record, 5) is None


def test_an_empty_trial_folder_is_no_attempt_and_resume_runs_the_trial_in_it(tmp_path):
    """Tune makes the folder of every trial still pending when a sweep is interrupted; resumed
    again and again, each would pile up empty trial_K.rN folders and count as attempts."""
    from pyarrow import fs

    from distributed_agent.experiment import remaining_trials, scan_trials
    from distributed_agent.storage import Storage

    spec = parse_spec({"name": "exp", "seeds": [0, 1], "train": TINY_TRAIN})
    exp = tmp_path / "exp"
    ran = exp / "trial_0000"
    ran.mkdir(parents=True)
    (ran / "params.json").write_text(json.dumps({"trial": {"key": "0000", "hp": {"seed": 0}}}))
    (ran / "result.json").write_text(json.dumps({"update": 4, "final": 0}) + "\n")
    for pending in ("trial_0000.r1", "trial_0000.r2", "trial_0001", "trial_0001.r1"):
        (exp / pending).mkdir()
    storage = Storage(uri=str(tmp_path), root=str(tmp_path), fs=fs.LocalFileSystem(), local=True)

    records = scan_trials(storage, "exp")
    assert list(records) == ["0000"] and [a.dirname for a in records["0000"].attempts] == ["trial_0000"]
    todo, _ = remaining_trials(spec, storage, records, restart_errored=False)
    assert [(t["key"], t["attempt"]) for t in todo] == [("0000", 1), ("0001", 0)]
