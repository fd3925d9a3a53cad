"""Bootstrap intervals, with their settings fixed and printed in every report so that a report is
reproducible: BOOTSTRAP_RESAMPLES resamples from a generator seeded with BOOTSTRAP_SEED, 95%
percentile intervals."""

from __future__ import annotations

import numpy as np

BOOTSTRAP_RESAMPLES = 2000
BOOTSTRAP_SEED = 0
CONFIDENCE = 0.95
SETTINGS = f"{BOOTSTRAP_RESAMPLES} resamples, seed {BOOTSTRAP_SEED}"


def percentile_interval(values, axis: int = 0, method: str = "linear") -> tuple:
    """The central 95% of bootstrap values along axis."""
    tail = (1 - CONFIDENCE) / 2 * 100
    low, high = np.percentile(values, [tail, 100 - tail], axis=axis, method=method)
    return low, high


def stratified_bootstrap(scores, statistic, resamples: int = BOOTSTRAP_RESAMPLES, seed: int = BOOTSTRAP_SEED):
    """(point, low, high): the statistic of scores [..., runs, tasks] and its percentile interval,
    runs resampled with replacement within each task. Leading axes (the points of a curve) share
    the resamples, so a resampled run is a whole curve. Floats for scores [runs, tasks], arrays
    over the leading axes otherwise."""
    scores = np.asarray(scores, dtype=float)
    *lead, runs, tasks = scores.shape
    picks = np.random.default_rng(seed).integers(0, runs, size=(resamples, runs, tasks))
    flat = scores.reshape(-1, runs, tasks)
    chunk = max(1, 2**23 // (resamples * runs * tasks))  # at most 64 MiB of resampled scores at once
    values = []
    for start in range(0, len(flat), chunk):
        part = flat[start : start + chunk, None]  # [points, 1, runs, tasks]
        shape = (part.shape[0], resamples, runs, tasks)
        values.append(statistic(np.take_along_axis(np.broadcast_to(part, shape), picks[None], axis=2)))
    low, high = percentile_interval(np.concatenate(values).reshape(*lead, resamples), axis=-1)
    point = statistic(scores)
    return (float(point), float(low), float(high)) if not lead else (point, low, high)
