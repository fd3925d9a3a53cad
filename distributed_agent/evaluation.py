"""Greedy evaluation of a run on every stage, and a few of its episodes spelled out.

Evaluation draws from its own random stream, fixed by (seed, tag), so that evaluating more or
less often never changes training, and a restored run evaluates the same episodes.
"""

from __future__ import annotations

import torch

from .env import NUM_STAGES, OPERANDS_SHOWN, TARGET_FORMULAS, declared_target, tokens_to_text
from .metrics import stage_metrics
from .state import Evaluation, TrainState

FINAL_TAG, EXPLAIN_TAG = -1, -2


def evaluation_metrics(evaluation: Evaluation) -> dict:
    """Flat dict with the same keys every time (Tune's progress.csv fixes its columns once)."""
    return {
        "update": evaluation.update,
        "episodes": evaluation.episodes,
        "stage": evaluation.stage,
        "loss": evaluation.loss,
        "seconds": evaluation.seconds,
        **stage_metrics(evaluation.success, evaluation.reward),
    }


def evaluation_generator(run: TrainState, tag: int) -> torch.Generator:
    return torch.Generator(run.device).manual_seed(1_000_000_007 * (run.config.seed + 1) + tag)


@torch.no_grad()
def greedy_rollouts(run: TrainState, stage: int, episodes: int, generator: torch.Generator):
    """(operands, actions, outcome) of `episodes` greedy episodes of one stage."""
    run.model.eval()
    stages = torch.full((episodes,), stage, dtype=torch.long, device=run.device)
    operands, context = run.env.sample(episodes, stages, generator)
    rollout = run.model(context, stages, run.env.max_len, action_mask=run.action_mask)
    return operands, rollout.actions, run.env.run(rollout.actions, operands, stages)


def evaluate(run: TrainState, episodes: int, tag: int) -> tuple[list[float], list[float]]:
    """Greedy success and mean reward per stage on `episodes` episodes each."""
    generator = evaluation_generator(run, tag)
    success, reward = [], []
    for stage in range(NUM_STAGES):
        _, _, outcome = greedy_rollouts(run, stage, episodes, generator)
        success.append(outcome.correct.float().mean().item())
        reward.append(outcome.reward.mean().item())
    return success, reward


def explain(run: TrainState, samples: int | None = None) -> list[dict]:
    """A few greedy episodes per stage, spelled out: context, target, tokens, answer, correct."""
    samples = run.config.explain_samples if samples is None else samples
    if samples == 0:
        return []
    generator = evaluation_generator(run, EXPLAIN_TAG)
    explained = []
    for stage in range(NUM_STAGES):
        operands, actions, outcome = greedy_rollouts(run, stage, samples, generator)
        declared = declared_target(operands, stage)
        for i in range(samples):
            explained.append(
                {
                    "stage": stage,
                    "context": operands[i, : OPERANDS_SHOWN[stage]].tolist(),
                    "target": f"{TARGET_FORMULAS[stage]} = {declared[i].item()}",
                    "scored_against": outcome.target[i].item(),
                    "actions": tokens_to_text(actions[i]),
                    "answer": outcome.answer[i].item() if outcome.answer_set[i] and outcome.answered[i] else None,
                    "correct": bool(outcome.correct[i]),
                    "reward": round(outcome.reward[i].item(), 4),
                }
            )
    return explained
