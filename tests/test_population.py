"""Populations: K seeds of one configuration trained as one, each member bit for bit its seed alone."""

import json
import subprocess
import sys
from dataclasses import asdict
from pathlib import Path

import pytest
import torch
from test_train import fingerprint

from distributed_agent import checkpoint, fused_rollout
from distributed_agent.config import ConfigError, TrainConfig
from distributed_agent.runtime import apply_process_settings
from distributed_agent.spec import load_spec
from distributed_agent.state import new_population
from distributed_agent.train import results, run_updates, train, train_population
from distributed_agent.trainable import follow_mutations, population_metrics

ROOT = Path(__file__).resolve().parents[1]
SEEDS = [4, 0, 9]


def reference(name: str, **changes) -> TrainConfig:
    config = load_spec(ROOT / "experiments" / f"{name}.yaml").train
    return config.replace(**{"updates": 40, "stop_at_success": None, "device": "cpu", "num_threads": 1, **changes})


CONFIGS = {
    # batch_mean init, the tutorial's loss and one-stage curriculum
    "tutorial": lambda: reference("tutorial"),
    # declared variant, per-stage heads, tool mask, epsilon, novelty, self-imitation, newest-stage entropy
    "memory_without_shaping": lambda: reference("memory_without_shaping", batch_size=96),
    # mastery curricula that unlock stages at different updates: contexts of different widths,
    # which the batch_mean init averages over
    "mastery_batch_mean": lambda: reference("fixed", init="batch_mean", updates=60),
    # the novelty bonuses that read only the agent (its action sets, RND on its GRU states)
    "general_novelty": lambda: reference(
        "fixed", action_novelty_bonus=1.0, action_novelty_cells="set", rnd_bonus=1.0, self_imitation=1.0
    ),
    # members that stop at different updates once solved (a low bar, to be reached early)
    "early_stop": lambda: reference("fixed", updates=60, stop_at_success=0.1),
}


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_every_member_has_the_numbers_of_its_seed_trained_alone(name):
    config = CONFIGS[name]()
    population = train_population(config, SEEDS)
    alone = [train(config.replace(seed=seed)) for seed in SEEDS]
    assert [fingerprint(r) for r in population] == [fingerprint(r) for r in alone]
    chunked = train_population(config.replace(members_per_step=2), SEEDS)  # stepped as 2 + 1 members
    assert [fingerprint(r) for r in chunked] == [fingerprint(r) for r in alone]
    with pytest.MonkeyPatch.context() as patch:  # one step of 3 members, its time loops over 2 + 1
        patch.setattr(fused_rollout, "CPU_LOOP_MEMBERS", 2)
        looped = train_population(config.replace(members_per_step=None), SEEDS)
    assert [fingerprint(r) for r in looped] == [fingerprint(r) for r in alone]
    if name == "early_stop":  # members did stop at different updates
        assert len({r.updates for r in population}) > 1 and max(r.updates for r in population) < config.updates
    if name == "mastery_batch_mean":  # members did train different stages at the same update
        assert len({r.history[-1].stage for r in population}) > 1


RESUME_SCRIPT = """
import json, sys
from dataclasses import asdict
from distributed_agent import checkpoint, runtime, train
members = checkpoint.load(sys.argv[1])
runtime.apply_process_settings(members[0].config)
train.run_updates(members)
print(json.dumps([[r.final_success, r.final_reward, [asdict(e) | {"seconds": 0} for e in r.history]]
                  for r in train.results(members)]))
"""


def test_a_population_saved_halfway_resumes_in_a_new_process_with_identical_numbers(tmp_path):
    config = CONFIGS["memory_without_shaping"]()
    straight = train_population(config, SEEDS)
    apply_process_settings(config)
    members = new_population(config, SEEDS)
    run_updates(members, until=20)
    saved = checkpoint.save(members, tmp_path / "half.pt")
    out = subprocess.run(
        [sys.executable, "-c", RESUME_SCRIPT, str(saved)], capture_output=True, text=True, check=True, cwd=ROOT
    )
    expected = [[r.final_success, r.final_reward, [asdict(e) | {"seconds": 0} for e in r.history]] for r in straight]
    assert json.loads(out.stdout) == json.loads(json.dumps(expected))
    # A checkpoint of another population size, or of other seeds, is refused in one line.
    with pytest.raises(ConfigError, match="holds 3 member\\(s\\), this run trains 2"):
        checkpoint.load_population_state(new_population(config, SEEDS[:2]), checkpoint.read(saved), "half.pt")
    with pytest.raises(ConfigError, match="another configuration or seeds"):
        checkpoint.restore(new_population(config, [1, 2, 3]), checkpoint.read(saved), "half.pt")


def test_a_single_run_checkpoint_of_the_earlier_format_reads_as_a_population_of_one(tmp_path):
    config = CONFIGS["tutorial"]().replace(updates=10)
    members = new_population(config, [0])
    run_updates(members)
    old_format = {"format": checkpoint.SINGLE_RUN_FORMAT, **checkpoint.member_state(members[0])}
    torch.save(old_format, tmp_path / "old.pt")
    (loaded,) = checkpoint.load(tmp_path / "old.pt")
    assert loaded.update == 10 and all(
        torch.equal(a, b) for a, b in zip(loaded.model.parameters(), members[0].model.parameters())
    )


def test_a_trial_is_judged_by_the_mean_over_its_members_and_the_share_solved():
    def member(seed, success_min, episodes):
        metrics = {key: float(seed) for key in ("loss", "seconds")}
        metrics.update({f"success/stage{s}": success_min for s in range(3)})
        metrics.update({f"reward/stage{s}": success_min / 2 for s in range(3)})
        return metrics | {"success/min": success_min, "episodes": episodes, "update": episodes // 10, "seed": seed}

    aggregate = population_metrics([member(0, 1.0, 100), member(1, 0.5, 300), member(2, 0.0, 200)])
    assert aggregate["success/min"] == 0.5 and aggregate["reward/stage1"] == 0.25
    assert aggregate["solved_share"] == 1 / 3
    assert aggregate["episodes"] == 600 and aggregate["update"] == 30  # compute spent; the furthest member


def test_a_populations_change_is_logged_at_its_update_also_in_a_member_that_solved_earlier():
    # A solved member stays at its update (140); PBT's change at the round of update 200 is logged
    # at 200 in every member, so the trial's reported schedule replays it at 200.
    config = CONFIGS["memory_without_shaping"]()
    members = new_population(config, SEEDS[:2])
    members[0].update, members[1].update = 140, 200
    follow_mutations(members, config.replace(lr=5e-3), ("lr",))
    assert [run.changes for run in members] == [[{"update": 200, "lr": 5e-3}]] * 2
    assert [run.config.lr for run in members] == [5e-3] * 2


def test_a_schedule_changes_hyperparameters_at_its_updates_and_survives_a_checkpoint(tmp_path):
    config = CONFIGS["memory_without_shaping"]().replace(
        schedule=[{"update": 0, "lr": 1e-3}, {"update": 20, "lr": 3e-3, "novelty_bonus": 0.5, "self_imitation": 0.2}]
    )
    straight = train_population(config, SEEDS[:2])
    members = new_population(config, SEEDS[:2])
    run_updates(members, until=20)
    assert members[0].optimizer.param_groups[0]["lr"] == 1e-3
    checkpoint.save(members, tmp_path / "half.pt")
    resumed = checkpoint.load(tmp_path / "half.pt")
    run_updates(resumed)
    assert resumed[0].config.lr == 3e-3 and resumed[0].optimizer.param_groups[0]["lr"] == 3e-3
    assert resumed[0].changes == config.schedule  # the run's log of changes is the schedule it followed
    assert [fingerprint(r) for r in results(resumed)] == [fingerprint(r) for r in straight]
    unscheduled = train(config.replace(schedule=[], seed=SEEDS[0]))
    assert fingerprint(unscheduled) != fingerprint(straight[0])
