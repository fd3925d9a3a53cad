import sys
from pathlib import Path

import pytest
import yaml

from distributed_agent.cli import main
from distributed_agent.report import build_report
from distributed_agent.spec import parse_spec
from distributed_agent.sweep import run_sweep

TINY = {"variant": "tutorial", "hidden_size": 16, "batch_size": 32, "updates": 20, "eval_every": 5}


def small_spec(name: str):
    return parse_spec(
        {
            "name": name,
            "train": {**TINY, "eval_episodes": 32, "final_eval_episodes": 64},
            "search": {"lr": {"grid": [0.001, 0.003]}},
            "seeds": 2,
        }
    )


def test_a_sweep_tracked_in_mlflow_reads_back_with_the_reports_numbers(tmp_path):
    pytest.importorskip("mlflow", reason="the mlflow extra is not installed")
    from mlflow.tracking import MlflowClient

    spec = small_spec("tracked")
    database = tmp_path / "mlflow.db"
    path = run_sweep(spec, storage=str(tmp_path / "runs"), verbose=0, mlflow=str(database))
    trials = build_report(path).trials
    client = MlflowClient(tracking_uri=f"sqlite:///{database}")
    runs = client.search_runs([client.get_experiment_by_name("tracked").experiment_id])
    assert len(runs) == len(trials) == 4
    for run in runs:
        assert run.info.status == "FINISHED"
        params = run.data.params
        [trial] = [
            t for _, t in trials.iterrows() if t["seed"] == int(params["seed"]) and t["lr"] == float(params["lr"])
        ]
        for stage in range(3):  # the final greedy evaluation, as the report has it
            assert run.data.metrics[f"final/success/stage{stage}"] == pytest.approx(trial[f"success/stage{stage}"])
        history = client.get_metric_history(run.info.run_id, "success/min")
        assert [m.step for m in history] == [5, 10, 15, 20]  # every evaluation (the last one is the final)


def test_tracking_asked_without_its_extra_or_with_a_bad_value_is_one_line_before_ray_starts(
    tmp_path, monkeypatch, capsys
):
    import ray

    spec = tmp_path / "s.yaml"
    spec.write_text(yaml.safe_dump({"name": "s", "train": TINY}))
    command = ["sweep", str(spec), "--storage", str(tmp_path / "runs")]
    assert main([*command, "--mlflow", str(tmp_path)]) == 2
    assert "--mlflow:" in capsys.readouterr().err
    with monkeypatch.context() as patch:
        patch.setitem(sys.modules, "mlflow", None)
        patch.setitem(sys.modules, "mlflow.tracking", None)
        assert main([*command, "--mlflow", str(tmp_path / "m.db")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "pip install 'distributed_agent[mlflow]'" in err, err
    assert main([*command, "--wandb", "team/project"]) == 2
    assert "--wandb: a project name without '/'" in capsys.readouterr().err
    with monkeypatch.context() as patch:
        patch.setitem(sys.modules, "wandb", None)
        assert main([*command, "--wandb", "project"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "pip install 'distributed_agent[wandb]'" in err, err
    assert not ray.is_initialized() and not (tmp_path / "runs").exists()


def test_a_sweep_tracked_in_wandb_writes_one_offline_run_per_trial(tmp_path, monkeypatch):
    pytest.importorskip("wandb", reason="the wandb extra is not installed")
    monkeypatch.delenv("WANDB_MODE", raising=False)  # offline by default: nothing leaves the machine
    monkeypatch.setenv("WANDB_API_KEY", "")
    path = Path(run_sweep(small_spec("wandb_tracked"), storage=str(tmp_path / "runs"), verbose=0, wandb="proj"))
    runs = sorted((path / "wandb").glob("offline-run-*/run-*.wandb"))
    assert len(runs) == 4
    # The offline record files are W&B's own binary format; the names they hold are readable.
    names = set()
    for run in runs:
        data = run.read_bytes()
        assert b"success/min" in data and b"final/success/stage2" in data and b"wandb_tracked" in data
        names |= {f"trial_{k:04d}" for k in range(4) if f"trial_{k:04d}".encode() in data}
    assert names == {f"trial_{k:04d}" for k in range(4)}
    assert (build_report(path).trials["status"] == "terminated").all()
