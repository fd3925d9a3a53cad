import sys

import pytest
import yaml

from distributed_agent.cli import main
from distributed_agent.report import build_report
from distributed_agent.spec import parse_spec
from distributed_agent.sweep import run_sweep

pytest.importorskip("mlflow", reason="the mlflow extra is not installed")

TINY = {"variant": "tutorial", "hidden_size": 16, "batch_size": 32, "updates": 20, "eval_every": 5}


def test_a_sweep_tracked_in_mlflow_reads_back_with_the_reports_numbers(tmp_path):
    from mlflow.tracking import MlflowClient

    spec = parse_spec(
        {
            "name": "tracked",
            "train": {**TINY, "eval_episodes": 32, "final_eval_episodes": 64},
            "search": {"lr": {"grid": [0.001, 0.003]}},
            "seeds": 2,
        }
    )
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


def test_mlflow_asked_without_the_extra_or_with_a_folder_is_one_line_before_ray_starts(tmp_path, monkeypatch, capsys):
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
    assert not ray.is_initialized() and not (tmp_path / "runs").exists()
