"""Population-based training (Jaderberg et al. 2017) on configurations, reproducible.

Ray Tune's PopulationBasedTraining in synchronous mode (every decision waits until all trials
reach the perturbation point, so decisions depend on the trials' numbers, not on timing), with
three changes: its random draws (which donor to copy, resample or perturb, by which factor) come
from its own generator seeded by the spec, not from the driver's global `random`, which Ray and
Tune also draw from; resampled values are drawn by that generator too; and every explored value
is clipped to its mutation's bounds, so that a perturbed value stays a valid config.
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
    bounds = {d.name: d.values for d in spec.mutations}

    def sampler(dimension):
        low, high = dimension.values
        if dimension.kind == "loguniform":
            return lambda: math.exp(rng.uniform(math.log(low), math.log(high)))
        return lambda: rng.uniform(low, high)

    def clip_to_bounds(config: dict) -> dict:
        hp = config["trial"]["hp"]
        for name, (low, high) in bounds.items():
            hp[name] = min(max(hp[name], low), high)
        return config

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
        custom_explore_fn=clip_to_bounds,
        synch=True,
        require_attrs=False,  # a trial's final report carries no `evaluation`: it is not perturbed
    )


@contextlib.contextmanager
def _module_random(module, rng: random.Random):
    """Let `module` draw from `rng` where it calls random.*; its global `random` restored after."""
    original = module.random
    module.random = rng
    try:
        yield
    finally:
        module.random = original
