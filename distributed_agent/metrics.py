"""The keys every evaluation reports, defined once: the training loop, the spec's `metric`
and the reports all read them from here."""

from __future__ import annotations

from .env import NUM_STAGES

STAGES = tuple(f"stage{s}" for s in range(NUM_STAGES))
SUCCESS = tuple(f"success/{s}" for s in STAGES)  # greedy share of correct answers, per stage
REWARD = tuple(f"reward/{s}" for s in STAGES)  # mean reward with the shaping bonus, per stage
SUCCESS_MIN = "success/min"  # the weakest stage: the headline number
OBJECTIVES = (SUCCESS_MIN, *SUCCESS, *REWARD)  # what a spec may optimise
SOLVED = 0.99  # success on every stage that counts as solved
SOLVED_SHARE = "solved_share"  # a population trial's share of members solved
HYPERPARAMETER_PREFIX = "hp/"  # pbt trials: the value in effect of each mutated field
SCHEDULE_KEY = "schedule"  # pbt trials: every change so far, as a `schedule:` (JSON text)


def stage_metrics(success: list[float], reward: list[float]) -> dict:
    """{success/stageN, reward/stageN, ..., success/min}: the same keys every time."""
    flat = {}
    for stage in range(NUM_STAGES):
        flat[SUCCESS[stage]] = success[stage]
        flat[REWARD[stage]] = reward[stage]
    flat[SUCCESS_MIN] = min(success)
    return flat
