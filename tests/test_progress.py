import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml

from distributed_agent.progress import HEARTBEAT, PRINT_EVERY, ProgressLines

ROOT = Path(__file__).resolve().parents[1]


@dataclass
class FakeTrial:
    trial_id: str
    hp: dict
    status: str = "PENDING"
    config: dict = field(init=False)

    def __post_init__(self):
        self.config = {"trial": {"key": self.trial_id, "hp": self.hp}}


def test_progress_lines_name_each_swept_field_pool_seeds_and_are_throttled():
    now = [0.0]
    lines = []
    progress = ProgressLines(4, ["lr", "hidden_size"], "success/min", "max", write=lines.append, clock=lambda: now[0])
    trials = [
        FakeTrial(f"t{i}", {"lr": lr, "hidden_size": 32, "seed": seed})
        for i, (lr, seed) in enumerate([(0.001, 0), (0.001, 1), (0.003, 0), (0.003, 1)])
    ]
    progress.setup()
    assert lines == ["4 trials, searching lr, hidden_size; success/min (max) is what counts"]
    for trial in trials[:2]:
        trial.status = "RUNNING"
    progress.on_trial_result(0, trials, trials[0], {"success/min": 0.9})
    progress.on_trial_result(0, trials, trials[1], {"success/min": 0.1})  # lr 0.001: mean 0.5 over 2 seeds
    progress.on_step_end(0, trials)
    assert lines[-1] == (
        "[   0s] trials 0/4 done, 2 running, 2 pending | best success/min 0.500 (lr=0.001 hidden_size=32; 2 seeds)"
    )
    trials[0].status = "TERMINATED"
    now[0] = PRINT_EVERY / 2
    progress.on_trial_complete(0, trials, trials[0])
    assert len(lines) == 2  # changed, but too soon after the last line
    now[0] = PRINT_EVERY
    progress.on_step_end(0, trials)
    assert lines[-1].startswith("[   5s] trials 1/4 done, 1 running, 2 pending") and lines[-1].endswith("~15s left")
    progress.on_step_end(0, trials)
    assert len(lines) == 3  # nothing changed
    now[0] += HEARTBEAT
    progress.on_step_end(0, trials)
    assert len(lines) == 4  # still alive
    trials[2].status = trials[3].status = "RUNNING"
    progress.on_trial_result(0, trials, trials[2], {"success/min": 0.8})
    progress.on_trial_result(0, trials, trials[3], {"success/min": 0.7})
    progress.on_trial_error(0, trials, trials[3])
    progress.on_experiment_end(trials)  # the last state is always printed
    assert "1 errored" in lines[-1] and "best success/min 0.750 (lr=0.003 hidden_size=32; 2 seeds)" in lines[-1]


def test_min_mode_picks_the_lowest():
    progress = ProgressLines(2, ["lr"], "loss", "min", write=lambda line: None)
    trials = [FakeTrial("a", {"lr": 0.1}), FakeTrial("b", {"lr": 0.2})]
    progress.on_trial_result(0, trials, trials[0], {"loss": 1.0})
    progress.on_trial_result(0, trials, trials[1], {"loss": 0.5})
    assert progress.best()[1] == 0.5


def small_sweep(tmp_path) -> list[str]:
    """The command of a CLI sweep of 8 short trials (2 x 2 grid, 2 seeds), storage under tmp_path."""
    spec = tmp_path / "small.yaml"
    train = {"variant": "tutorial", "hidden_size": 16, "batch_size": 32, "updates": 20, "eval_every": 5}
    spec.write_text(
        yaml.safe_dump(
            {
                "name": "small",
                "train": {**train, "eval_episodes": 32, "final_eval_episodes": 64},
                "search": {"lr": {"grid": [0.001, 0.003]}, "entropy_coef": {"grid": [0.01, 0.03]}},
                "seeds": 2,
            }
        )
    )
    return [sys.executable, "-m", "distributed_agent", "sweep", str(spec), "--storage", str(tmp_path / "runs")]


def test_a_sweep_prints_a_few_lines_that_show_the_swept_values_and_the_metric(tmp_path):
    default = subprocess.run(small_sweep(tmp_path), cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert default.returncode == 0, default.stderr[-2000:]
    output = (default.stdout + default.stderr).splitlines()
    assert len(output) < 40, "\n".join(output)
    progress = [line for line in output if line.startswith("[")]
    assert progress and all("lr=" in line and "entropy_coef=" in line for line in progress if "best" in line)
    assert "best success/min" in progress[-1] and "8/8 done" in progress[-1]
    assert not any("Trial status" in line or "Configuration for experiment" in line for line in output)


@pytest.mark.slow  # two more sweeps (~40 s); the default run keeps the default console's test above
def test_quiet_prints_no_progress_and_verbose_prints_tunes_table(tmp_path):
    command = small_sweep(tmp_path)
    quiet = subprocess.run(
        [*command[:-1], str(tmp_path / "quiet"), "--quiet"], cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    assert quiet.returncode == 0 and not [line for line in quiet.stdout.splitlines() if line.startswith("[")]
    assert "Experiment small: 8 terminated" in quiet.stdout and not quiet.stderr.strip(), quiet.stderr[-2000:]
    verbose = subprocess.run(
        [*command[:-1], str(tmp_path / "verbose"), "--verbose"], cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    assert verbose.returncode == 0, verbose.stderr[-2000:]
    header = [line for line in verbose.stdout.splitlines() if "Trial name" in line][-1]  # after results came
    columns = [column.strip() for column in header.split("|")]
    assert {"lr", "entropy_coef", "success/min"} <= set(columns), header  # Tune's table: flat columns
