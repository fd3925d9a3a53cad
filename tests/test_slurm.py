"""`distributed-agent slurm`: the script it writes, the flags it refuses, and (marked cluster) jobs
on a real Slurm started on this machine: a sweep to completion, and a cancelled job resumed by a
second one with nothing lost."""

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import yaml
from processes import processes_naming
from slurm_cluster import SlurmCluster, install_slurm
from test_sweep import TINY_TRAIN

from distributed_agent.cli import main
from distributed_agent.report import build_report
from distributed_agent.slurm import ray_start_command
from distributed_agent.spec import parse_spec
from distributed_agent.train import train

SPEC = {"name": "on_slurm", "train": {**TINY_TRAIN, "updates": 200, "eval_every": 20}, "seeds": 4}


def write_spec(folder: Path, spec: dict) -> Path:
    path = folder / f"{spec['name']}.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def test_the_dry_run_prints_a_script_that_starts_ray_on_every_node_runs_the_sweep_and_stops_ray(tmp_path, capsys):
    spec = write_spec(tmp_path, SPEC)
    command = ["slurm", str(spec), "--nodes", "3", "--cpus-per-node", "8", "--partition", "cpu", "--time", "2:00:00"]
    assert main([*command, "--storage", str(tmp_path / "shared"), "--sbatch=--account=rl", "--dry-run"]) == 0
    script = capsys.readouterr().out
    for directive in ("--nodes=3", "--cpus-per-task=8", "--partition=cpu", "--time=2:00:00", "--account=rl"):
        assert f"#SBATCH {directive}\n" in script
    assert script.count("ray-node --head") == 1 and "ray-node --address" in script  # head, then the others
    assert "RAY_AUTH_MODE=token" in script and "token_hex" in script  # a token per job, never on disk
    assert f"sweep {spec} --address" in script and f"--storage {tmp_path / 'shared'}" in script
    (sweep_line,) = [line for line in script.splitlines() if "distributed_agent sweep" in line]
    assert "--resume" not in sweep_line
    assert not (tmp_path / "shared").exists()  # a dry run creates nothing
    bash = subprocess.run(["bash", "-n"], input=script, capture_output=True, text=True)
    assert bash.returncode == 0, bash.stderr  # valid bash


@pytest.mark.parametrize(
    "flags, field",
    [
        (["--nodes", "0"], "--nodes"),
        (["--cpus-per-node", "0"], "--cpus-per-node"),
        (["--time", "two hours"], "--time"),
        (["--partition", "a b"], "--partition"),
        (["--sbatch", "-A rl"], "--sbatch"),
        (["--resume"], "--resume"),
    ],
)
def test_bad_flags_are_refused_in_one_line_before_anything_is_submitted(tmp_path, capsys, flags, field):
    spec = write_spec(tmp_path, SPEC)
    base = {"--nodes": "1", "--cpus-per-node": "2"}
    for flag, value in zip(flags[::2], flags[1::2]):
        base[flag] = value
    argv = ["slurm", str(spec), "--storage", str(tmp_path / "runs"), "--dry-run"]
    argv += [x for pair in base.items() for x in pair] + ([flags[0]] if len(flags) == 1 else [])
    assert main(argv) == 2
    error = capsys.readouterr().err.strip()
    assert error.startswith(f"distributed-agent: error: {field}") and "\n" not in error


def test_an_existing_experiment_is_not_started_over(tmp_path, capsys):
    spec = write_spec(tmp_path, SPEC)
    (tmp_path / "runs" / "on_slurm").mkdir(parents=True)
    argv = ["slurm", str(spec), "--nodes", "1", "--cpus-per-node", "2", "--storage", str(tmp_path / "runs")]
    assert main([*argv, "--dry-run"]) == 2
    assert "exists; continue it with --resume" in capsys.readouterr().err


@pytest.fixture(scope="module")
def slurm():
    why = install_slurm()
    if why:
        pytest.skip(why)
    cluster = SlurmCluster(Path(tempfile.mkdtemp(prefix="da-slurm-", dir="/tmp")))
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()
        shutil.rmtree(cluster.root, ignore_errors=True)


def submit(slurm, monkeypatch, capsys, argv) -> str:
    monkeypatch.setenv("SLURM_CONF", str(slurm.conf))
    assert main(argv) == 0
    printed = capsys.readouterr().out
    return printed.split("Submitted Slurm job ", 1)[1].split(":", 1)[0]


def ray_processes_of(job: str) -> set[int]:
    return processes_naming(f"/tmp/da-ray-{job}/")


def assert_as_if_undisturbed(experiment: Path, spec: dict) -> None:
    trials = build_report(experiment).trials.set_index("seed")
    assert (trials["status"] == "terminated").all() and len(trials) == len(spec["seeds"])
    parsed = parse_spec(spec)
    for seed, trial in trials.iterrows():
        straight = train(parsed.trial_config({"seed": seed}).replace(device="cpu"))
        assert [trial[f"success/stage{s}"] for s in range(3)] == straight.final_success, seed


@pytest.mark.cluster
def test_a_slurm_job_runs_a_sweep_and_report_reads_its_folder(slurm, tmp_path, monkeypatch, capsys):
    spec = {**SPEC, "seeds": [1, 2, 3, 4]}
    path = write_spec(tmp_path, spec)
    log = tmp_path / "job-%j.out"
    argv = ["slurm", str(path), "--nodes", "1", "--cpus-per-node", str(os.cpu_count()), "--time", "15:00"]
    job = submit(slurm, monkeypatch, capsys, [*argv, "--storage", str(tmp_path / "shared"), "--output", str(log)])
    slurm.wait_until_done(job, timeout=600, output=Path(str(log).replace("%j", job)))
    output = Path(str(log).replace("%j", job)).read_text()
    assert "Experiment on_slurm: 4 terminated" in output, output[-3000:]
    assert not ray_processes_of(job) and not Path(f"/tmp/da-ray-{job}").exists()  # Ray stopped, folder gone
    assert main(["report", str(tmp_path / "shared" / "on_slurm"), "--out", str(tmp_path / "report")]) == 0
    assert (tmp_path / "report" / "summary.md").exists()
    assert_as_if_undisturbed(tmp_path / "shared" / "on_slurm", spec)


@pytest.mark.cluster
def test_a_cancelled_job_is_resumed_by_a_second_job_with_nothing_lost(slurm, tmp_path, monkeypatch, capsys):
    # Trials long enough (seconds each) that the cancel lands while some are still to run, even on a
    # quiet machine where 600 updates let all six finish between two polls.
    spec = {**SPEC, "name": "cancelled", "train": {**SPEC["train"], "updates": 2000}, "seeds": [5, 6, 7, 8, 9, 10]}
    path = write_spec(tmp_path, spec)
    experiment = tmp_path / "shared" / "cancelled"
    argv = ["slurm", str(path), "--nodes", "1", "--cpus-per-node", str(os.cpu_count())]
    argv += ["--storage", str(tmp_path / "shared"), "--output", str(tmp_path / "job-%j.out")]
    first = submit(slurm, monkeypatch, capsys, argv)
    deadline, finished = time.time() + 600, {}
    while time.time() < deadline and not finished:  # cancel once some trials are done and others not
        time.sleep(1)
        for result in experiment.glob("trial_*/result.json"):
            lines = [json.loads(line) for line in result.read_text().splitlines() if line.strip()]
            if lines and lines[-1].get("final"):
                finished[result.parent.name] = result.read_bytes()
    assert finished, "no trial finished before the deadline"
    subprocess.run(["scancel", first], env=slurm.env, check=True)
    slurm.wait_until_done(first, timeout=120, output=tmp_path / f"job-{first}.out")
    interrupted = build_report(experiment).trials
    assert (interrupted["status"] != "terminated").any(), "the job ended before it was cancelled"
    second = submit(slurm, monkeypatch, capsys, [*argv, "--resume"])
    slurm.wait_until_done(second, timeout=600, output=tmp_path / f"job-{second}.out")
    output = (tmp_path / f"job-{second}.out").read_text()
    assert "Experiment cancelled: 6 terminated" in output, output[-3000:]
    for name, before in finished.items():  # trials done before the cancel were not run again
        assert (experiment / name / "result.json").read_bytes() == before
    assert_as_if_undisturbed(experiment, spec)
    assert not ray_processes_of(first) and not ray_processes_of(second)


@pytest.mark.cluster
def test_two_jobs_sharing_a_node_pick_different_ports_and_both_finish(slurm, tmp_path, monkeypatch, capsys):
    jobs = []
    for name, seeds in (("first_of_two", [21, 22]), ("second_of_two", [23, 24])):
        path = write_spec(tmp_path, {**SPEC, "name": name, "seeds": seeds})
        argv = ["slurm", str(path), "--nodes", "1", "--cpus-per-node", "1", "--storage", str(tmp_path / "shared")]
        jobs.append(submit(slurm, monkeypatch, capsys, [*argv, "--output", str(tmp_path / "job-%j.out")]))
    deadline = time.time() + 300
    while time.time() < deadline and len(set(slurm.running()) & set(jobs)) < 2:
        time.sleep(0.5)
    assert set(slurm.running()) >= set(jobs), "the two jobs did not run at the same time"
    for job in jobs:
        slurm.wait_until_done(job, timeout=600, output=tmp_path / f"job-{job}.out")
    for job, name in zip(jobs, ("first_of_two", "second_of_two")):
        output = (tmp_path / f"job-{job}.out").read_text()
        assert f"Experiment {name}: 2 terminated" in output, output[-3000:]


def test_the_job_script_runs_ray_node_which_refuses_a_half_given_role(capsys):
    assert main(["ray-node", "--cpus", "1"]) == 2
    assert "give --head" in capsys.readouterr().err
    # Ports with fixed defaults are left to the kernel (0), so jobs sharing a node cannot pick the same.
    role = argparse.Namespace(cpus=1, gpus=0, temp_dir="/tmp/da-ray-1", head=True, port=40000, ip="10.0.0.1")
    command = ray_start_command(role)
    assert {"--dashboard-agent-listen-port=0", "--min-worker-port=0", "--max-worker-port=0"} <= set(command)
    port = subprocess.run(
        [sys.executable, "-m", "distributed_agent", "ray-node", "--free-port"], capture_output=True, text=True
    )
    assert port.returncode == 0 and 1024 < int(port.stdout) < 65536
    address = subprocess.run(
        [sys.executable, "-m", "distributed_agent", "ray-node", "--node-ip"], capture_output=True, text=True
    )
    assert address.returncode == 0 and len(address.stdout.strip().split(".")) == 4
