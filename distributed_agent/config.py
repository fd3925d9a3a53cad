"""TrainConfig: every knob of one training run, declared once with its doc and allowed values.

Each field is a `knob(default, doc, ...)`: its allowed values and bounds are checked in
`TrainConfig.__post_init__` and printed by `distributed-agent fields`, from the same declaration.
`TrainConfig()` is the tutorial's agent exactly; `experiments/fixed.yaml` holds the corrected one.
Bad values raise ConfigError with one line that names the field and what is allowed.

This module is a leaf: the algorithm modules import their option names from here.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import math
import re
from dataclasses import dataclass, fields

VARIANTS = ("shifted", "declared")
INITS = ("batch_mean", "episode")
LOSSES = ("summed_baseline", "masked")
CURRICULA = ("one_stage", "mixed", "mastery")
INVALID_ACTION_RULES = ("noop", "end")
ACTION_SPACES = ("all", "tools")
ACTION_NOVELTY_CELLS = ("prefix", "set", "last")
RND_STATES = ("agent", "history")
POLICY_HEADS = ("shared", "per_stage")
SB3_AGENTS = ("ppo", "a2c", "recurrent_ppo")  # Stable-Baselines3's PPO and A2C, sb3-contrib's RecurrentPPO
AGENTS = ("ours", *SB3_AGENTS)
# `needs` conditions of a knob: a value other than its default needs this field to hold one of these values.
DECLARED = ("variant", ("declared",))
OURS = ("agent", ("ours",))
BASELINES = ("agent", SB3_AGENTS)
CLIPPED = ("agent", ("ppo", "recurrent_ppo"))
DEVICES = (re.compile(r"^(auto|cpu|cuda(:\d+)?)$"), "auto, cpu, cuda, cuda:N")  # (pattern, what it allows)
# The value "tutorial" once named the tutorial's choice of four different fields; it is still
# read (old specs, checkpoints) and stands for the name below.
TUTORIAL_ALIASES = {"variant": "shifted", "init": "batch_mean", "loss": "summed_baseline", "curriculum": "one_stage"}
MAX_SEED = 2**31 - 1
MAX_MESSAGE = 400


class ConfigError(ValueError):
    """A bad value in a config, a spec or a command line; its message is one short line (a huge
    bad value is cut, never printed whole)."""

    def __init__(self, message: str):
        message = " ".join(str(message).split("\n"))
        if len(message) > MAX_MESSAGE:
            message = message[:MAX_MESSAGE] + " ... (cut)"
        super().__init__(message)


def knob(
    default,
    doc: str,
    *,
    allowed: tuple = (),
    pattern: tuple[re.Pattern, str] | None = None,
    above=None,
    at_least=None,
    at_most=None,
    needs: tuple[tuple[str, tuple[str, ...]], ...] = (),
):
    """A TrainConfig field: `doc` is its one-line help; `allowed` its values (strings), or a
    `pattern` (regex, what it allows), or bounds `above` (exclusive), `at_least`, `at_most`
    (inclusive); `needs`: (field, values) pairs, a non-default value needs each such field to hold
    one of its values (e.g. DECLARED: variant declared). Sizes have an
    `at_most` that no machine this tool targets exceeds."""
    rule = {
        "doc": doc,
        "allowed": allowed,
        "pattern": pattern,
        "above": above,
        "at_least": at_least,
        "at_most": at_most,
        "needs": needs,
    }
    if isinstance(default, list):  # a mutable default: each config gets its own copy
        return dataclasses.field(default_factory=lambda: list(default), metadata=rule)
    return dataclasses.field(default=default, metadata=rule)


@dataclass(frozen=True)
class TrainConfig:
    # environment
    variant: str = knob(
        "shifted",
        "scoring rules: shifted (the tutorial's, stage k scored against the "
        "previous stage's formula) or declared (each stage against its own)",
        allowed=VARIANTS,
    )
    max_len: int | None = knob(
        None, "tokens emitted per episode; null: 6 (shifted), 8 (declared)", at_least=1, at_most=16
    )
    answer_shaping: float = knob(0.2, "weight of the partial credit for answering an intermediate value", at_least=0)
    path_shaping: float = knob(
        0.0, "bonus for passing the stage-2 solution's machine states", at_least=0, needs=(DECLARED,)
    )
    invalid_action: str = knob(
        "noop",
        "what an invalid token does: noop (costs its step) or end (ends the episode without answer)",
        allowed=INVALID_ACTION_RULES,
        needs=(DECLARED,),
    )
    action_space: str = knob("all", "tokens the policy may emit: all 18, or the six tools", allowed=ACTION_SPACES)
    # exploration (each method is one module of distributed_agent/exploration/)
    novelty_bonus: float = knob(
        0.0, "weight of the count-based bonus for rarely seen machine states", at_least=0, needs=(DECLARED, OURS)
    )
    action_novelty_bonus: float = knob(
        0.0,
        "weight of the count-based bonus for rarely seen cells of the agent's own action history "
        "(action_novelty_cells; per stage, hashed): novelty that reads nothing of the environment",
        at_least=0,
        needs=(OURS,),
    )
    action_novelty_cells: str = knob(
        "prefix",
        "what the action-novelty bonus counts, per stage: prefix (the tokens so far), set (the step and the "
        "distinct tokens so far) or last (the step and its token)",
        allowed=ACTION_NOVELTY_CELLS,
        needs=(OURS,),
    )
    rnd_bonus: float = knob(
        0.0,
        "weight of the random-network-distillation bonus on the agent's own GRU states (its error in units of "
        "the first batch's): learned novelty that reads nothing of the environment",
        at_least=0,
        needs=(OURS,),
    )
    rnd_states: str = knob(
        "agent",
        "the states RND reads: agent (the agent's own GRU states, which also hold the operands and move as it "
        "learns) or history (a fixed random GRU over the stage and the tokens emitted so far)",
        allowed=RND_STATES,
        needs=(OURS,),
    )
    explore_epsilon: float = knob(
        0.0, "share of training tokens drawn uniformly from the allowed ones", at_least=0, at_most=1, needs=(OURS,)
    )
    explore_decay_episodes: int | None = knob(
        None, "episodes over which epsilon falls linearly to 0; null: constant", above=0, needs=(OURS,)
    )
    self_imitation: float = knob(
        0.0, "weight of the self-imitation loss on replayed correct episodes", at_least=0, needs=(OURS,)
    )
    self_imitation_batch: int = knob(
        64, "replayed episodes per update (split evenly over stages)", above=0, at_most=2**16, needs=(OURS,)
    )
    self_imitation_capacity: int = knob(
        1024, "correct episodes kept per stage (the newest)", above=0, at_most=2**20, needs=(OURS,)
    )
    # who learns
    agent: str = knob(
        "ours",
        "ours (the GRU actor-critic), or a baseline on the Gymnasium environment (gym_env.py, the [baselines] "
        "extra): Stable-Baselines3 ppo or a2c, or sb3-contrib recurrent_ppo",
        allowed=AGENTS,
    )
    parallel_envs: int = knob(
        16, "baselines: episodes played at once (SB3's n_envs)", above=0, at_most=4096, needs=(BASELINES,)
    )
    rollout_steps: int | None = knob(
        None,
        "baselines: steps per environment per rollout (SB3's n_steps); null: SB3's default (2048 ppo, 128 "
        "recurrent_ppo, 5 a2c)",
        above=0,
        at_most=2**20,
        needs=(BASELINES,),
    )
    minibatch_size: int | None = knob(
        None,
        "ppo, recurrent_ppo: minibatch size (SB3's batch_size); null: SB3's default",
        above=0,
        at_most=2**20,
        needs=(CLIPPED,),
    )
    epochs: int | None = knob(
        None,
        "ppo, recurrent_ppo: passes over each rollout (SB3's n_epochs); null: SB3's default (10)",
        above=0,
        at_most=1000,
        needs=(CLIPPED,),
    )
    clip_range: float | None = knob(
        None, "ppo, recurrent_ppo: PPO's clipping range; null: SB3's default (0.2)", above=0, needs=(CLIPPED,)
    )
    gamma: float | None = knob(
        None, "baselines: discount; null: SB3's default (0.99)", above=0, at_most=1, needs=(BASELINES,)
    )
    gae_lambda: float | None = knob(
        None, "baselines: GAE lambda; null: SB3's default (0.95; a2c 1.0)", at_least=0, at_most=1, needs=(BASELINES,)
    )
    observe_step: bool = knob(
        False, "baselines: the observation also counts the tokens emitted (a clock)", needs=(BASELINES,)
    )
    # model
    init: str = knob(
        "batch_mean",
        "initial GRU state: batch_mean (the tutorial's: every episode starts "
        "from the batch's mean context) or episode (its own context)",
        allowed=INITS,
        needs=(OURS,),
    )
    hidden_size: int = knob(
        96, "GRU and embedding width; baselines: width of each MLP layer (two), or of the LSTM", above=0, at_most=4096
    )
    policy_head: str = knob(
        "shared", "policy outputs: shared, or per_stage (one block per stage)", allowed=POLICY_HEADS, needs=(OURS,)
    )
    # algorithm
    loss: str = knob(
        "summed_baseline",
        "A2C loss: summed_baseline (the tutorial's: every token counts, "
        "baseline = sum of values) or masked (tokens after ANS masked, per-step baseline)",
        allowed=LOSSES,
        needs=(OURS,),
    )
    lr: float = knob(3e-4, "Adam learning rate", above=0)
    entropy_coef: float = knob(0.01, "weight of the entropy bonus", at_least=0)
    newest_stage_entropy_coef: float | None = knob(
        None, "entropy weight on the newest stage's episodes; null: entropy_coef", at_least=0, needs=(OURS,)
    )
    value_coef: float = knob(0.5, "weight of the value loss", at_least=0)
    grad_clip: float = knob(1.0, "maximum gradient norm", above=0)
    normalize_advantage: bool = knob(False, "masked loss: normalise advantages over the batch", needs=(OURS,))
    # curriculum and schedule
    curriculum: str = knob(
        "one_stage",
        "which stages a batch holds: one_stage (the tutorial's fixed schedule, "
        "one stage per batch), mixed (that schedule, unlocked stages mixed) or mastery "
        "(next stage unlocked at mastery_threshold)",
        allowed=CURRICULA,
    )
    mastery_threshold: float = knob(
        0.95, "greedy success on the newest stage that unlocks the next", above=0, at_most=1
    )
    batch_size: int = knob(192, "episodes per update", above=0, at_most=2**16)
    updates: int = knob(60, "training updates (the budget)", above=0)
    eval_every: int = knob(5, "updates between greedy evaluations", above=0)
    eval_episodes: int = knob(128, "greedy episodes per stage in each evaluation", above=0, at_most=100_000)
    final_eval_episodes: int = knob(1000, "greedy episodes per stage in the final evaluation", above=0, at_most=100_000)
    stop_at_success: float | None = knob(
        None, "end early once greedy success >= this on every stage; null: never", above=0, at_most=1
    )
    explain_samples: int = knob(5, "greedy episodes per stage spelled out in the result", at_least=0, at_most=1000)
    schedule: list = knob(
        [],
        "hyperparameter changes during training: [{update: U, FIELD: value, ...}, ...], each applied "
        "before update U+1 (U = 0: from the start); FIELD any number field marked schedulable "
        "(e.g. the best schedule a PBT search found, replayed)",
        needs=(OURS,),
    )
    # execution
    seed: int = knob(0, "seed of the weights, the tasks and the sampling", at_least=0, at_most=MAX_SEED)
    device: str = knob("auto", "where to train (auto: CUDA when available)", pattern=DEVICES)
    num_threads: int = knob(1, "torch threads of the process that trains", above=0, at_most=1024)
    members_per_step: int | None = knob(
        16,
        "members of a population updated together in one batched step (a larger population is stepped in "
        "chunks; the numbers are the same): a step's Python dispatch is shared by its members (on the CPU "
        "its time loops run 4 members at a time, to stay in a core's cache), but past about 16 members the "
        "rest of its work outgrows the cache; null: the whole population at once (for a GPU)",
        above=0,
    )

    def __post_init__(self):
        for field in fields(self):
            value = getattr(self, field.name)
            if field.name in TUTORIAL_ALIASES and value == "tutorial":
                object.__setattr__(self, field.name, value := TUTORIAL_ALIASES[field.name])
            _check_type(field.name, value, field.type)
            if field.type.startswith("float") and value is not None:
                if not math.isfinite(value):
                    raise ConfigError(f"{field.name}: must be a finite number (got {value!r})")
                object.__setattr__(self, field.name, value := float(value))
            _check_rule(field, value)
        object.__setattr__(self, "schedule", _checked_schedule(self))
        for field in fields(self):
            value = getattr(self, field.name)
            for name, values in field.metadata["needs"]:
                if getattr(self, name) not in values and value != _default(field):
                    raise ConfigError(
                        f"{field.name}: applies to {name} {' or '.join(values)} only "
                        f"(got {value!r} with {getattr(self, name)})"
                    )
        if self.agent in SB3_AGENTS and importlib.util.find_spec("sb3_contrib") is None:
            raise ConfigError(f"agent: {self.agent} needs the baselines extra: pip install -e '.[baselines]'")

    @classmethod
    def field_names(cls) -> list[str]:
        return [f.name for f in fields(cls)]

    @classmethod
    def field_help(cls) -> list[tuple[str, str, str]]:
        """(name, default, what is allowed and what it does) of every field, for help output."""
        rows = []
        for f in fields(cls):
            old_name = f"; 'tutorial' is read as {f.default}" if f.name in TUTORIAL_ALIASES else ""
            needs = "".join(f" [{name} {' or '.join(values)} only]" for name, values in f.metadata["needs"])
            default = _default(f)
            rows.append((f.name, repr(default), f"{_allowed_text(f)}: {f.metadata['doc']}{old_name}{needs}"))
        return rows

    @classmethod
    def from_dict(cls, values: dict, where: str = "train") -> TrainConfig:
        """Build from YAML-like values: unknown keys refused, numbers given as strings accepted."""
        if not isinstance(values, dict):
            raise ConfigError(f"{where}: must be a mapping of TrainConfig fields (got {type(values).__name__})")
        unknown = sorted(set(values) - set(cls.field_names()))
        if unknown:
            raise ConfigError(f"{where}.{unknown[0]}: unknown field; allowed: {', '.join(cls.field_names())}")
        types = {f.name: f.type for f in fields(cls)}
        return cls(**{name: coerce(value, types[name]) for name, value in values.items()})

    def replace(self, **changes) -> TrainConfig:
        return self.from_dict({**self.to_dict(), **changes})

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def changed_fields(self) -> dict:
        """The fields whose values differ from their defaults (TrainConfig(): the tutorial's agent)."""
        return {f.name: getattr(self, f.name) for f in fields(self) if getattr(self, f.name) != _default(f)}


def _default(field):
    return field.default_factory() if field.default is dataclasses.MISSING else field.default


def schedulable_fields() -> list[str]:
    """Fields a schedule (and population-based training) may change during training: the float
    knobs that are read at every update."""
    return [f.name for f in fields(TrainConfig) if f.type.startswith("float") and f.name not in NOT_SCHEDULABLE]


NOT_SCHEDULABLE = ("answer_shaping", "path_shaping", "mastery_threshold", "stop_at_success")  # rules, not knobs


def _checked_schedule(config: TrainConfig) -> list[dict]:
    """The schedule as plain data, sorted by update, each entry's values checked like the fields."""
    allowed = schedulable_fields()
    entries = []
    for index, entry in enumerate(config.schedule):
        where = f"schedule[{index}]"
        if not isinstance(entry, dict) or "update" not in entry:
            raise ConfigError(f"{where}: must be a mapping {{update: U, FIELD: value, ...}}")
        update = coerce(entry["update"], "int")
        if isinstance(update, bool) or not isinstance(update, int) or not 0 <= update < config.updates:
            raise ConfigError(f"{where}.update: must be an integer in 0..{config.updates - 1} (got {update!r})")
        values = {name: value for name, value in entry.items() if name != "update"}
        for name in values:
            if name not in allowed:
                raise ConfigError(f"{where}.{name}: not schedulable; allowed: {', '.join(allowed)}")
        try:  # the values pass the same checks as the fields themselves
            checked = TrainConfig.from_dict({**config.to_dict(), "schedule": [], **values})
        except ConfigError as error:
            raise ConfigError(f"{where}: {error}") from None
        entries.append({"update": update, **{name: getattr(checked, name) for name in values}})
    updates = [entry["update"] for entry in entries]
    if len(set(updates)) != len(updates):
        raise ConfigError("schedule: two entries for the same update")
    return sorted(entries, key=lambda entry: entry["update"])


def coerce(value, type_name: str):
    """YAML 1.1 reads `3e-3` as a string; accept such strings for number fields, nothing looser."""
    if isinstance(value, str) and type_name.startswith(("float", "int")):
        try:
            number = float(value)
        except ValueError:
            return value  # _check_type reports it
        if type_name.startswith("int"):
            return int(number) if number.is_integer() else value
        return number
    return value


_TYPE_NAMES = {"int": int, "float": (int, float), "str": str, "bool": bool, "list": list}


def _check_type(name: str, value, type_name: str) -> None:
    optional = type_name.endswith("| None")
    base = type_name.split("|")[0].strip()
    if value is None and optional:
        return
    expected = _TYPE_NAMES[base]
    # bool is an int in Python, but `updates: true` is a mistake, not 1.
    if isinstance(value, bool) and base != "bool" or not isinstance(value, expected):
        allowed = f"{base} or null" if optional else base
        raise ConfigError(f"{name}: must be {allowed} (got {value!r})")


def _check_rule(field, value) -> None:
    name, rule = field.name, field.metadata
    if value is None:
        return
    if rule["allowed"] and value not in rule["allowed"]:
        raise ConfigError(f"{name}: must be one of {', '.join(rule['allowed'])} (got {value!r})")
    if rule["pattern"] and not rule["pattern"][0].match(value):
        raise ConfigError(f"{name}: must be one of {rule['pattern'][1]} (got {value!r})")
    above, at_least, at_most = rule["above"], rule["at_least"], rule["at_most"]
    if (
        (above is not None and value <= above)
        or (at_least is not None and value < at_least)
        or (at_most is not None and value > at_most)
    ):
        raise ConfigError(f"{name}: must be {_range_text(field)} (got {value!r})")


def _range_text(field) -> str:
    rule = field.metadata
    above, at_least, at_most = rule["above"], rule["at_least"], rule["at_most"]
    if field.type.startswith("int") and at_most is not None:
        return f"an integer in {above + 1 if above is not None else at_least}..{at_most}"
    if at_most is None:
        return f"> {above}" if above is not None else f">= {at_least}"
    if above is None and at_least is None:
        return f"<= {at_most}"
    return f"in ({above}, {at_most}]" if above is not None else f"in [{at_least}, {at_most}]"


def _allowed_text(field) -> str:
    rule, optional = field.metadata, field.type.endswith("| None")
    if rule["pattern"]:
        text = rule["pattern"][1]
    elif rule["allowed"]:
        text = " | ".join(rule["allowed"])
    elif any(rule[k] is not None for k in ("above", "at_least", "at_most")):
        text = _range_text(field)
        text = text if text.startswith("an integer") else f"{field.type.split('|')[0].strip()} {text}"
    else:
        text = field.type
    return f"{text} or null" if optional and "null" not in text else text
