"""No number moves silently: the evaluation histories of four reference configurations, pinned.

Each runs 100 updates of a committed spec's train block (stop_at_success off, CPU, one thread)
through the public API. Every evaluation (update, episodes, newest stage, per-stage success and
reward, loss) and the final per-stage success and reward are hashed, exactly (floats by repr).
The hashes were computed at commit 5a251be (the code that made every published study) and again
on the code of issue #11: identical. A change that moves one must say why, and the published
studies must then be re-run with the code that publishes them.
"""

import hashlib
import json
from pathlib import Path

import pytest
import torch

from distributed_agent.spec import load_spec
from distributed_agent.train import train

ROOT = Path(__file__).resolve().parents[1]
PINNED = {
    "tutorial": "cdb03f70a129e3a7348855bdcfeea9809f02ccad1e03ad9b95e46bd389372d8a",
    "fixed": "a0a40b237ae5d444cb910cd3f9da35d8df021d30c00db35fc9c7ae1272dea3e6",
    "memory_emergence": "2e687d3d4dc64db0edec3732caea5d642041cfcaa8472cda33d49e823ab74d71",
    "memory_without_shaping": "6a91398987a7edd52b2e177f80f898e5051a4518ad7def2a3b4c3445ca9c5271",
}


def history_hash(spec_name: str) -> str:
    config = load_spec(ROOT / "experiments" / f"{spec_name}.yaml").train.replace(
        updates=100, stop_at_success=None, device="cpu", num_threads=1, seed=0
    )
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        result = train(config)
    finally:
        torch.set_num_threads(threads)
    record = {
        "history": [
            [e.update, e.episodes, e.stage, list(map(repr, e.success)), list(map(repr, e.reward)), repr(e.loss)]
            for e in result.history
        ],
        "final": [list(map(repr, result.final_success)), list(map(repr, result.final_reward))],
    }
    return hashlib.sha256(json.dumps(record).encode()).hexdigest()


@pytest.mark.parametrize("spec_name", sorted(PINNED))
def test_the_evaluation_history_of_a_reference_configuration_is_unchanged(spec_name):
    assert history_hash(spec_name) == PINNED[spec_name]
