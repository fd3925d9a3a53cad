"""No number moves silently: the evaluation histories of four reference configurations, pinned.

Each runs 100 updates of a committed spec's train block (stop_at_success off, CPU, one thread)
through the public API. Every evaluation (update, episodes, newest stage, per-stage success and
reward, loss) and the final per-stage success and reward are hashed, exactly (floats by repr).
A change that moves one must say why, and the published studies must then be re-run with the code
that publishes them.

Exact numbers hold for one kind of CPU (runtime.cpu_description: the model and the instruction
set torch's kernels use), not across kinds: an AVX2 kernel sums in another order than an AVX-512
one. So the hashes are pinned per kind. Intel Xeon, AVX512 (the machine of every published study
up to 2026-11-24): computed at commit 5a251be and again on the code of issue #11, identical.
AMD EPYC, AVX2: computed at commit 972e7ce, whose training code is that of 39500f9, which passed
the Intel pins. AMD EPYC, AVX512: computed at commit a8c41ac, whose training code passed the AVX2
pins in CI and, on that AVX-512 machine run as AVX2 (ATEN_CPU_CAPABILITY=avx2, ONEDNN_MAX_CPU_ISA=AVX2),
again. On another kind the test skips, saying so; `python tests/test_pinned_history.py`
prints the hashes of the machine it runs on, to pin a new kind from a commit that passes a pinned
one.
"""

import hashlib
import json
from pathlib import Path

import pytest
import torch

from distributed_agent.runtime import cpu_description
from distributed_agent.spec import load_spec
from distributed_agent.train import train

ROOT = Path(__file__).resolve().parents[1]
SPECS = ("fixed", "memory_emergence", "memory_without_shaping", "tutorial")
PINNED = {
    "Intel(R) Xeon(R) Processor, AVX512": {
        "tutorial": "cdb03f70a129e3a7348855bdcfeea9809f02ccad1e03ad9b95e46bd389372d8a",
        "fixed": "a0a40b237ae5d444cb910cd3f9da35d8df021d30c00db35fc9c7ae1272dea3e6",
        "memory_emergence": "2e687d3d4dc64db0edec3732caea5d642041cfcaa8472cda33d49e823ab74d71",
        "memory_without_shaping": "6a91398987a7edd52b2e177f80f898e5051a4518ad7def2a3b4c3445ca9c5271",
    },
    "AMD EPYC, AVX2": {
        "tutorial": "eb2d599f6f9151be765b7044750d58dab671367a489026571bc550b15afd2349",
        "fixed": "f1689d98ea4a11f17f95e6b9ca87885dcbc5375a0e2e7272b7638f37dc512625",
        "memory_emergence": "c676e35f44174a6a2c66adfc77b1a4ca6e113919aabc6eafe739aa4b8163411e",
        "memory_without_shaping": "efc1e51626503baab6522ca8f8507a802cadaddfe01b944d252f2f0aac7fa518",
    },
    "AMD EPYC, AVX512": {
        "tutorial": "14885077acb8f7095a36ad63ddbdafd7737619fdc80aa816d24727ed76b40084",
        "fixed": "d6d0e364c3cf1844090e665cb854b4b36d0da20fd5b48e45a6adfadffe52f21f",
        "memory_emergence": "c676e35f44174a6a2c66adfc77b1a4ca6e113919aabc6eafe739aa4b8163411e",
        "memory_without_shaping": "efc1e51626503baab6522ca8f8507a802cadaddfe01b944d252f2f0aac7fa518",
    },
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


@pytest.mark.parametrize("spec_name", SPECS)
def test_the_evaluation_history_of_a_reference_configuration_is_unchanged(spec_name):
    kind = cpu_description()
    if kind not in PINNED:
        pytest.skip(f"no histories pinned for this kind of CPU ({kind}): exact numbers differ across kinds")
    assert history_hash(spec_name) == PINNED[kind][spec_name]


def test_every_kind_pins_every_reference_configuration():
    assert all(sorted(pins) == sorted(SPECS) for pins in PINNED.values())


if __name__ == "__main__":  # the hashes of this machine, to pin a new kind of CPU
    print(f"    {cpu_description()!r}: {{")
    for name in SPECS:
        print(f"        {name!r}: {history_hash(name)!r},")
    print("    },")
