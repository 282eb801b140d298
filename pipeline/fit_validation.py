"""Held-out figures for fitted weights: grouped k-fold cross-validation and a learning curve.

Folds split groups (prompts), never a group's pairs, so a prompt seen in training is
never scored on. A fold is fitted on its training groups' untied pairs and scored on every
pair of its held-out groups, human ties included, with `eval`'s definitions
(`pipeline/preference_metrics.py`): accuracy with ties dropped, and tau*.
"""
from __future__ import annotations

import heapq
from dataclasses import dataclass

import numpy as np

from pipeline.preference_metrics import PreferenceMetrics, preference_metrics, score_differences
from pipeline.weight_fit import Pairs, solve

CURVE_STEPS = (1, 2, 5)  # 100, 200, 500, 1k, 2k, 5k, ...


def grouped_folds(group: np.ndarray, k: int, seed: int = 0) -> np.ndarray:
    """Fold number of every pair: groups, largest first (equal sizes in a seeded order), each
    to the fold with the fewest pairs so far. The first k groups open the k folds, so no fold
    is empty, however one group dominates; fewer groups than k gives one fold per group."""
    codes = np.unique(group, return_inverse=True)[1]
    n_groups = int(codes.max()) + 1 if len(codes) else 0
    k = min(k, n_groups)
    if k < 2:
        raise ValueError(f"cross-validation needs at least 2 groups, the pairs have {n_groups}")
    sizes = np.bincount(codes, minlength=n_groups)
    shuffled = np.random.default_rng(seed).permutation(n_groups)
    order = shuffled[np.argsort(-sizes[shuffled], kind="stable")]
    loads = [(0, f) for f in range(k)]  # (pairs so far, fold): a heap, ties to the lower fold
    fold_in_order = []
    for size in sizes[order].tolist():
        load, f = loads[0]
        heapq.heapreplace(loads, (load + size, f))
        fold_in_order.append(f)
    fold_of_group = np.empty(n_groups, dtype=np.int64)
    fold_of_group[order] = fold_in_order
    return fold_of_group[codes]


def untrainable_folds(pairs: Pairs, fold: np.ndarray) -> list[int]:
    """Folds with no untied pair outside them to train on (every other group's pairs are
    human ties): their held-out figures would be those of zero weights."""
    untied = pairs.y != 0
    return [int(f) for f in np.unique(fold) if not np.any(untied & (fold != f))]


def evaluate(x: np.ndarray, pairs: Pairs, w: np.ndarray) -> PreferenceMetrics:
    """eval's figures for the scores x @ w on these pairs."""
    s = x @ w
    return preference_metrics(pairs.y.astype(np.int64), score_differences(s[pairs.a], s[pairs.b]))


@dataclass(frozen=True)
class Spread:
    mean: float | None
    sd: float | None
    min: float | None
    max: float | None

    @staticmethod
    def of(values: list[float | None]) -> Spread:
        v = np.array([x for x in values if x is not None], dtype=np.float64)
        if not len(v):
            return Spread(None, None, None, None)
        return Spread(float(v.mean()), float(v.std(ddof=1)) if len(v) > 1 else 0.0, float(v.min()), float(v.max()))


@dataclass(frozen=True)
class FoldResult:
    fold: int
    train_pairs: int  # untied pairs fitted
    test_pairs: int  # every held-out pair, ties included
    weights: np.ndarray
    converged: bool
    metrics: PreferenceMetrics


def cross_validate(x: np.ndarray, pairs: Pairs, fold: np.ndarray, *, l2: float = 0.0,
                   nonnegative: bool = True, train_size: int | None = None, seed: int = 0) -> list[FoldResult]:
    """One fit per fold; `train_size` fits a seeded sample of that many training pairs."""
    out = []
    rng = np.random.default_rng(seed)
    for f in np.unique(fold):
        train = np.flatnonzero((fold != f) & (pairs.y != 0))
        if not len(train):
            raise ValueError(f"not enough groups: fold {f} has no untied pair outside it to train on")
        if train_size is not None and train_size < len(train):
            train = np.sort(rng.choice(train, train_size, replace=False))
        test = pairs.take(np.flatnonzero(fold == f))
        fit = solve(x, pairs.take(train), l2=l2, nonnegative=nonnegative)
        metrics = evaluate(x, test, fit.weights)
        out.append(FoldResult(int(f), len(train), len(test), fit.weights, fit.converged, metrics))
    return out


def summarise(folds: list[FoldResult]) -> dict:
    return {
        "folds": len(folds),
        "train_pairs": Spread.of([r.train_pairs for r in folds]).__dict__,
        "accuracy_ties_dropped": Spread.of([r.metrics.accuracy_ties_dropped for r in folds]).__dict__,
        "tau_star": Spread.of([r.metrics.tau_star for r in folds]).__dict__,
        "all_converged": all(r.converged for r in folds),
    }


def curve_sizes(n_max: int, start: int = 100) -> list[int]:
    """100, 200, 500, 1000, 2000, 5000, ... below n_max, then n_max (all)."""
    sizes, scale = [], start
    while True:
        for step in CURVE_STEPS:
            if scale * step >= n_max:
                return [*sizes, n_max]
            sizes.append(scale * step)
        scale *= 10


def learning_curve(x: np.ndarray, pairs: Pairs, fold: np.ndarray, *, l2: float = 0.0, nonnegative: bool = True,
                   seed: int = 0) -> list[dict]:
    """Held-out figures at increasing numbers of training pairs, each point over every fold."""
    smallest = min(int(np.sum((fold != f) & (pairs.y != 0))) for f in np.unique(fold))
    points = []
    for n in curve_sizes(smallest):
        folds = cross_validate(x, pairs, fold, l2=l2, nonnegative=nonnegative, train_size=n, seed=seed)
        points.append({"train_pairs": n, **{k: v for k, v in summarise(folds).items() if k != "train_pairs"}})
    return points
