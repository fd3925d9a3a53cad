"""TrainConfig: every knob of one training run, validated once, where it is built.

`TrainConfig()` is the tutorial's agent exactly; `experiments/fixed.yaml` holds the corrected one.
Bad values raise ConfigError with one line that names the field and what is allowed.
"""

from __future__ import annotations

import dataclasses
import math
import re
from dataclasses import dataclass, fields

from .a2c import LOSSES
from .curriculum import CURRICULA
from .env import INVALID_ACTION_RULES, VARIANTS
from .model import INITS, POLICY_HEADS

DEVICE_PATTERN = re.compile(r"^(auto|cpu|cuda(:\d+)?)$")
MAX_SEED = 2**31 - 1
ACTION_SPACES = ("all", "tools")


MAX_MESSAGE = 400
# Sizes beyond these cannot run on any machine this tool targets; refused before anything starts.
UPPER_BOUNDS = {"batch_size": 2**16, "hidden_size": 4096, "eval_episodes": 100_000, "final_eval_episodes": 100_000,
                "self_imitation_batch": 2**16, "self_imitation_capacity": 2**20, "explain_samples": 1000,
                "num_threads": 1024}


class ConfigError(ValueError):
    """A bad value in a config, a spec or a command line; its message is one short line (a huge
    bad value is cut, never printed whole)."""

    def __init__(self, message: str):
        message = " ".join(str(message).split("\n"))
        if len(message) > MAX_MESSAGE:
            message = message[:MAX_MESSAGE] + " ... (cut)"
        super().__init__(message)


@dataclass(frozen=True)
class TrainConfig:
    # environment
    variant: str = "tutorial"
    max_len: int | None = None          # tokens emitted per episode; None: 6 (tutorial), 8 (declared)
    answer_shaping: float = 0.2         # weight of the partial credit for intermediate answers
    path_shaping: float = 0.0           # declared only: bonus for the stage-2 solution's states
    invalid_action: str = "noop"        # declared only: noop, or end the episode without answer
    action_space: str = "all"           # all 18 tokens, or the six tools (MUL ADD SUB ANS STO RCL)
    novelty_bonus: float = 0.0          # declared only: count-based bonus for rarely seen machine states
    explore_epsilon: float = 0.0        # share of training tokens drawn uniformly from the allowed ones
    explore_decay_episodes: int | None = None  # epsilon falls linearly to 0 over this many episodes
    self_imitation: float = 0.0         # weight of the self-imitation loss on replayed correct episodes
    self_imitation_batch: int = 64      # replayed episodes per update (split evenly over stages)
    self_imitation_capacity: int = 1024  # correct episodes kept per stage (the newest)
    # model
    init: str = "tutorial"
    hidden_size: int = 96
    policy_head: str = "shared"         # shared, or per_stage (one block of outputs per stage)
    # algorithm
    loss: str = "tutorial"
    lr: float = 3e-4
    entropy_coef: float = 0.01
    newest_stage_entropy_coef: float | None = None  # entropy coefficient on the newest stage's episodes
    value_coef: float = 0.5
    grad_clip: float = 1.0
    normalize_advantage: bool = False
    # curriculum and schedule
    curriculum: str = "tutorial"
    mastery_threshold: float = 0.95
    batch_size: int = 192
    updates: int = 60
    eval_every: int = 5
    eval_episodes: int = 128
    final_eval_episodes: int = 1000
    stop_at_success: float | None = None  # end early once greedy success >= this on every stage
    explain_samples: int = 5
    # execution
    seed: int = 0
    device: str = "auto"
    num_threads: int = 1

    def __post_init__(self):
        for field in fields(self):
            _check_type(field.name, getattr(self, field.name), field.type)
            value = getattr(self, field.name)
            if field.type.startswith("float") and value is not None:
                if not math.isfinite(value):
                    raise ConfigError(f"{field.name}: must be a finite number (got {value!r})")
                object.__setattr__(self, field.name, float(value))
        for name, allowed in (("variant", VARIANTS), ("init", INITS), ("loss", LOSSES),
                              ("curriculum", CURRICULA), ("invalid_action", INVALID_ACTION_RULES),
                              ("action_space", ACTION_SPACES), ("policy_head", POLICY_HEADS)):
            if getattr(self, name) not in allowed:
                raise ConfigError(f"{name}: must be one of {', '.join(allowed)} (got {getattr(self, name)!r})")
        if not DEVICE_PATTERN.match(self.device):
            raise ConfigError(f"device: must be one of auto, cpu, cuda, cuda:N (got {self.device!r})")
        for name in ("lr", "hidden_size", "batch_size", "updates", "eval_every", "eval_episodes",
                     "final_eval_episodes", "grad_clip", "num_threads", "self_imitation_batch",
                     "self_imitation_capacity"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"{name}: must be > 0 (got {getattr(self, name)!r})")
        for name in ("entropy_coef", "value_coef", "answer_shaping", "explain_samples", "path_shaping",
                     "newest_stage_entropy_coef", "novelty_bonus", "self_imitation"):
            if getattr(self, name) is not None and getattr(self, name) < 0:
                raise ConfigError(f"{name}: must be >= 0 (got {getattr(self, name)!r})")
        if not 0 <= self.explore_epsilon <= 1:
            raise ConfigError(f"explore_epsilon: must be in [0, 1] (got {self.explore_epsilon!r})")
        if self.explore_decay_episodes is not None and self.explore_decay_episodes <= 0:
            raise ConfigError(f"explore_decay_episodes: must be null or > 0 (got {self.explore_decay_episodes!r})")
        for name, bound in UPPER_BOUNDS.items():
            if getattr(self, name) > bound:
                raise ConfigError(f"{name}: must be <= {bound} (got {getattr(self, name)!r})")
        for name in ("mastery_threshold", "stop_at_success"):
            value = getattr(self, name)
            if value is not None and not 0 < value <= 1:
                raise ConfigError(f"{name}: must be in (0, 1] (got {value!r})")
        if self.variant == "tutorial":
            if self.path_shaping:
                raise ConfigError(f"path_shaping: applies to variant declared only (got {self.path_shaping} with tutorial)")
            if self.novelty_bonus:
                raise ConfigError(f"novelty_bonus: applies to variant declared only (got {self.novelty_bonus} with tutorial)")
            if self.invalid_action != "noop":
                raise ConfigError("invalid_action: end applies to variant declared only; use noop with tutorial")
        if not 0 <= self.seed <= MAX_SEED:
            raise ConfigError(f"seed: must be an integer in 0..{MAX_SEED} (got {self.seed!r})")
        if self.max_len is not None and not 1 <= self.max_len <= 16:
            raise ConfigError(f"max_len: must be null or an integer in 1..16 (got {self.max_len!r})")

    @classmethod
    def field_names(cls) -> list[str]:
        return [f.name for f in fields(cls)]

    @classmethod
    def from_dict(cls, values: dict, where: str = "train") -> "TrainConfig":
        """Build from YAML-like values: unknown keys refused, numbers given as strings accepted."""
        if not isinstance(values, dict):
            raise ConfigError(f"{where}: must be a mapping of TrainConfig fields (got {type(values).__name__})")
        unknown = sorted(set(values) - set(cls.field_names()))
        if unknown:
            raise ConfigError(f"{where}.{unknown[0]}: unknown field; allowed: {', '.join(cls.field_names())}")
        types = {f.name: f.type for f in fields(cls)}
        return cls(**{name: coerce(name, value, types[name]) for name, value in values.items()})

    def replace(self, **changes) -> "TrainConfig":
        return self.from_dict({**self.to_dict(), **changes})

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def coerce(name: str, value, type_name: str):
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


_TYPE_NAMES = {"int": int, "float": (int, float), "str": str, "bool": bool}


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
