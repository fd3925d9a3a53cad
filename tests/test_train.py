import json
import subprocess
import sys
from dataclasses import asdict
from pathlib import Path

import pytest
import torch

from distributed_agent import checkpoint
from distributed_agent.config import ConfigError
from distributed_agent.evaluation import greedy_rollouts
from distributed_agent.runtime import apply_process_settings
from distributed_agent.spec import load_spec
from distributed_agent.train import TrainConfig, new_run, results, run_updates, train
from distributed_agent.update import train_step

ROOT = Path(__file__).resolve().parents[1]
SMALL = dict(
    device="cpu",
    init="episode",
    loss="masked",
    curriculum="mastery",
    lr=3e-3,
    entropy_coef=0.03,
    hidden_size=32,
    batch_size=64,
    updates=40,
    eval_every=5,
    eval_episodes=64,
    final_eval_episodes=200,
)


def fingerprint(result):
    return json.dumps(
        {
            "success": result.final_success,
            "reward": result.final_reward,
            "history": [asdict(e) | {"seconds": 0} for e in result.history],
            "episodes": result.episodes,
            "updates": result.updates,
            "samples": result.samples,
        }
    )


def test_same_config_and_seed_give_identical_numbers():
    config = TrainConfig(**SMALL)
    assert fingerprint(train(config)) == fingerprint(train(config))
    assert fingerprint(train(config)) != fingerprint(train(config.replace(seed=1)))


RESUME_SCRIPT = """
import json, sys
from dataclasses import asdict
from distributed_agent import checkpoint, runtime, train
members = checkpoint.load(sys.argv[1])
runtime.apply_process_settings(members[0].config)  # as every entry point does
train.run_updates(members)
[result] = train.results(members)
print(json.dumps({"success": result.final_success, "reward": result.final_reward,
                  "history": [asdict(e) | {"seconds": 0} for e in result.history],
                  "episodes": result.episodes, "updates": result.updates, "samples": result.samples}))
"""


@pytest.mark.parametrize(
    "extra",
    [
        {},
        {
            "variant": "declared",
            "policy_head": "per_stage",
            "novelty_bonus": 0.5,
            "explore_epsilon": 0.1,
            "self_imitation": 1.0,
            "action_space": "tools",
        },
        {"action_novelty_bonus": 1.0, "rnd_bonus": 1.0, "rnd_states": "history", "self_imitation": 1.0},
        {"rnd_bonus": 1.0, "rnd_states": "agent", "self_imitation": 1.0},
    ],
    ids=["plain", "exploration", "general_novelty", "rnd_on_agent_states"],
)
def test_half_save_restore_in_a_new_process_and_half_again_is_identical(tmp_path, extra):
    config = TrainConfig(**{**SMALL, **extra})
    straight = train(config)
    apply_process_settings(config)  # as every entry point does
    run = new_run(config)
    run_updates([run], until=20)
    saved = checkpoint.save([run], tmp_path / "half.pt")
    out = subprocess.run(
        [sys.executable, "-c", RESUME_SCRIPT, str(saved)], capture_output=True, text=True, check=True, cwd=ROOT
    )
    assert json.loads(out.stdout) == json.loads(fingerprint(straight))
    assert straight.updates == 40 and len(straight.history) == 8


def test_training_called_directly_runs_under_the_configs_thread_count_and_restores_the_callers():
    config = TrainConfig(**{**SMALL, "updates": 10, "eval_every": 5})
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        seen = []
        run = new_run(config)
        run_updates([run], callback=lambda members: seen.append(torch.get_num_threads()))
        assert seen == [config.num_threads] * 2 and torch.get_num_threads() == 2
        [result] = results([run])
        assert torch.get_num_threads() == 2
        assert result.final_success == train(config).final_success
    finally:
        torch.set_num_threads(before)


def test_a_diverging_run_raises_a_clear_error():
    config = TrainConfig(**{**SMALL, "lr": 1e30, "updates": 30})
    with pytest.raises(FloatingPointError, match=r"loss became (nan|inf|-inf) at update \d+ \(lr=1e\+30, seed 0\)"):
        train(config)


def test_the_fixed_config_learns_every_stage_of_the_tutorial_environment():
    config = load_spec(ROOT / "experiments/fixed.yaml").train.replace(device="cpu")
    result = train(config)
    assert min(result.final_success) >= 0.99, result.final_success  # 1,000 greedy episodes per stage
    assert result.episodes <= 150_000


def test_the_tutorial_config_does_not():
    spec = load_spec(ROOT / "experiments/tutorial.yaml")
    assert spec.train == TrainConfig(device=spec.train.device)  # the defaults are the tutorial
    for seed in (0, 1, 2):
        result = train(spec.train.replace(seed=seed, device="cpu"))
        assert result.final_success[1] < 0.2 and result.final_success[2] < 0.5, (seed, result.final_success)
        assert result.episodes == 60 * 192


def test_mastery_curriculum_unlocks_in_order_and_keeps_replaying():
    run = new_run(TrainConfig(**{**SMALL, "hidden_size": 64, "batch_size": 256, "updates": 120}))
    assert run.curriculum.batch_stages(1, 64).unique().tolist() == [0]
    stages_seen = []
    run_updates(
        [run],
        callback=lambda members: stages_seen.append(
            sorted(set(run.curriculum.batch_stages(run.update + 1, 64).tolist()))
        ),
    )
    assert stages_seen[-1] == [0, 1, 2]
    assert stages_seen == sorted(stages_seen, key=len)  # never locks a stage again
    assert all(s == list(range(len(s))) for s in stages_seen)  # always replays earlier stages


def test_tutorial_and_mixed_curricula_follow_the_tutorial_schedule():
    from distributed_agent.curriculum import Curriculum

    tutorial, mixed = Curriculum("one_stage"), Curriculum("mixed")
    expected = [0] * 30 + [1] * 20 + [2] * 20
    assert [tutorial.batch_stages(u, 4)[0].item() for u in range(1, 71)] == expected
    assert mixed.batch_stages(1, 6).tolist() == [0] * 6
    assert mixed.batch_stages(31, 6).tolist() == [0, 0, 0, 1, 1, 1]
    assert mixed.batch_stages(51, 6).tolist() == [0, 0, 1, 1, 2, 2]
    mastery = Curriculum("mastery", threshold=0.9)
    mastery.observe([0.8, 0.0, 0.0], episodes=100)
    assert mastery.unlocked == 1
    mastery.observe([0.95, 0.0, 0.0], episodes=200)
    assert mastery.unlocked == 2 and mastery.unlocked_at_episode == [0, 200]
    assert mastery.batch_stages(99, 5).tolist() == [0, 0, 0, 1, 1]


def test_tool_action_space_and_newest_stage_entropy_train_on_the_declared_variant():
    from distributed_agent.env import TOOL_TOKENS

    config = TrainConfig(
        **{
            **SMALL,
            "variant": "declared",
            "action_space": "tools",
            "newest_stage_entropy_coef": 0.3,
            "path_shaping": 0.2,
            "updates": 10,
        }
    )
    run = new_run(config)
    run_updates([run])
    _, actions, _ = greedy_rollouts([run], 2, 64, [torch.Generator().manual_seed(0)])
    assert set(actions.unique().tolist()) <= set(TOOL_TOKENS)
    assert all(
        sample["actions"].split()[0] in {"MUL", "ADD", "SUB", "ANS", "STO", "RCL"}
        for sample in results([run])[0].samples
    )
    with pytest.raises(ConfigError, match="path_shaping: applies to variant declared only"):
        TrainConfig(path_shaping=0.1)
    with pytest.raises(ConfigError, match="action_space: must be one of all, tools"):
        TrainConfig(action_space="digits")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt and /proc page-fault counts")
def test_updates_reuse_freed_memory_instead_of_faulting_in_fresh_pages():
    # glibc's defaults unmapped each update's temporaries, ~900 page faults per update at batch 192
    # (benchmarks/allocator_ab.py); entry points ask glibc to keep freed memory (apply_process_settings).
    import resource

    config = TrainConfig(batch_size=192, updates=40)
    apply_process_settings(config)
    run = new_run(config)
    for _ in range(10):
        train_step([run])
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(20):
        train_step([run])
    faults_per_update = (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / 20
    assert faults_per_update < 50
