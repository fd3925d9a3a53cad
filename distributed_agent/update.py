"""One A2C update of a population, top to bottom: stages -> sample -> rollout -> score -> bonuses
-> loss -> step.

A population is K runs of one configuration with different seeds (K = 1: a run alone). What a
member draws at random comes from its own generator, in the order of a run alone; the rollout, the
scoring and the loss run on all members at once (fused_rollout.py); each member's gradient is
clipped and stepped by its own Adam. So a member's numbers are those of its seed trained alone,
bit for bit on the CPU (tests/test_population.py).

Exploration methods join at three seams (exploration/__init__.py), per member: tokens forced into
the rollout, bonuses added to the reward, terms added to the loss.
"""

from __future__ import annotations

import math

import torch

from .a2c import a2c_loss
from .model import Rollout, StackedWeights, population_forward
from .state import Batch, TrainState


def train_step(members: list[TrainState]) -> list[float]:
    """One update of every member in place (all of one config, at the same update); their losses."""
    config, env, action_mask = members[0].config, members[0].env, members[0].action_mask
    batch_size, steps = config.batch_size, env.max_len
    for run in members:
        run.update += 1
        run.model.train()
    # Which stages each member's batch trains, its tasks, its sampling noise, its forced tokens.
    stages, operands, contexts, noise, forced = [], [], [], [], []
    for run in members:
        stages.append(run.curriculum.batch_stages(run.update, batch_size, run.device))
        member_operands, context = env.sample(batch_size, stages[-1], run.generator)
        operands.append(member_operands)
        contexts.append(context)
        noise.append(run.model.gumbel_noise(steps, batch_size, run.generator))
        forced.append(_overlay([m.forced_tokens(run, steps, batch_size) for m in run.exploration]))
    stages, operands, noise = torch.stack(stages), torch.stack(operands), torch.stack(noise)
    # Every member writes its programs: one fused rollout over the stacked weights.
    weights = StackedWeights.of([run.model for run in members])
    rollout = population_forward(
        weights, contexts, stages, steps, noise=noise, action_mask=action_mask, forced=_stack_forced(forced)
    )
    # Score them all at once; each member's exploration bonuses join its reward.
    outcome = env.run(rollout.actions.flatten(0, 1), operands.flatten(0, 1), stages.flatten(0, 1))
    batches = []
    for k, run in enumerate(members):
        member_outcome = outcome.rows(k * batch_size, (k + 1) * batch_size)
        batch = Batch(operands[k], stages[k], rollout.member(k), member_outcome, member_outcome.reward)
        batch.policy = _member_policy(weights, k, action_mask)
        batch.reward = sum(_given(m.reward_bonus(run, batch) for m in run.exploration), batch.reward)
        batches.append(batch)
    # The A2C loss of every member, plus each member's exploration terms.
    terms = a2c_loss(
        rollout,
        torch.stack([batch.reward for batch in batches]),
        loss=config.loss,
        entropy_coef=torch.stack([entropy_coefficients(run, stages[k]) for k, run in enumerate(members)]),
        value_coef=config.value_coef,
        normalize_advantage=config.normalize_advantage,
    )
    extra = [
        sum(_given(m.extra_loss(run, batch) for m in run.exploration), 0.0) for run, batch in zip(members, batches)
    ]
    total = terms.total + torch.stack([torch.as_tensor(e, dtype=terms.total.dtype) for e in extra])
    losses = total.tolist()
    for run, loss in zip(members, losses):
        if not math.isfinite(loss):
            raise FloatingPointError(
                f"loss became {loss} at update {run.update} (lr={config.lr}, seed {run.config.seed}); "
                "training diverged, try a smaller lr"
            )
    # One clipped Adam step per member.
    for run in members:
        run.optimizer.zero_grad()
    total.sum().backward()
    for run, loss in zip(members, losses):
        torch.nn.utils.clip_grad_norm_(run.model.parameters(), config.grad_clip, foreach=True)
        run.optimizer.step()
        run.episodes += batch_size
        run.last_loss = loss
    return losses


def entropy_coefficients(run: TrainState, stages: torch.Tensor) -> torch.Tensor:
    """FloatTensor[B]: entropy_coef, or newest_stage_entropy_coef on the newest stage's episodes."""
    config = run.config
    if config.newest_stage_entropy_coef is None:
        return torch.full(stages.shape, config.entropy_coef, device=stages.device)
    newest = stages == run.curriculum.newest_stage(run.update)
    return torch.where(newest, config.newest_stage_entropy_coef, config.entropy_coef)


def _member_policy(weights: StackedWeights, k: int, action_mask):
    """Member k's model as a function, on the stacked weights: a second rollout (self-imitation's
    replay) then sends its gradient through the same stack, summed in the same order as alone."""

    def policy(context, stages, steps, forced=None) -> Rollout:
        return population_forward(
            weights.member(k),
            [context],
            stages.unsqueeze(0),
            steps,
            action_mask=action_mask,
            forced=None if forced is None else forced.unsqueeze(0),
        ).member(0)

    return policy


def _stack_forced(forced: list) -> torch.Tensor | None:
    """[K, B, T] of the members' forced tokens (-1: none), or None when no member forces any."""
    if all(tokens is None for tokens in forced):
        return None
    some = next(tokens for tokens in forced if tokens is not None)
    return torch.stack([torch.full_like(some, -1) if tokens is None else tokens for tokens in forced])


def _given(values):
    return [v for v in values if v is not None]


def _overlay(forced: list) -> torch.Tensor | None:
    """Tokens forced by several methods: a later method's token wins where it forces one."""
    combined = None
    for tokens in _given(forced):
        combined = tokens if combined is None else torch.where(tokens >= 0, tokens, combined)
    return combined
