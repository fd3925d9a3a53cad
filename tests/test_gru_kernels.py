"""The CPU kernels of the fused rollout (gru_kernels, gru_cell.cpp) give the torch reference's
numbers bit for bit, and training goes on without them where they cannot be built."""

import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import torch
from test_train import fingerprint

from distributed_agent import gru_kernels
from distributed_agent.config import TrainConfig
from distributed_agent.fused_rollout import StackedWeights, population_rollout
from distributed_agent.model import ActorCritic
from distributed_agent.train import train


@pytest.fixture
def kernels(monkeypatch):
    """The kernels as built, without the load-time probe that would turn wrong ones off."""
    try:
        built = gru_kernels._build()
    except Exception as error:
        pytest.skip(f"the CPU kernels cannot be built here: {error}")
    monkeypatch.setattr(gru_kernels, "_load", lambda: built)
    return built


def rollout_and_gradients(models, contexts, stages, steps, **kwargs):
    weights = StackedWeights.of(models)
    actions, logits, values, _ = population_rollout(weights, contexts, stages, steps, **kwargs)
    loss = logits.logsumexp(-1).sum() + (values * values).sum()
    return [actions, logits, values, *torch.autograd.grad(loss, [p for m in models for p in m.parameters()])]


def test_the_kernels_pass_their_load_time_probe(kernels):
    assert gru_kernels._reproduces_torch(kernels)


@pytest.mark.parametrize("policy_head", ["shared", "per_stage"])
def test_a_population_rollout_and_its_gradients_are_bit_identical_with_the_kernels(policy_head, kernels, monkeypatch):
    # Odd sizes (hidden 37, batch 29): the kernels' vectorised loops and their scalar tails.
    torch.manual_seed(5)
    models = [ActorCritic(37, policy_head=policy_head) for _ in range(3)]
    generator = torch.Generator().manual_seed(1)
    contexts = [torch.randint(0, 18, (29, 5), generator=generator) for _ in models]
    stages = torch.randint(0, 3, (3, 29), generator=generator)
    noise = torch.stack([m.gumbel_noise(7, 29, generator) for m in models])
    forced = torch.where(torch.rand(3, 29, 7, generator=generator) < 0.2, 12, -1)
    for kwargs in ({"noise": noise}, {"noise": noise, "forced": forced}, {}):
        with_kernels = rollout_and_gradients(models, contexts, stages, 7, **kwargs)
        monkeypatch.setattr(gru_kernels, "enabled", False)
        with_torch = rollout_and_gradients(models, contexts, stages, 7, **kwargs)
        monkeypatch.setattr(gru_kernels, "enabled", True)
        assert all(torch.equal(a, b) for a, b in zip(with_kernels, with_torch))


def test_training_with_and_without_the_kernels_gives_the_same_numbers(kernels, monkeypatch):
    config = TrainConfig(updates=30, batch_size=48, hidden_size=40, eval_every=10, eval_episodes=200, seed=3)
    fast = train(config)
    monkeypatch.setattr(gru_kernels, "enabled", False)
    reference = train(config)
    assert fingerprint(fast) == fingerprint(reference)


def test_a_failed_build_warns_once_and_training_goes_on(monkeypatch):
    def no_compiler():
        raise RuntimeError("no C++ compiler found")

    monkeypatch.setattr(gru_kernels, "_build", no_compiler)
    gru_kernels._load.cache_clear()
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            assert gru_kernels.for_tensor(torch.zeros(1)) is None
            assert gru_kernels.for_tensor(torch.zeros(1)) is None
            result = train(TrainConfig(updates=3, batch_size=16, hidden_size=16, eval_every=3, eval_episodes=50))
        messages = [str(w.message) for w in caught if "GRU kernels" in str(w.message)]
        assert len(messages) == 1 and "no C++ compiler found" in messages[0]
        assert result.updates == 3
    finally:
        gru_kernels._load.cache_clear()


def test_only_float32_cpu_tensors_use_the_kernels():
    assert gru_kernels.for_tensor(torch.zeros(1, dtype=torch.float64)) is None
    assert gru_kernels.for_tensor(torch.zeros(1, device="meta")) is None


def test_a_builder_killed_inside_torch_s_lock_does_not_hang_the_next_one(kernels):
    # torch's build lock is a plain file; a process killed while holding it (building or loading)
    # leaves it behind, and torch alone would wait on it forever.
    stale = Path(kernels.__file__).parent / "lock"
    stale.touch()
    try:
        loaded = subprocess.run(
            [sys.executable, "-c", "from distributed_agent import gru_kernels; print(gru_kernels._build().__name__)"],
            capture_output=True,
            text=True,
            timeout=300,
        )
    finally:
        stale.unlink(missing_ok=True)
    assert loaded.returncode == 0 and loaded.stdout.strip() == kernels.__name__, loaded.stderr[-2000:]
