"""Stable-Baselines3 agents in the runner: our conventions (seeds, evaluation, checkpoints, sweeps)."""

import os
import sys
import tempfile
from pathlib import Path

import pytest
import ray.cloudpickle

pytest.importorskip("sb3_contrib", reason="the baselines extra is not installed")

from test_sweep import results_by_trial  # noqa: E402

from distributed_agent import checkpoint  # noqa: E402
from distributed_agent.config import ConfigError, TrainConfig  # noqa: E402
from distributed_agent.evaluation import evaluation_generator, greedy_rollouts  # noqa: E402
from distributed_agent.report import build_report  # noqa: E402
from distributed_agent.spec import parse_spec  # noqa: E402
from distributed_agent.state import new_population  # noqa: E402
from distributed_agent.sweep import run_sweep  # noqa: E402
from distributed_agent.train import run_updates, train, train_population  # noqa: E402

ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])

TINY = {
    "variant": "shifted",
    "curriculum": "mastery",
    "hidden_size": 16,
    "batch_size": 32,
    "updates": 20,
    "eval_every": 5,
    "eval_episodes": 32,
    "final_eval_episodes": 100,
    "parallel_envs": 8,
    "rollout_steps": 16,
    "explain_samples": 1,
}


def tiny(agent: str, **changes) -> TrainConfig:
    extra = {"minibatch_size": 32} if agent != "a2c" else {}
    return TrainConfig.from_dict({**TINY, "agent": agent, **extra, **changes})


@pytest.mark.parametrize("agent", ["ppo", "a2c", "recurrent_ppo"])
def test_a_baseline_cut_in_two_by_a_checkpoint_gives_the_numbers_of_one_run_straight_through(agent, tmp_path):
    config = tiny(agent)
    straight = train(config)
    assert straight.episodes >= config.updates * config.batch_size  # the whole budget, in episodes
    # Evaluated after the rollout that crosses each 5th update (a rollout may cross a little further).
    assert [e.update // 5 for e in straight.history] == [1, 2, 3, 4] and straight.history[-1].update == 20
    assert straight.samples and straight.samples[0]["actions"]

    first = new_population(config, [config.seed])
    run_updates(first, until=10)
    checkpoint.save(first, tmp_path / "half.pt")
    (resumed,) = train_population(config, [config.seed], resume_from=tmp_path / "half.pt")
    assert [e.success for e in resumed.history] == [e.success for e in straight.history]
    assert resumed.final_success == straight.final_success and resumed.final_reward == straight.final_reward


def test_a_baseline_trained_in_a_population_equals_it_trained_alone():
    config = tiny("ppo")
    together = train_population(config, [3, 4])
    alone = train(config.replace(seed=4))
    assert together[1].final_success == alone.final_success
    assert [e.loss for e in together[1].history] == [e.loss for e in alone.history]
    assert together[0].final_success != together[1].final_success or together[0].history != together[1].history


def test_a_baseline_leaves_no_folder_in_the_temporary_directory(tmp_path, monkeypatch):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # where SB3's default logger makes one per model
    run_updates(new_population(tiny("ppo"), [0]), until=2)
    assert list(tmp_path.iterdir()) == []


def test_baselines_are_evaluated_on_the_tasks_our_agent_is_evaluated_on():
    ours = new_population(TrainConfig(seed=9), [9])
    baseline = new_population(tiny("a2c", seed=9), [9])
    for stage in range(3):
        operands, *_ = greedy_rollouts(ours, stage, 50, [evaluation_generator(ours[0], -1)])
        same, actions, outcome = greedy_rollouts(baseline, stage, 50, [evaluation_generator(baseline[0], -1)])
        assert (operands == same).all()
        assert actions.shape == (1, 50, 6) and outcome.correct.shape == (50,)


@pytest.mark.parametrize(
    "values, message",
    [
        ({"agent": "sac"}, "agent: must be one of ours, ppo, a2c, recurrent_ppo"),
        ({"agent": "a2c", "clip_range": 0.1}, "clip_range: applies to agent ppo or recurrent_ppo only"),
        ({"agent": "ppo", "loss": "masked"}, "loss: applies to agent ours only"),
        ({"rollout_steps": 64}, "rollout_steps: applies to agent ppo or a2c or recurrent_ppo only"),
        ({"agent": "ppo", "gamma": 1.5}, r"gamma: must be in \(0, 1\]"),
    ],
)
def test_baseline_fields_are_checked_where_they_are_declared(values, message):
    with pytest.raises(ConfigError, match=message):
        TrainConfig.from_dict(values)


def crash_once(marker: str, at_update: int):
    def trial(config, **kwargs):
        from distributed_agent import baselines, trainable

        if not os.path.exists(marker):
            original = baselines.last_loss

            def last_loss(run):
                if run.update >= at_update:
                    Path(marker).write_text(str(os.getpid()))
                    os._exit(1)  # the worker dies mid-trial, no cleanup
                return original(run)

            baselines.last_loss = last_loss
        trainable.run_trial(config, **kwargs)

    return trial


@pytest.mark.slow  # ~35 s; by default, a baseline cut in two by a checkpoint and our agent's worker-dies test
def test_a_baseline_sweep_whose_worker_dies_resumes_from_its_checkpoint_with_identical_numbers(tmp_path):
    spec = parse_spec(
        {
            "name": "ppo_crash",
            "train": {**TINY, "agent": "ppo", "minibatch_size": 32},
            "seeds": [5, 6],
            "seeds_per_trial": "all",
            "checkpoint_every": 1,
            "max_failures": 2,
        }
    )
    marker = tmp_path / "crashed"
    path = run_sweep(spec, storage=str(tmp_path / "runs"), trial_fn=crash_once(str(marker), 12))
    assert marker.exists()
    (lines,) = results_by_trial(path).values()
    members = {m["seed"]: m for m in lines[-1]["members"].values()}
    for seed in (5, 6):
        straight = train(spec.trial_config({"seed": seed}))
        assert [members[seed][f"success/stage{s}"] for s in range(3)] == straight.final_success
        assert members[seed]["episodes"] == straight.episodes
    report = build_report(path)
    assert sorted(report.trials["seed"]) == [5, 6] and (report.trials["failures"] == 1).all()


def test_population_based_training_of_a_baseline_is_refused_before_anything_starts():
    with pytest.raises(
        ConfigError, match="^scheduler: pbt changes our agent's fields while it trains; needs agent ours"
    ):
        parse_spec(
            {
                "train": {**TINY, "agent": "a2c"},
                "seeds": 2,
                "seeds_per_trial": "all",
                "scheduler": "pbt",
                "mutations": {"lr": {"loguniform": [1e-4, 1e-2]}},
            }
        )
