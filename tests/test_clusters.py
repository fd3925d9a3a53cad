"""Real clusters: separate Ray processes on this machine (a node dies mid-sweep)."""

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from ray_nodes import RayNodes
from test_sweep import TINY_TRAIN

from distributed_agent.report import build_report
from distributed_agent.spec import parse_spec
from distributed_agent.train import train

pytestmark = pytest.mark.cluster

NODE_LOSS_SPEC = {
    "name": "node_loss",
    "train": {**TINY_TRAIN, "updates": 1200, "eval_every": 40, "stop_at_success": None},
    "seeds": [11, 12, 13, 14],
    "checkpoint_every": 2,
    "max_failures": 3,
}


def last_reports(experiment: Path) -> dict[str, dict]:
    """trial folder -> its newest result line (attempt folders trial_K.rN counted with trial_K)."""
    newest = {}
    for result in sorted(experiment.glob("trial_*/result.json")):
        lines = [line for line in result.read_text().splitlines() if line.strip()]
        if lines:
            newest[result.parent.name] = json.loads(lines[-1])
    return newest


def test_a_sweep_survives_the_loss_of_a_worker_node_with_every_trial_as_if_undisturbed(tmp_path):
    nodes = RayNodes(tmp_path)
    spec_file = tmp_path / "node_loss.yaml"
    spec_file.write_text(yaml.safe_dump(NODE_LOSS_SPEC))
    experiment = tmp_path / "runs" / "node_loss"
    try:
        nodes.start_head()
        survivor, doomed = nodes.add_worker("w1", cpus=1), nodes.add_worker("w2", cpus=1)
        node_ids = nodes.node_ids()
        command = [sys.executable, "-m", "distributed_agent", "sweep", str(spec_file), "--address", nodes.address]
        command += ["--storage", str(tmp_path / "runs"), "--quiet"]
        sweep = subprocess.Popen(command, env=nodes.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        victims, deadline = [], time.time() + 300
        while not victims and time.time() < deadline and sweep.poll() is None:
            time.sleep(0.5)
            for folder, report in last_reports(experiment).items():
                checkpointed = any((experiment / folder).glob("checkpoint_*"))
                if report.get("node_id") == node_ids[doomed] and checkpointed and report.get("final") == 0:
                    running = last_reports(experiment).values()
                    victims = [r["seed"] for r in running if r.get("node_id") == node_ids[doomed] and not r["final"]]
        assert victims, "no trial ran on the second worker node"
        killed = nodes.kill(doomed)  # its raylet and every worker: a crash, a preemption, an OOM kill
        assert len(killed) >= 2 and not nodes.processes_of(doomed)
        output, _ = sweep.communicate(timeout=600)
        assert sweep.returncode == 0, output[-3000:]
    finally:
        if "sweep" in locals() and sweep.poll() is None:
            sweep.kill()
        nodes.stop()
    assert not any(nodes.processes_of(folder) for folder in nodes.folders)  # every process it started is gone
    trials = build_report(experiment).trials.set_index("seed")
    assert (trials["status"] == "terminated").all() and trials["final_eval"].all()
    spec = parse_spec(NODE_LOSS_SPEC)
    for seed, trial in trials.iterrows():
        undisturbed = train(spec.trial_config({"seed": seed}).replace(device="cpu"))
        assert [trial[f"success/stage{s}"] for s in range(3)] == undisturbed.final_success, seed
        assert [trial[f"reward/stage{s}"] for s in range(3)] == undisturbed.final_reward, seed
        assert trial["episodes"] == undisturbed.episodes
    for seed in victims:  # restarted from their checkpoints and finished on the surviving node
        assert trials.loc[seed, "failures"] >= 1 and trials.loc[seed, "node"] == node_ids[survivor], seed
