"""The benchmarks run as a quick smoke at tiny sizes, so that they cannot rot (no timing asserted)."""

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def run(script, *args):
    done = subprocess.run(
        [sys.executable, f"benchmarks/{script}", *args], cwd=ROOT, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def test_throughput_benchmark_prints_reference_project_and_ratio():
    out = run("throughput.py", "--batches", "8", "16", "--updates", "2", "--rounds", "1")
    rows = [line for line in out.splitlines() if re.match(r"^\s+(8|16)\s", line)]
    assert len(rows) == 2 and all(re.search(r"\d+\.\d\dx\s+[\d,]+\s+[\d,]+$", row) for row in rows), out
    assert "peak resident memory" in out


@pytest.mark.slow  # ~30 s: two sweeps and sequential runs; test_sweep checks a sweep's numbers by default
def test_sweep_overhead_benchmark_runs_and_checks_the_numbers():
    out = run("sweep_overhead.py", "--trials", "2", "--updates", "10", "--eval-every", "5", "--rounds", "1")
    assert "identical numbers: True" in out, out
    assert re.search(r"ratio \(sequential / sweep\): \d+\.\d\dx", out)
    assert "resident MiB at the end of each" in out


def test_tutorial_transcription_seeds_runs():
    out = run("tutorial_transcription_seeds.py", "--seeds", "1", "--updates", "2")
    assert re.search(r"seed\s+0: greedy success \d\.\d{3} \d\.\d{3} \d\.\d{3}", out)
    assert "of 1" in out


@pytest.mark.slow  # ~45 s, most of it inductor compiling
@pytest.mark.skipif(shutil.which("g++") is None, reason="torch.compile's CPU backend needs a C++ compiler")
def test_compile_probe_runs():
    out = run("compile_probe.py", "--batch", "8", "--updates", "2", "--rounds", "1")
    rows = [line for line in out.splitlines() if re.search(r"eps/s\s+\d+\.\d\dx$", line)]
    assert [row.split("  ")[0] for row in rows] == [
        "reference (tutorial's update)",
        "project, hand-fused",
        "project, torch.compile",
    ], out


def test_allocator_ab_runs_both_settings_in_fresh_processes():
    out = run("allocator_ab.py", "--rounds", "1", "--updates", "3", "--batch", "16")
    assert re.search(r"keep_freed_memory off: ms/update [\d.]+", out) and "keep_freed_memory on" in out, out
    assert re.search(r"speed-up with the setting: \d+\.\d\dx", out)


def test_batched_identity_probe_prints_a_verdict_per_operation():
    out = run("batched_identity_probe.py", "--members", "4", "--batch", "8", "--hidden", "16")
    verdicts = [line for line in out.splitlines() if re.search(r": (True|False)$", line)]
    assert len(verdicts) == 3, out


def test_population_benchmark_prints_a_row_per_size_and_population():
    out = run(
        "population.py",
        *("--members", "1", "2", "--batches", "8", "--hiddens", "8", "12", "--updates", "2", "--rounds", "1"),
        "--phases",
        "--profile",
    )
    assert len(re.findall(r"per member, one step of K: update \d+\.\d\d ms = rollout forward", out)) == 4, out
    assert len(re.findall(r"costliest operations, us per member-update", out)) == 4, out
    # 12 rows per table (aten operations, the fused rollout's nodes, Adam, ...)
    # (a key may hold spaces: "autograd::engine::evaluate_function: torch::autograd::AccumulateGrad")
    assert len(re.findall(r" \d+ us +\(\d+ calls, +\d+ us each\)", out)) == 4 * 12, out
    rows = [line for line in out.splitlines() if re.match(r"^\s+8\s+(8|12)\s+(1|2)\s", line)]
    assert len(rows) == 4 and all(re.search(r"\d+\.\d\dx\s+\d+\.\d$", row) for row in rows), out


def test_population_chunks_benchmark_prints_a_row_per_cut():
    sizes = ("--members", "3", "--batch", "8", "--hidden", "8", "--rounds", "2")
    out = run("population_chunks.py", *sizes, "--pairs", "1/1", "3/2")
    rows = re.findall(r"^\s+(\d+)\s+(\d+)\s+\d+\.\d\s+\d+\.\d$", out, re.MULTILINE)
    assert rows == [("1", "1"), ("3", "2")], out
    bad = subprocess.run(
        [sys.executable, "benchmarks/population_chunks.py", "--pairs", "16x4"], cwd=ROOT, capture_output=True, text=True
    )
    assert bad.returncode == 2 and "--pairs: STEP/LOOP member counts" in bad.stderr


def test_compare_trials_matches_trials_by_swept_values_and_seed_not_by_their_ids(tmp_path):
    header = "trial_id,lr,seed,status,success/stage0,success/stage1,success/stage2,success/min,episodes,solved\n"
    before, after = tmp_path / "before.csv", tmp_path / "after.csv"
    before.write_text(header + "a_0,0.1,1,terminated,1,1,0.5,0.5,900,False\na_1,0.1,2,terminated,1,1,1,1,300,True\n")
    after.write_text(header + "z_9,0.1,2,terminated,1,1,1,1,300,True\nz_8,0.1,1,terminated,1,1,0.25,0.25,900,False\n")
    out = run("compare_trials.py", "--files", str(before), str(after))
    assert out.strip() == "1 of 2 trials identical; seeds solved 1 -> 1; success/min mean 0.750 -> 0.625"


def test_peers_benchmark_prints_every_agent_and_the_ratio():
    pytest.importorskip("sb3_contrib", reason="the baselines extra is not installed")
    out = run("peers.py", "--rounds", "1", "--seconds", "0.2", "--batch", "16", "--n-steps", "8", "--envs", "4")
    rows = {line.split()[0]: line for line in out.splitlines() if re.search(r"\d+\.\d\dx$", line)}
    assert set(rows) == {"ours", "ppo", "a2c", "recurrent_ppo"}, out
    assert rows["ours"].endswith(" 1.00x")
