"""One training run: `train(config, callback) -> TrainResult`, deterministic for a given seed.

A run is a Trainer: sample a batch of tasks from the curriculum, let the model write its
programs, score them, take one A2C step; every `eval_every` updates evaluate greedily on every
stage. Its whole state (model, optimiser, RNG, curriculum, counters) can be saved and restored,
so that a run cut in two gives the same numbers as one run straight through.
"""

from __future__ import annotations

import ctypes
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import torch

from .a2c import a2c_loss, self_imitation_loss
from .config import ConfigError, TrainConfig
from .curriculum import Curriculum
from .env import (MACHINE_STATES, NUM_STAGES, OPERANDS_SHOWN, TARGET_FORMULAS, TOOL_TOKENS, VOCAB_SIZE, ToolEnv,
                  declared_target, tokens_to_text)
from .model import ActorCritic

CHECKPOINT_FORMAT = 1

__all__ = ["TrainConfig", "ConfigError", "Evaluation", "TrainResult", "Trainer", "train"]


@dataclass
class Evaluation:
    """Greedy success (share correct) and mean reward per stage after `update` updates."""
    update: int
    episodes: int
    stage: int                 # the newest stage trained at this point
    success: list[float]
    reward: list[float]
    loss: float                # loss of the last update
    seconds: float             # training time so far

    def metrics(self) -> dict:
        """Flat dict with the same keys every time (Tune's progress.csv fixes its columns once)."""
        flat = {"update": self.update, "episodes": self.episodes, "stage": self.stage,
                "loss": self.loss, "seconds": self.seconds}
        for stage in range(NUM_STAGES):
            flat[f"success/stage{stage}"] = self.success[stage]
            flat[f"reward/stage{stage}"] = self.reward[stage]
        flat["success/min"] = min(self.success)
        return flat


@dataclass
class TrainResult:
    config: TrainConfig
    final_success: list[float]   # greedy, final_eval_episodes per stage
    final_reward: list[float]
    history: list[Evaluation]
    episodes: int
    updates: int
    seconds: float
    samples: list[dict] = field(default_factory=list)  # explained trajectories


Callback = Callable[[Evaluation, "Trainer"], None]


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"device: {name!r} asked but CUDA is not available here; use auto or cpu")
    return torch.device(name)


def keep_freed_memory() -> None:
    """Ask glibc to keep freed memory for reuse instead of handing it back to the OS at once.

    By default glibc unmaps every freed block over 128 KiB and trims the heap past 128 KiB free,
    so each update touched its temporary tensors as fresh pages again: about 900 page faults, 2 ms
    of a 10.5 ms update at batch 192 (benchmarks/allocator_ab.py). Process-wide, like
    torch.set_num_threads; nothing happens where the C library has no mallopt (macOS).
    """
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (AttributeError, OSError, TypeError):  # no mallopt, or no C library to load this way
        return
    m_trim_threshold, m_mmap_threshold = -1, -3  # glibc's malloc.h
    mallopt(m_mmap_threshold, 32 << 20)
    mallopt(m_trim_threshold, 128 << 20)


class Trainer:
    def __init__(self, config: TrainConfig):
        self.config = config
        torch.set_num_threads(config.num_threads)
        keep_freed_memory()
        self.device = resolve_device(config.device)
        torch.manual_seed(config.seed)  # the model's initial weights
        self.env = ToolEnv(config.variant, config.max_len, config.answer_shaping, config.path_shaping,
                           config.invalid_action)
        self.action_mask = None
        if config.action_space == "tools":
            self.action_mask = torch.zeros(VOCAB_SIZE, dtype=torch.bool, device=self.device)
            self.action_mask[list(TOOL_TOKENS)] = True
        self.model = ActorCritic(config.hidden_size, config.init, policy_head=config.policy_head).to(self.device)
        # The fused kernel is 3x faster than the default loop on CPU; it exists on CPU and CUDA.
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=config.lr, fused=True)
        self.curriculum = Curriculum(config.curriculum, config.mastery_threshold)
        self.generator = torch.Generator(self.device).manual_seed(config.seed)
        # Visits of each (stage, step, machine state) cell, for the novelty bonus.
        self.state_visits = torch.zeros(NUM_STAGES * self.env.max_len * MACHINE_STATES, dtype=torch.float64,
                                        device=self.device)
        self.replay = ReplayBuffer(NUM_STAGES, config.self_imitation_capacity if config.self_imitation else 0,
                                   self.env.max_len, self.device)
        self.update = 0
        self.episodes = 0
        self.seconds = 0.0
        self.last_loss = math.nan
        self.history: list[Evaluation] = []

    # -- one A2C update -------------------------------------------------------------------
    def train_step(self) -> float:
        config = self.config
        self.update += 1
        self.model.train()
        stages = self.curriculum.batch_stages(self.update, config.batch_size, self.device)
        operands, context = self.env.sample(config.batch_size, stages, self.generator)
        rollout = self.model(context, stages, self.env.max_len, generator=self.generator,
                             action_mask=self.action_mask, epsilon=self.explore_epsilon())
        outcome = self.env.run(rollout.actions, operands, stages)
        reward = outcome.reward
        if config.novelty_bonus:
            reward = reward + config.novelty_bonus * self.novelty(outcome.machine_states, stages)
        entropy_coef = config.entropy_coef
        if config.newest_stage_entropy_coef is not None:
            newest = stages == self.curriculum.newest_stage(self.update)
            entropy_coef = torch.where(newest, config.newest_stage_entropy_coef, config.entropy_coef)
        terms = a2c_loss(rollout, reward, loss=config.loss, entropy_coef=entropy_coef,
                         value_coef=config.value_coef, normalize_advantage=config.normalize_advantage)
        total = terms.total
        if config.self_imitation:
            self.replay.add(operands, stages, rollout.actions, reward, outcome.correct)
            total = total + config.self_imitation * self.self_imitation_term()
        if not torch.isfinite(total):
            raise FloatingPointError(
                f"loss became {total.item()} at update {self.update} (lr={config.lr}); "
                "training diverged, try a smaller lr")
        self.optimizer.zero_grad()
        total.backward()
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), config.grad_clip, foreach=True)
        self.optimizer.step()
        self.episodes += config.batch_size
        self.last_loss = total.item()
        return self.last_loss

    def self_imitation_term(self) -> torch.Tensor:
        replayed = self.replay.sample(self.config.self_imitation_batch, self.generator)
        if replayed is None:
            return torch.zeros((), device=self.device)
        operands, stages, actions, reward = replayed
        rollout = self.model(self.env.context(operands, stages), stages, actions.shape[1], greedy=True,
                             action_mask=self.action_mask, replay=actions)
        return self_imitation_loss(rollout, reward, self.config.value_coef)

    def explore_epsilon(self) -> float:
        epsilon, decay = self.config.explore_epsilon, self.config.explore_decay_episodes
        return epsilon if decay is None else epsilon * max(0.0, 1 - self.episodes / decay)

    def novelty(self, machine_states: torch.Tensor, stages: torch.Tensor) -> torch.Tensor:
        """Count-based exploration bonus: each episode earns, per step, 1/sqrt(1 + n) where n is how
        often its (stage, step, machine state) was seen before; then this batch's visits are counted.
        The states say which registers are in use and how many operands were read, not their values,
        so the bonus knows nothing of any task's solution."""
        steps = machine_states.shape[1]
        visited = machine_states >= 0
        cells = (stages.unsqueeze(1) * steps + torch.arange(steps, device=self.device)) * MACHINE_STATES \
            + machine_states.clamp_min(0)
        bonus = (self.state_visits[cells] + 1).rsqrt() * visited
        self.state_visits.index_add_(0, cells[visited], torch.ones_like(cells[visited], dtype=torch.float64))
        return bonus.sum(1).float()

    # -- greedy evaluation ----------------------------------------------------------------
    def _eval_generator(self, tag: int) -> torch.Generator:
        # Evaluation draws from its own stream, fixed by (seed, tag), so that evaluating more or
        # less often never changes training, and a restored run evaluates the same episodes.
        return torch.Generator(self.device).manual_seed(1_000_000_007 * (self.config.seed + 1) + tag)

    @torch.no_grad()
    def greedy_rollouts(self, stage: int, episodes: int, generator: torch.Generator):
        self.model.eval()
        stages = torch.full((episodes,), stage, dtype=torch.long, device=self.device)
        operands, context = self.env.sample(episodes, stages, generator)
        rollout = self.model(context, stages, self.env.max_len, greedy=True, action_mask=self.action_mask)
        return operands, rollout.actions, self.env.run(rollout.actions, operands, stages)

    def evaluate(self, episodes: int, tag: int) -> tuple[list[float], list[float]]:
        generator = self._eval_generator(tag)
        success, reward = [], []
        for stage in range(NUM_STAGES):
            _, _, outcome = self.greedy_rollouts(stage, episodes, generator)
            success.append(outcome.correct.float().mean().item())
            reward.append(outcome.reward.mean().item())
        return success, reward

    def explain(self, samples: int | None = None) -> list[dict]:
        """A few greedy episodes per stage, spelled out: context, target, tokens, answer, correct."""
        samples = self.config.explain_samples if samples is None else samples
        if samples == 0:
            return []
        generator = self._eval_generator(-2)
        explained = []
        for stage in range(NUM_STAGES):
            operands, actions, outcome = self.greedy_rollouts(stage, samples, generator)
            declared = declared_target(operands, stage)
            for i in range(samples):
                explained.append({
                    "stage": stage,
                    "context": operands[i, :OPERANDS_SHOWN[stage]].tolist(),
                    "target": f"{TARGET_FORMULAS[stage]} = {declared[i].item()}",
                    "scored_against": outcome.target[i].item(),
                    "actions": tokens_to_text(actions[i]),
                    "answer": outcome.answer[i].item() if outcome.answer_set[i] and outcome.answered[i] else None,
                    "correct": bool(outcome.correct[i]),
                    "reward": round(outcome.reward[i].item(), 4),
                })
        return explained

    # -- the loop -------------------------------------------------------------------------
    def solved(self) -> bool:
        target = self.config.stop_at_success
        return target is not None and bool(self.history) and min(self.history[-1].success) >= target

    def run(self, callback: Callback | None = None, until: int | None = None) -> None:
        """Train up to update `until` (default: config.updates), evaluating every eval_every."""
        config = self.config
        until = config.updates if until is None else min(until, config.updates)
        while self.update < until and not self.solved():
            started = time.perf_counter()
            self.train_step()
            evaluate_now = self.update % config.eval_every == 0 or self.update == config.updates
            if evaluate_now:
                success, reward = self.evaluate(config.eval_episodes, tag=self.update)
                self.curriculum.observe(success, self.episodes)
            self.seconds += time.perf_counter() - started
            if evaluate_now:
                evaluation = Evaluation(self.update, self.episodes, self.curriculum.newest_stage(self.update),
                                        success, reward, self.last_loss, self.seconds)
                self.history.append(evaluation)
                if callback is not None:
                    callback(evaluation, self)

    @property
    def finished(self) -> bool:
        return self.update >= self.config.updates or self.solved()

    def result(self, explain: bool = True) -> TrainResult:
        success, reward = self.evaluate(self.config.final_eval_episodes, tag=-1)
        return TrainResult(self.config, success, reward, list(self.history), self.episodes,
                           self.update, self.seconds, self.explain() if explain else [])

    # -- save and restore -----------------------------------------------------------------
    def state_dict(self) -> dict:
        return {
            "format": CHECKPOINT_FORMAT,
            "config": self.config.to_dict(),
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "generator": self.generator.get_state(),
            "curriculum": self.curriculum.state_dict(),
            "state_visits": self.state_visits,
            "replay": self.replay.state_dict(),
            "update": self.update,
            "episodes": self.episodes,
            "seconds": self.seconds,
            "last_loss": self.last_loss,
            "history": [asdict(e) for e in self.history],
        }

    def load_state_dict(self, state: dict) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.generator.set_state(state["generator"])
        self.curriculum.load_state_dict(state["curriculum"])
        self.state_visits.copy_(state["state_visits"])
        self.replay.load_state_dict(state["replay"])
        self.update = state["update"]
        self.episodes = state["episodes"]
        self.seconds = state["seconds"]
        self.last_loss = state["last_loss"]
        self.history = [Evaluation(**e) for e in state["history"]]

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(path.name + ".partial")
        torch.save(self.state_dict(), partial)
        partial.replace(path)  # a crash mid-write never leaves a truncated checkpoint
        return path

    @classmethod
    def from_checkpoint(cls, path: str | Path, **config_changes) -> "Trainer":
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"checkpoint: no such file {str(path)!r}")
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as error:  # a foreign or corrupt file: say which, in one line
            raise ConfigError(f"checkpoint: {str(path)!r} is not a distributed_agent checkpoint ({error.__class__.__name__})")
        if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
            raise ConfigError(f"checkpoint: {str(path)!r} is not a distributed_agent checkpoint (format {CHECKPOINT_FORMAT})")
        try:
            trainer = cls(TrainConfig.from_dict(state["config"]).replace(**config_changes))
            trainer.load_state_dict(state)
        except (KeyError, RuntimeError, ValueError, TypeError) as error:
            reason = str(error).splitlines()[0][:120] if str(error) else error.__class__.__name__
            raise ConfigError(f"checkpoint: {str(path)!r} does not match the configuration it names ({reason})") from None
        return trainer


class ReplayBuffer:
    """The newest correct episodes of each stage (operands, actions, reward), for self-imitation.
    Sampling takes the same number from every stage that has some, so the rare successes of the
    newest stage are replayed as often as the common ones of the stages already learnt."""

    def __init__(self, stages: int, capacity: int, steps: int, device):
        self.operands = torch.zeros(stages, capacity, 5, dtype=torch.long, device=device)
        self.actions = torch.zeros(stages, capacity, steps, dtype=torch.long, device=device)
        self.reward = torch.zeros(stages, capacity, device=device)
        self.filled = [0] * stages
        self.next = [0] * stages

    def add(self, operands, stages, actions, reward, keep) -> None:
        capacity = self.reward.shape[1]
        for stage in range(len(self.filled)):
            rows = (keep & (stages == stage)).nonzero().squeeze(1)[-capacity:]
            slots = (self.next[stage] + torch.arange(len(rows), device=rows.device)) % capacity
            self.operands[stage, slots] = operands[rows]
            self.actions[stage, slots] = actions[rows]
            self.reward[stage, slots] = reward[rows].detach()
            self.next[stage] = (self.next[stage] + len(rows)) % capacity
            self.filled[stage] = min(capacity, self.filled[stage] + len(rows))

    def sample(self, count: int, generator):
        stages = [s for s, n in enumerate(self.filled) if n]
        if not stages:
            return None
        per_stage = max(1, count // len(stages))
        picks = [(s, torch.randint(0, self.filled[s], (per_stage,), generator=generator,
                                   device=generator.device)) for s in stages]
        stage_ids = torch.cat([torch.full((per_stage,), s, device=self.reward.device) for s, _ in picks])
        return (torch.cat([self.operands[s, i] for s, i in picks]), stage_ids.long(),
                torch.cat([self.actions[s, i] for s, i in picks]), torch.cat([self.reward[s, i] for s, i in picks]))

    def state_dict(self) -> dict:
        return {"operands": self.operands, "actions": self.actions, "reward": self.reward,
                "filled": list(self.filled), "next": list(self.next)}

    def load_state_dict(self, state: dict) -> None:
        self.operands.copy_(state["operands"])
        self.actions.copy_(state["actions"])
        self.reward.copy_(state["reward"])
        self.filled, self.next = list(state["filled"]), list(state["next"])


def train(config: TrainConfig, callback: Callback | None = None,
          resume_from: str | Path | dict | None = None) -> TrainResult:
    """Train one agent; `callback(evaluation, trainer)` is called after each evaluation."""
    if resume_from is None:
        trainer = Trainer(config)
    elif isinstance(resume_from, dict):
        trainer = Trainer(config)
        trainer.load_state_dict(resume_from)
    else:
        trainer = Trainer.from_checkpoint(resume_from, **config.to_dict())
    trainer.run(callback)
    return trainer.result()
