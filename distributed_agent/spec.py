"""Experiment specs (YAML): fixed `train:` fields, a `search:` space, seeds and how to run them.

    name: default
    extends: base.yaml    # optional: start from that spec (a path relative to this file) and say
                          # only what changes; mappings merge field by field, a search or mutation
                          # dimension set to null is removed; name and description are not inherited
    train: {variant: shifted, loss: masked, ...}      # any TrainConfig field, fixed for all trials
    search:                                          # any TrainConfig field, one of:
      lr: {loguniform: [1.0e-3, 1.0e-2]}             #   grid / choice: [values]
      entropy_coef: {grid: [0.01, 0.03]}             #   uniform / loguniform: [low, high]
      hidden_size: {choice: [32, 64]}                #   randint: [low, high)  (high excluded)
    seeds: 3              # a count (seeds 0..n-1) or a list; every sampled config runs once per seed
    seeds_per_trial: 1    # seeds trained as one population in a trial: 1, N (groups of N), or all
    samples: 1            # draws of the random dimensions (grid dimensions are crossed with them)
    search_alg: random    # or optuna (pip install 'distributed_agent[optuna]')
    scheduler: fifo       # or asha (stops weak trials early); pbt or pb2 (population-based training)
    asha: {grace_period: 2, reduction_factor: 2}   # grace period in evaluations, like every unit below
    mutations:            # pbt/pb2: schedulable TrainConfig fields the search changes during training
      lr: {loguniform: [1.0e-4, 1.0e-2]}             #   uniform / loguniform: [low, high], low > 0
    pbt: {perturbation_interval: 4, quantile_fraction: 0.25, resample_probability: 0.25, seed: 0}
    resources: {cpu: 1, gpu: 0}
    max_failures: 2
    report_every: 1       # evaluations between reports to Tune (each costs the driver work)
    checkpoint_every: 5   # evaluations between checkpoints (a multiple of report_every)
    metric: success/min
    mode: max

A trial with several seeds trains them as one population (train.train_population: each seed's
numbers are those it gets alone) and reports each member's metrics and their aggregate, which the
scheduler and searcher judge: the mean over members of every metric (`success/min` is the mean of
the members' success/min) and `solved_share`, the share of members solved. With `all`, ASHA stops
and Optuna chooses configurations, not lucky seeds.

A spec is a file, or the name of one of the example specs packaged with the tool
(distributed_agent/experiments/, also at experiments/ in the repository): `sweep default`.

Units: train.eval_every counts updates; report_every, checkpoint_every and asha.grace_period count
evaluations (the scheduler's time is the trial's `evaluation` counter, not Tune's reports).
Everything is checked before Ray starts; an error names the field and what is allowed.
"""

from __future__ import annotations

import itertools
import math
import random
import re
from dataclasses import dataclass, field
from pathlib import Path

from .config import ConfigError, TrainConfig, coerce, schedulable_fields
from .metrics import OBJECTIVES, SUCCESS_MIN
from .safe_yaml import load_yaml

PACKAGED_SPECS = Path(__file__).parent / "experiments"

DISTRIBUTIONS = ("grid", "choice", "uniform", "loguniform", "randint")
SEARCH_ALGS = ("random", "optuna")
SCHEDULERS = ("fifo", "asha", "pbt", "pb2")
POPULATION_BASED = ("pbt", "pb2")
PBT_OPTIONS = ("perturbation_interval", "quantile_fraction", "resample_probability", "seed")
MODES = ("max", "min")
TOP_LEVEL = (
    "name",
    "description",
    "train",
    "search",
    "seeds",
    "seeds_per_trial",
    "samples",
    "search_alg",
    "scheduler",
    "asha",
    "mutations",
    "pbt",
    "resources",
    "max_failures",
    "report_every",
    "checkpoint_every",
    "metric",
    "mode",
)
NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")


@dataclass(frozen=True)
class Dimension:
    name: str
    kind: str
    values: tuple

    def sample(self, rng: random.Random):
        if self.kind == "choice":
            return rng.choice(self.values)
        low, high = self.values
        if self.kind == "uniform":
            return rng.uniform(low, high)
        if self.kind == "loguniform":
            return math.exp(rng.uniform(math.log(low), math.log(high)))
        return rng.randrange(low, high)  # randint: high excluded, as in Ray Tune


@dataclass(frozen=True)
class ExperimentSpec:
    name: str
    train: TrainConfig
    search: tuple[Dimension, ...] = ()
    seeds: tuple[int, ...] = (0,)
    seeds_per_trial: int = 1  # "all" is resolved to len(seeds)
    samples: int = 1
    search_alg: str = "random"
    scheduler: str = "fifo"
    asha_grace_period: int = 2  # in evaluations
    asha_reduction_factor: int = 2
    mutations: tuple[Dimension, ...] = ()  # pbt/pb2: what they may change (bounds), and the initial draw
    pbt_interval: int = 4  # in evaluations
    pbt_quantile: float = 0.25
    pbt_resample: float = 0.25
    pbt_seed: int = 0
    cpus_per_trial: float = 1.0
    gpus_per_trial: float = 0.0
    max_failures: int = 2
    report_every: int = 1
    checkpoint_every: int = 5
    metric: str = SUCCESS_MIN
    mode: str = "max"
    description: str = ""
    source: dict = field(default_factory=dict, compare=False)  # the YAML as read, saved with the run

    def variants(self) -> list[dict]:
        """Every trial of a random/grid search: grid crossed with `samples` draws, times seeds.

        Drawn here with a fixed RNG (not by Tune) so that each sampled config runs on every seed
        and the same spec always yields the same trials.
        """
        grid = [d for d in self.search if d.kind == "grid"]
        random_dims = [d for d in self.search if d.kind != "grid"] + list(self.mutations)  # pbt: initial values
        rng = random.Random(f"{self.name}:search")
        draws = [{d.name: d.sample(rng) for d in random_dims} for _ in range(self.samples)]
        trials = []
        for grid_values in itertools.product(*(d.values for d in grid)):
            for draw in draws:
                params = {**dict(zip((d.name for d in grid), grid_values)), **draw}
                trials.extend(self.seed_groups(params))
        return trials

    def seed_groups(self, params: dict) -> list[dict]:
        """A configuration's trials: one per seed, or one per group of seeds_per_trial seeds."""
        if self.seeds_per_trial == 1:
            return [{**params, "seed": seed} for seed in self.seeds]
        size = self.seeds_per_trial
        return [{**params, "seeds": list(self.seeds[i : i + size])} for i in range(0, len(self.seeds), size)]

    @property
    def swept_fields(self) -> list[str]:
        """The TrainConfig fields a sweep varies: searched, and mutated by pbt/pb2."""
        return [d.name for d in (*self.search, *self.mutations)]

    @property
    def trials_per_config(self) -> int:
        return math.ceil(len(self.seeds) / self.seeds_per_trial)

    def trial_config(self, params: dict) -> TrainConfig:
        """The TrainConfig of one trial: the fixed fields with the trial's sampled ones on top."""
        return self.train.replace(**params)


def load_spec(where: str | Path) -> ExperimentSpec:
    """The spec in a YAML file, or the packaged example spec of that name (`default`), its
    `extends:` chain resolved."""
    path = spec_path(where)
    return parse_spec(_read_extended(path, ()), default_name=path.stem)


def packaged_specs() -> list[str]:
    return sorted(p.stem for p in PACKAGED_SPECS.glob("*.yaml"))


def spec_path(where: str | Path) -> Path:
    """A spec file: the path given, else the packaged spec named `where` (with or without .yaml)."""
    path = Path(where)
    if path.is_file():
        return path
    packaged = PACKAGED_SPECS / (path.name if path.suffix == ".yaml" else f"{path.name}.yaml")
    if path.name == str(where) and packaged.is_file():
        return packaged
    raise ConfigError(
        f"spec: no such file {str(where)!r}; give a path or the name of one of the {len(packaged_specs())} packaged "
        f"specs in {PACKAGED_SPECS}, e.g. default, fixed, tutorial"
    )


def _read_extended(path: Path, chain: tuple[Path, ...]) -> dict:
    """The spec at `path` as data, merged over the spec it `extends:` (recursively)."""
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError:
        raise ConfigError(f"spec: {path} is not UTF-8 text") from None
    except OSError as error:
        raise ConfigError(f"spec: cannot read {path} ({error.strerror})") from None
    raw = load_yaml(text, f"spec: {path}")
    if not isinstance(raw, dict) or "extends" not in raw:
        return raw
    base = raw["extends"]
    if not isinstance(base, str) or not base.strip():
        raise ConfigError(f"extends: must be the path of a spec file, relative to {path} (got {base!r})")
    base_path = (path.parent / base).resolve()
    seen = (*chain, path.resolve())
    if base_path in seen:
        cycle = " -> ".join(p.name for p in (*seen[seen.index(base_path) :], base_path))
        raise ConfigError(f"extends: a cycle ({cycle}); a spec cannot extend itself")
    if not base_path.is_file():
        raise ConfigError(f"extends: no such file {base!r} (relative to {path.parent}, in {path.name})")
    base_raw = _read_extended(base_path, seen)
    if not isinstance(base_raw, dict):
        raise ConfigError(f"extends: {base!r} is not a spec (a mapping of spec fields)")
    return extend(base_raw, {k: v for k, v in raw.items() if k != "extends"})


def extend(base: dict, spec: dict) -> dict:
    """`spec` over `base`: mappings (train, search, mutations, asha, pbt, resources) merged field
    by field, anything else replaced; a search or mutation dimension set to null is removed. The
    name and description are the extending spec's own (its name defaults to its file name)."""
    merged = {k: v for k, v in base.items() if k not in ("name", "description")}
    for key, value in spec.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            fields = {**merged[key], **value}
            if key in ("search", "mutations"):
                fields = {name: dimension for name, dimension in fields.items() if dimension is not None}
            merged[key] = fields
        else:
            merged[key] = value
    return merged


def parse_spec(raw, default_name: str = "experiment") -> ExperimentSpec:
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError("spec: must be a mapping with the fields " + ", ".join(TOP_LEVEL))
    unknown = sorted(set(raw) - set(TOP_LEVEL))
    if unknown:
        raise ConfigError(f"{unknown[0]}: unknown spec field; allowed: {', '.join(TOP_LEVEL)}")
    name = raw.get("name", default_name)
    if not isinstance(name, str) or not NAME_PATTERN.fullmatch(name):
        raise ConfigError(
            f"name: must be letters, digits, '_', '-' or '.', starting with a letter or digit (got {name!r})"
        )
    train = TrainConfig.from_dict(raw.get("train") or {}, where="train")
    search = _parse_search(raw.get("search") or {}, train)
    seeds = _parse_seeds(raw.get("seeds", 1))
    seeds_per_trial = _parse_seeds_per_trial(raw.get("seeds_per_trial", 1), seeds)
    samples = _int_field(raw, "samples", 1, minimum=1)
    search_alg = _choice_field(raw, "search_alg", "random", SEARCH_ALGS)
    scheduler = _choice_field(raw, "scheduler", "fifo", SCHEDULERS)
    asha = raw.get("asha") or {}
    if not isinstance(asha, dict) or set(asha) - {"grace_period", "reduction_factor"}:
        raise ConfigError("asha: must be a mapping with grace_period and/or reduction_factor")
    resources = raw.get("resources") or {}
    if not isinstance(resources, dict) or set(resources) - {"cpu", "gpu"}:
        raise ConfigError("resources: must be a mapping with cpu and/or gpu (numbers; fractions allowed)")
    cpus = _number(resources.get("cpu", 1), "resources.cpu", minimum=0)
    gpus = _number(resources.get("gpu", 0), "resources.gpu", minimum=0)
    if cpus == 0 and gpus == 0:
        raise ConfigError("resources: a trial needs cpu > 0 or gpu > 0")
    if gpus > 1 and not float(gpus).is_integer():
        raise ConfigError(f"resources.gpu: must be a fraction <= 1 or a whole number (got {gpus})")
    if search_alg == "optuna" and any(d.kind == "grid" for d in search):
        raise ConfigError("search: grid is not supported with search_alg optuna; use choice")
    if search_alg == "optuna" and 1 < seeds_per_trial < len(seeds):
        raise ConfigError(
            f"seeds_per_trial: with search_alg optuna, 1 (each seed a trial) or all ({len(seeds)}: Optuna "
            f"judges whole configurations); got {seeds_per_trial}"
        )
    report_every = _int_field(raw, "report_every", 1, minimum=1)
    checkpoint_every = _int_field(raw, "checkpoint_every", 5, minimum=1)
    if checkpoint_every % report_every:
        raise ConfigError(
            f"checkpoint_every: must be a multiple of report_every ({report_every}), "
            f"since checkpoints travel with reports (got {checkpoint_every})"
        )
    metric = _choice_field(raw, "metric", SUCCESS_MIN, OBJECTIVES)
    mode = _choice_field(raw, "mode", "max", MODES)
    mutations = _parse_mutations(raw.get("mutations") or {}, train, search)
    pbt = raw.get("pbt") or {}
    if not isinstance(pbt, dict) or set(pbt) - set(PBT_OPTIONS):
        raise ConfigError(f"pbt: must be a mapping with any of {', '.join(PBT_OPTIONS)}")
    pbt_interval = _int_field(pbt, "perturbation_interval", 4, minimum=1, prefix="pbt.")
    if scheduler in POPULATION_BASED:
        if not mutations:
            raise ConfigError(f"mutations: scheduler {scheduler} needs at least one field to mutate")
        if train.agent != "ours" or any(dimension.name == "agent" for dimension in search):
            raise ConfigError(f"scheduler: {scheduler} changes our agent's fields while it trains; needs agent ours")
        if search_alg != "random":
            raise ConfigError(f"search_alg: scheduler {scheduler} chooses configurations itself; use random")
        if seeds_per_trial != len(seeds):
            raise ConfigError(
                f"seeds_per_trial: scheduler {scheduler} needs all ({len(seeds)}), so that a trial's score is its "
                "configuration's and an exploited trial takes a whole population"
            )
        if pbt_interval % checkpoint_every:
            raise ConfigError(
                f"pbt.perturbation_interval: must be a multiple of checkpoint_every ({checkpoint_every}), so that "
                f"an exploited trial copies its donor's state of the moment (got {pbt_interval})"
            )
    elif mutations or pbt:
        raise ConfigError(f"{'mutations' if mutations else 'pbt'}: only with scheduler pbt or pb2")
    description = raw.get("description", "")
    if not isinstance(description, str):
        raise ConfigError("description: must be a string")
    return ExperimentSpec(
        name=name,
        train=train,
        search=search,
        seeds=seeds,
        seeds_per_trial=seeds_per_trial,
        samples=samples,
        search_alg=search_alg,
        scheduler=scheduler,
        asha_grace_period=_int_field(asha, "grace_period", 2, minimum=1, prefix="asha."),
        asha_reduction_factor=_int_field(asha, "reduction_factor", 2, minimum=2, prefix="asha."),
        mutations=mutations,
        pbt_interval=pbt_interval,
        pbt_quantile=_fraction(pbt, "quantile_fraction", 0.25, 0.5, "pbt."),
        pbt_resample=_fraction(pbt, "resample_probability", 0.25, 1.0, "pbt."),
        pbt_seed=_int_field(pbt, "seed", 0, minimum=0, prefix="pbt."),
        cpus_per_trial=cpus,
        gpus_per_trial=gpus,
        max_failures=_int_field(raw, "max_failures", 2, minimum=0),
        report_every=report_every,
        checkpoint_every=checkpoint_every,
        metric=metric,
        mode=mode,
        description=description,
        source=raw,
    )


def _parse_search(raw, train: TrainConfig) -> tuple[Dimension, ...]:
    if not isinstance(raw, dict):
        raise ConfigError(
            "search: must be a mapping of TrainConfig field -> {grid|choice|uniform|loguniform|randint: ...}"
        )
    allowed = [n for n in TrainConfig.field_names() if n != "seed"]
    types = TrainConfig.__dataclass_fields__
    dimensions = []
    for name, rule in raw.items():
        where = f"search.{name}"
        if name == "seed":
            raise ConfigError(f"{where}: seeds are set with the top-level 'seeds' field")
        if name not in allowed:
            raise ConfigError(f"{where}: unknown field; allowed: {', '.join(allowed)}")
        if not isinstance(rule, dict) or len(rule) != 1:
            raise ConfigError(
                f"{where}: must be one of {{grid: [...]}}, {{choice: [...]}}, "
                "{uniform: [low, high]}, {loguniform: [low, high]}, {randint: [low, high]}"
            )
        kind, values = next(iter(rule.items()))
        if kind not in DISTRIBUTIONS:
            raise ConfigError(f"{where}: unknown distribution {kind!r}; allowed: {', '.join(DISTRIBUTIONS)}")
        if not isinstance(values, list) or not values:
            raise ConfigError(f"{where}.{kind}: must be a non-empty list")
        values = [coerce(v, types[name].type) for v in values]
        if kind in ("uniform", "loguniform", "randint"):
            if len(values) != 2 or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
                raise ConfigError(f"{where}.{kind}: must be [low, high], two numbers")
            low, high = values
            if not low < high:
                raise ConfigError(f"{where}.{kind}: low must be < high (got {low}, {high})")
            if kind == "loguniform" and low <= 0:
                raise ConfigError(f"{where}.loguniform: bounds must be > 0 (got {low}, {high})")
            if kind == "randint" and not all(isinstance(v, int) for v in values):
                raise ConfigError(f"{where}.randint: bounds must be integers (got {low}, {high})")
            probes = [low, high - 1] if kind == "randint" else [low, high]
        else:
            probes = values
        _check_values(train, name, probes, where)  # every value the search can produce
        dimensions.append(Dimension(name, kind, tuple(values)))
    return tuple(dimensions)


def _parse_mutations(raw, train: TrainConfig, search: tuple[Dimension, ...]) -> tuple[Dimension, ...]:
    if not isinstance(raw, dict):
        raise ConfigError("mutations: must be a mapping of TrainConfig field -> {uniform|loguniform: [low, high]}")
    allowed = schedulable_fields()
    dimensions = []
    for name, rule in raw.items():
        where = f"mutations.{name}"
        if name not in allowed:
            raise ConfigError(f"{where}: not a schedulable number field; allowed: {', '.join(allowed)}")
        if any(d.name == name for d in search):
            raise ConfigError(f"{where}: also in search; a field is searched or mutated, not both")
        if not isinstance(rule, dict) or len(rule) != 1 or next(iter(rule)) not in ("uniform", "loguniform"):
            raise ConfigError(f"{where}: must be {{uniform: [low, high]}} or {{loguniform: [low, high]}}")
        kind, values = next(iter(rule.items()))
        values = [coerce(v, "float") for v in values] if isinstance(values, list) else values
        if not (
            isinstance(values, list)
            and len(values) == 2
            and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)
            and 0 < values[0] < values[1]
        ):
            raise ConfigError(f"{where}.{kind}: must be [low, high] with 0 < low < high (got {values!r})")
        _check_values(train, name, values, where)
        dimensions.append(Dimension(name, kind, tuple(float(v) for v in values)))
    return tuple(dimensions)


def _check_values(train: TrainConfig, name: str, values, where: str) -> None:
    """Each value must make a valid config of the train block, checked like the field itself."""
    for value in values:
        try:
            train.replace(**{name: value})
        except ConfigError as error:
            raise ConfigError(f"{where}: {error}") from None


def _fraction(raw: dict, name: str, default: float, at_most: float, prefix: str) -> float:
    value = raw.get(name, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= at_most:
        raise ConfigError(f"{prefix}{name}: must be a number in [0, {at_most}] (got {value!r})")
    return float(value)


def _parse_seeds(raw) -> tuple[int, ...]:
    if isinstance(raw, bool):
        raise ConfigError(f"seeds: must be a count >= 1 or a list of distinct integers (got {raw!r})")
    if isinstance(raw, int):
        if raw < 1:
            raise ConfigError(f"seeds: must be a count >= 1 or a list of distinct integers (got {raw})")
        return tuple(range(raw))
    if (
        isinstance(raw, list)
        and raw
        and all(isinstance(s, int) and not isinstance(s, bool) for s in raw)
        and len(set(raw)) == len(raw)
    ):
        for seed in raw:
            TrainConfig(seed=seed)  # range check, same message as everywhere
        return tuple(raw)
    raise ConfigError(f"seeds: must be a count >= 1 or a list of distinct integers (got {raw!r})")


def _parse_seeds_per_trial(raw, seeds: tuple[int, ...]) -> int:
    if raw == "all":
        return len(seeds)
    if isinstance(raw, bool) or not isinstance(raw, int) or not 1 <= raw <= len(seeds):
        raise ConfigError(
            f"seeds_per_trial: must be an integer in 1..{len(seeds)} (the number of seeds) or 'all' (got {raw!r})"
        )
    return raw


def _choice_field(raw: dict, name: str, default: str, allowed) -> str:
    value = raw.get(name, default)
    if value not in allowed:
        raise ConfigError(f"{name}: must be one of {', '.join(allowed)} (got {value!r})")
    return value


def _int_field(raw: dict, name: str, default: int, minimum: int, prefix: str = "") -> int:
    value = raw.get(name, default)
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(f"{prefix}{name}: must be an integer >= {minimum} (got {value!r})")
    return value


def _number(value, name: str, minimum: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < minimum:
        raise ConfigError(f"{name}: must be a number >= {minimum} (got {value!r})")
    return float(value)
