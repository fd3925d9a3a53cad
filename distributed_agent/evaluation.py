"""Greedy evaluation of a run on every stage, and a few of its episodes spelled out.

Evaluation draws from its own random stream, fixed by (seed, tag), so that evaluating more or
less often never changes training, and a restored run evaluates the same episodes.
"""

from __future__ import annotations

import torch

from .env import NUM_STAGES, OPERANDS_SHOWN, TARGET_FORMULAS, declared_target, tokens_to_text
from .metrics import stage_metrics
from .model import StackedWeights, population_forward
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
def greedy_rollouts(members: list[TrainState], stage: int, episodes: int, generators: list[torch.Generator]):
    """(operands [K, N, 5], actions [K, N, T], outcome of K*N episodes): `episodes` greedy
    episodes of one stage per member, each drawn from the member's generator, rolled out together."""
    if members[0].config.agent != "ours":
        from . import baselines

        return baselines.greedy_rollouts(members, stage, episodes, generators)
    env = members[0].env
    for run in members:
        run.model.eval()
    stages = torch.full((len(members), episodes), stage, dtype=torch.long, device=members[0].device)
    operands, contexts = zip(*(env.sample(episodes, stage, generator) for generator in generators))
    weights = StackedWeights.of([run.model for run in members])
    rollout = population_forward(weights, list(contexts), stages, env.max_len, action_mask=members[0].action_mask)
    operands = torch.stack(operands)
    return operands, rollout.actions, env.run(rollout.actions.flatten(0, 1), operands.flatten(0, 1), stage)


def evaluate(members: list[TrainState], episodes: int, tag: int) -> list[tuple[list[float], list[float]]]:
    """Per member: greedy success and mean reward per stage on `episodes` episodes each."""
    generators = [evaluation_generator(run, tag) for run in members]
    scores = [([], []) for _ in members]
    for stage in range(NUM_STAGES):
        _, _, outcome = greedy_rollouts(members, stage, episodes, generators)
        for k, (success, reward) in enumerate(scores):
            member = outcome.rows(k * episodes, (k + 1) * episodes)
            success.append(member.correct.float().mean().item())
            reward.append(member.reward.mean().item())
    return scores


def explain(run: TrainState, samples: int | None = None) -> list[dict]:
    """A few greedy episodes per stage, spelled out: context, target, tokens, answer, correct."""
    samples = run.config.explain_samples if samples is None else samples
    if samples == 0:
        return []
    generator = evaluation_generator(run, EXPLAIN_TAG)
    explained = []
    for stage in range(NUM_STAGES):
        operands, actions, outcome = greedy_rollouts([run], stage, samples, [generator])
        operands, actions = operands[0], actions[0]
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
