"""One A2C update, top to bottom: stages -> sample -> rollout -> score -> bonuses -> loss -> step.

Exploration methods join at three seams (exploration/__init__.py): tokens forced into the
rollout, bonuses added to the reward, terms added to the loss.
"""

from __future__ import annotations

import torch

from .a2c import a2c_loss
from .state import Batch, TrainState


def train_step(run: TrainState) -> float:
    """One update of `run` in place; returns its loss."""
    config, model, env, methods = run.config, run.model, run.env, run.exploration
    run.update += 1
    model.train()
    # Which stages this batch trains, and its tasks.
    stages = run.curriculum.batch_stages(run.update, config.batch_size, run.device)
    operands, context = env.sample(config.batch_size, stages, run.generator)
    # The model writes its programs: sampled with Gumbel noise, some tokens forced by exploration.
    noise = model.gumbel_noise(env.max_len, config.batch_size, run.generator)
    forced = _overlay([m.forced_tokens(run, env.max_len, config.batch_size) for m in methods])
    rollout = model(context, stages, env.max_len, noise=noise, action_mask=run.action_mask, forced=forced)
    # Score them; exploration bonuses join the reward.
    outcome = env.run(rollout.actions, operands, stages)
    batch = Batch(operands, stages, rollout, outcome, outcome.reward)
    batch.reward = sum(_given(m.reward_bonus(run, batch) for m in methods), batch.reward)
    # The A2C loss, plus exploration's own terms.
    entropy_coef = entropy_coefficients(run, stages)
    terms = a2c_loss(
        rollout,
        batch.reward,
        loss=config.loss,
        entropy_coef=entropy_coef,
        value_coef=config.value_coef,
        normalize_advantage=config.normalize_advantage,
    )
    total = sum(_given(m.extra_loss(run, batch) for m in methods), terms.total)
    if not torch.isfinite(total):
        raise FloatingPointError(
            f"loss became {total.item()} at update {run.update} (lr={config.lr}); training diverged, try a smaller lr"
        )
    # One clipped Adam step.
    run.optimizer.zero_grad()
    total.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip, foreach=True)
    run.optimizer.step()
    run.episodes += config.batch_size
    run.last_loss = total.item()
    return run.last_loss


def entropy_coefficients(run: TrainState, stages: torch.Tensor) -> float | torch.Tensor:
    """entropy_coef, or per episode newest_stage_entropy_coef on the newest stage's episodes."""
    config = run.config
    if config.newest_stage_entropy_coef is None:
        return config.entropy_coef
    newest = stages == run.curriculum.newest_stage(run.update)
    return torch.where(newest, config.newest_stage_entropy_coef, config.entropy_coef)


def _given(values):
    return [v for v in values if v is not None]


def _overlay(forced: list) -> torch.Tensor | None:
    """Tokens forced by several methods: a later method's token wins where it forces one."""
    combined = None
    for tokens in _given(forced):
        combined = tokens if combined is None else torch.where(tokens >= 0, tokens, combined)
    return combined
