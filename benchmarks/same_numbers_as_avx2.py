"""Does this machine give an AVX2 machine's numbers? Trains RecurrentPPO, seed 619, for the first two
evaluations of part 618-619 (made on an AMD EPYC with AVX2) and prints both side by side; equal
episodes and loss to the last digit mean the same numbers. Run it with and without
`ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2` on an AVX-512 machine (about a minute each):

    ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2 python benchmarks/same_numbers_as_avx2.py
"""

import json
from pathlib import Path

from distributed_agent.runtime import cpu_description
from distributed_agent.spec import load_spec
from distributed_agent.train import train

ROOT = Path(__file__).resolve().parents[1]
PART = ROOT / "results/baselines_declared_recurrent_ppo/parts/baselines_declared_recurrent_ppo_seeds_618_619"

with open(PART / "trial_0001/result.json") as lines:
    reference = [json.loads(line) for line in lines][:2]
config = load_spec(ROOT / "experiments/baselines_declared_recurrent_ppo_seeds_618_619.yaml").train
result = train(config.replace(seed=619, updates=reference[-1]["update"] + 1))
print(f"here: {cpu_description()}; reference: {reference[0]['cpu']}")
for here, there in zip(result.history, reference):
    verdict = "same" if here.episodes == there["episodes"] and here.loss == there["loss"] else "DIFFERENT"
    print(f"update {here.update}: episodes {here.episodes} / {there['episodes']}, ", end="")
    print(f"loss {here.loss!r} / {there['loss']!r}: {verdict}")
