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

After every round of decisions the driver writes the round to the experiment folder
(`pbt_round.json`, JSON): its evaluation, where each live trial goes on from (its own checkpoint of
that evaluation, or its donor's) with which values, and the schedulers' random states (and PB2's
data). `--resume` restarts the unfinished trials from that round and the scheduler from that state,
so a resumed experiment makes the decisions, and ends with the numbers, of one never interrupted;
the work done since the round is done again.
"""

from __future__ import annotations

import contextlib
import logging
import math
import random
from collections.abc import Callable


def make_pbt(spec, save_round: Callable[[dict], None] | None = None, last_round: dict | None = None):
    """The scheduler of a `scheduler: pbt` spec; its mutations live in each trial's config at trial.hp.
    save_round is called with each round's record; last_round is the record to resume from."""
    from ray.tune.schedulers import PopulationBasedTraining

    rng = random.Random(spec.pbt_seed)

    def sampler(dimension):
        low, high = dimension.values
        if dimension.kind == "loguniform":
            return lambda: math.exp(rng.uniform(math.log(low), math.log(high)))
        return lambda: rng.uniform(low, high)

    class SeededPopulationBasedTraining(Rounds, PopulationBasedTraining):
        pass

    scheduler = SeededPopulationBasedTraining(
        time_attr="evaluation",
        perturbation_interval=spec.pbt_interval,
        hyperparam_mutations={"trial": {"hp": {d.name: sampler(d) for d in spec.mutations}}},
        quantile_fraction=spec.pbt_quantile,
        resample_probability=spec.pbt_resample,
        custom_explore_fn=_clipper(spec),
        synch=True,
        require_attrs=False,  # a trial's final report carries no `evaluation`: it is not perturbed
    )
    scheduler.keep_rounds(Randomness(rng), spec, save_round, last_round)
    return scheduler


def make_pb2(spec, save_round: Callable[[dict], None] | None = None, last_round: dict | None = None):
    """The scheduler of a `scheduler: pb2` spec (needs scikit-learn: the pb2 extra)."""
    import numpy as np
    from ray.tune.schedulers.pb2 import PB2

    class SeededPB2(Rounds, PB2):
        def round_extras(self, key_of: dict[str, str]) -> dict:
            """PB2's memory: the data its Gaussian process is fit on (trials named by key)."""
            data = self.data.copy()
            if "Trial" in data:
                data["Trial"] = [key_of.get(name, name) for name in data["Trial"]]
            return {
                "data": data.to_dict("list"),
                "current": None if self.current is None else self.current.tolist(),
                "last_exploration_time": int(self.last_exploration_time),
            }

        def _get_new_config(self, trial, trial_to_clone):
            # PB2's data holds rows in the order trials reported, which timing decides, and its fit
            # depends on the order: put them in an order of their own (time, then trial key) first.
            names = {str(t): self._key(t) for t in self._trial_state}
            keys = [names.get(name, name) for name in self.data["Trial"]]
            ordered = self.data.assign(_key=keys).sort_values(["Time", "_key"], kind="stable")
            self.data = ordered.drop(columns="_key").reset_index(drop=True)
            return super()._get_new_config(trial, trial_to_clone)

        def restore_extras(self, extras: dict) -> None:
            import pandas as pd

            self.data = pd.DataFrame(extras["data"])
            self.current = None if extras["current"] is None else np.array(extras["current"])
            self.last_exploration_time = extras["last_exploration_time"]

        def on_trial_add(self, tune_controller, trial):
            super().on_trial_add(tune_controller, trial)
            if "Trial" in self.data:  # the resumed data's rows of this trial, under its new name
                self.data.loc[self.data["Trial"] == self._key(trial), "Trial"] = str(trial)

    scheduler = SeededPB2(
        time_attr="evaluation",
        perturbation_interval=spec.pbt_interval,
        hyperparam_bounds={"trial": {"hp": {d.name: list(d.values) for d in spec.mutations}}},
        quantile_fraction=spec.pbt_quantile,
        custom_explore_fn=_clipper(spec),  # PB2 rounds through float32: 1e-4 may come back as 9.99e-5
        synch=True,
        require_attrs=False,
    )
    randomness = Randomness(random.Random(spec.pbt_seed), [np.random.RandomState(spec.pbt_seed).get_state()])
    scheduler.keep_rounds(randomness, spec, save_round, last_round)
    return scheduler


class Randomness:
    """A scheduler's own random generators (Python's; numpy's for PB2), lent to Tune's module
    while it decides (`active`), and saved to JSON and back between rounds."""

    def __init__(self, rng: random.Random, numpy_state: list | None = None):
        self.rng, self.numpy_state = rng, numpy_state

    @contextlib.contextmanager
    def active(self):
        from ray.tune.schedulers import pbt as pbt_module

        with _module_random(pbt_module, self.rng):
            if self.numpy_state is None:
                yield
            else:
                with _numpy_random(self.numpy_state):
                    yield

    def to_json(self) -> dict:
        version, internal, gauss = self.rng.getstate()
        state = {"random": [version, list(internal), gauss]}
        if self.numpy_state is not None:
            name, keys, position, has_gauss, cached = self.numpy_state[0]
            state["numpy"] = [name, [int(k) for k in keys], int(position), int(has_gauss), float(cached)]
        return state

    def restore(self, state: dict) -> None:
        import numpy as np

        version, internal, gauss = state["random"]
        self.rng.setstate((version, tuple(internal), gauss))
        if self.numpy_state is not None:
            name, keys, position, has_gauss, cached = state["numpy"]
            self.numpy_state[0] = (name, np.array(keys, dtype=np.uint32), position, has_gauss, cached)


class Rounds:
    """Mixed into a synchronous PBT scheduler: records each round of decisions (see the module's
    doc) and, on --resume, starts from the last one."""

    def keep_rounds(self, randomness: Randomness, spec, save_round, last_round: dict | None) -> None:
        self._randomness, self._mutated = randomness, [d.name for d in spec.mutations]
        self._save_round, self._last_round = save_round, last_round
        self._donors: dict[str, str] = {}
        self._keys: dict[str, str] = {}  # trial id -> the trial's key
        self._holding_late_round = False
        _quiet_about_final_reports()
        if last_round is not None:
            randomness.restore(last_round["random_state"])
            self._next_perturbation_sync = last_round["next_round"]
            self.restore_extras(last_round.get("extras") or {})

    def round_extras(self, key_of: dict[str, str]) -> dict:
        return {}

    def restore_extras(self, extras: dict) -> None:
        pass

    def on_trial_add(self, tune_controller, trial):
        self._keys[trial.trial_id] = trial.config["trial"]["key"]
        super().on_trial_add(tune_controller, trial)
        if self._last_round is not None:  # every resumed trial starts at the last round
            state = self._trial_state[trial]
            state.last_perturbation_time = state.last_train_time = self._last_round["evaluation"]

    def _exploit(self, tune_controller, trial, trial_to_clone):
        """Take the donor's state and explore its values, keeping the trial's own identity (Tune
        copies the donor's whole config, which names the donor's key and attempt)."""
        own = {name: trial.config["trial"][name] for name in ("key", "attempt", "resume_from")}
        self._donors[self._key(trial)] = self._key(trial_to_clone)
        super()._exploit(tune_controller, trial, trial_to_clone)
        trial.set_config({**trial.config, "trial": {**trial.config["trial"], **own}})

    def _key(self, trial) -> str:
        return self._keys[trial.trial_id]

    def on_trial_result(self, tune_controller, trial, result):
        before = self._next_perturbation_sync
        with self._randomness.active():
            decision = super().on_trial_result(tune_controller, trial, result)
        if self._next_perturbation_sync != before:  # all trials met: a round of decisions was made
            if self._save_round is not None:
                self._save_round(self._round_record(tune_controller, result[self._time_attr]))
            self._donors = {}
        return decision

    def choose_trial_to_run(self, tune_controller):
        """Tune's synchronous PBT keeps a trial paused at a round until every live trial reaches it,
        and looks again only when a result comes in. A trial that finishes before the round (its
        members solved, or its budget spent) sends a final report without `evaluation`, which PBT
        skips, so the paused trials waited for ever. When every live trial waits at the round, the
        round is held now, as if the last of them had just arrived with its report."""
        trial = super().choose_trial_to_run(tune_controller)
        if trial is not None:
            return trial
        live = [t for t in tune_controller.get_trials() if not t.is_finished()]
        if not live or not all(self._waiting_at_round(t) for t in live):
            return None
        last = max(live, key=self._key)
        self._holding_late_round = True
        try:
            self.on_trial_result(tune_controller, last, self._trial_state[last].last_result)
        finally:
            self._holding_late_round = False
        return super().choose_trial_to_run(tune_controller)

    def _waiting_at_round(self, trial) -> bool:
        from ray.tune.experiment import Trial

        state = self._trial_state[trial]
        return trial.status == Trial.PAUSED and state.last_train_time >= self._next_perturbation_sync

    def _save_trial_state(self, state, time, result, trial):
        if self._holding_late_round:  # saved when the report came; PB2 would record its data twice
            return state.last_score
        return super()._save_trial_state(state, time, result, trial)

    def _round_record(self, tune_controller, evaluation: int) -> dict:
        trials = tune_controller.get_trials()
        live = [t for t in trials if not t.is_finished()]
        return {
            "evaluation": evaluation,
            "next_round": self._next_perturbation_sync,
            "trials": {
                self._key(t): {
                    "from": self._donors.get(self._key(t), self._key(t)),
                    "hp": {name: t.config["trial"]["hp"][name] for name in self._mutated},
                }
                for t in live
            },
            "random_state": self._randomness.to_json(),
            "extras": self.round_extras({str(t): self._key(t) for t in trials}),
        }


class _FinalReportFilter(logging.Filter):
    """A trial's final report carries no `evaluation` on purpose (no perturbation at the end); Tune
    warns about it once per sweep, printing the whole report (kilobytes, members included)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("Cannot find time_attr")


def _quiet_about_final_reports() -> None:
    tune_pbt = logging.getLogger("ray.tune.schedulers.pbt")
    if not any(isinstance(f, _FinalReportFilter) for f in tune_pbt.filters):
        tune_pbt.addFilter(_FinalReportFilter())


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
