"""Population-based training on configurations, reproducible: PBT (Jaderberg et al. 2017) and
PB2 (Parker-Holder et al. 2020, which chooses new values with a Gaussian-process bandit within
the mutations' bounds instead of perturbing them at random).

Ray Tune's schedulers in synchronous mode (every decision waits until all trials reach the
perturbation point, so decisions depend on the trials' numbers, not on timing), with their random
draws (which donor to copy, resample or perturb, by which factor; PB2's acquisition starts) taken
from generators of their own seeded by the spec, not from the driver's global `random` and
`numpy.random`, which Ray and Tune also draw from; PBT's resampled values are drawn by that
generator too, and its explored values clipped to the mutation's bounds, so that a perturbed value
stays a valid config.
"""

from __future__ import annotations

import contextlib
import math
import random


def make_pbt(spec):
    """The scheduler of a `scheduler: pbt` spec; its mutations live in each trial's config at trial.hp."""
    from ray.tune.schedulers import PopulationBasedTraining
    from ray.tune.schedulers import pbt as pbt_module

    rng = random.Random(spec.pbt_seed)

    def sampler(dimension):
        low, high = dimension.values
        if dimension.kind == "loguniform":
            return lambda: math.exp(rng.uniform(math.log(low), math.log(high)))
        return lambda: rng.uniform(low, high)

    class SeededPopulationBasedTraining(PopulationBasedTraining):
        def on_trial_result(self, tune_controller, trial, result):
            with _module_random(pbt_module, rng):
                return super().on_trial_result(tune_controller, trial, result)

    return SeededPopulationBasedTraining(
        time_attr="evaluation",
        perturbation_interval=spec.pbt_interval,
        hyperparam_mutations={"trial": {"hp": {d.name: sampler(d) for d in spec.mutations}}},
        quantile_fraction=spec.pbt_quantile,
        resample_probability=spec.pbt_resample,
        custom_explore_fn=_clipper(spec),
        synch=True,
        require_attrs=False,  # a trial's final report carries no `evaluation`: it is not perturbed
    )


def make_pb2(spec):
    """The scheduler of a `scheduler: pb2` spec (needs scikit-learn: the pb2 extra)."""
    import numpy as np
    from ray.tune.schedulers import pbt as pbt_module
    from ray.tune.schedulers.pb2 import PB2

    rng = random.Random(spec.pbt_seed)
    numpy_state = [np.random.RandomState(spec.pbt_seed).get_state()]

    class SeededPB2(PB2):
        def on_trial_result(self, tune_controller, trial, result):
            with _module_random(pbt_module, rng), _numpy_random(numpy_state):
                return super().on_trial_result(tune_controller, trial, result)

    return SeededPB2(
        time_attr="evaluation",
        perturbation_interval=spec.pbt_interval,
        hyperparam_bounds={"trial": {"hp": {d.name: list(d.values) for d in spec.mutations}}},
        quantile_fraction=spec.pbt_quantile,
        custom_explore_fn=_clipper(spec),  # PB2 rounds through float32: 1e-4 may come back as 9.99e-5
        synch=True,
        require_attrs=False,
    )


def _clipper(spec):
    """An explore function that clips every mutated value to its bounds."""
    bounds = {d.name: d.values for d in spec.mutations}

    def clip_to_bounds(config: dict) -> dict:
        hp = config["trial"]["hp"]
        for name, (low, high) in bounds.items():
            hp[name] = min(max(float(hp[name]), low), high)
        return config

    return clip_to_bounds


@contextlib.contextmanager
def _numpy_random(state: list):
    """numpy's global generator at `state[0]` for the block; the block's draws advance it there."""
    import numpy as np

    saved = np.random.get_state()
    np.random.set_state(state[0])
    try:
        yield
    finally:
        state[0] = np.random.get_state()
        np.random.set_state(saved)


@contextlib.contextmanager
def _module_random(module, rng: random.Random):
    """Let `module` draw from `rng` where it calls random.*; its global `random` restored after."""
    original = module.random
    module.random = rng
    try:
        yield
    finally:
        module.random = original
