"""Agreement between model scores and human pairwise preferences (pure numpy).

For each judged pair (A, B): h = +1 when humans prefer A, -1 for B, 0 for a human tie;
m = score(A) - score(B), NaN when either item has no score. With a threshold eps the model
ties when |m| <= eps. C: both prefer the same side; D: opposite sides; Th: human tie only;
Tm: model tie only; Thm: both tie (../shared/data/preferences/README.md).

- ImageReward rule: over every pair humans did not tie, the share the model orders the
  same way strictly; a model tie is wrong, and so is a pair we have no score for (the
  denominator is fixed by the human data, as in ImageReward's test script).
- Accuracy with ties dropped: C / (C + D) over scored pairs humans did not tie, eps = -1
  (no model ties, so m = 0 counts as D). Equal to the ImageReward figure at full coverage.
- Tie-calibrated accuracy tau*: max over eps in {-1} U {every distinct |m|} of
  (C + Thm) / N over all scored pairs, every pair with |m| <= eps counted as a model tie.
  Evaluated at run boundaries of the sorted |m|, never between pairs of equal |m|: on
  heavily tied discrete scores scoring such half-moved states overstates tau*.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

# Mathematically equal differences of discrete scores can come out a few ulps apart
# (0.3 - 0.1 != 0.5 - 0.3 in floats); rounding makes them one tie class, as they should be.
DIFFERENCE_DECIMALS = 9


@dataclass(frozen=True)
class PairCounts:
    c: int
    d: int
    th: int
    tm: int
    thm: int


@dataclass(frozen=True)
class PreferenceMetrics:
    pairs: int  # judged pairs, human ties included
    human_ties: int
    scored: int  # pairs with both scores
    accuracy_imagereward: float | None
    accuracy_ties_dropped: float | None
    tau_star: float | None
    eps_star: float | None

    def to_dict(self) -> dict:
        return asdict(self)


def score_differences(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """m = a - b, NaN where either is missing, rounded (see DIFFERENCE_DECIMALS)."""
    return np.round(np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64), DIFFERENCE_DECIMALS)


def suff_stats(h: np.ndarray, m: np.ndarray, eps: float) -> PairCounts:
    """The five counts over pairs with a score (NaN m are left out)."""
    h, m = _scored(h, m)
    model_tie = np.abs(m) <= eps
    human_tie = h == 0
    agree = h * m > 0
    return PairCounts(
        c=int(np.sum(~human_tie & ~model_tie & agree)), d=int(np.sum(~human_tie & ~model_tie & ~agree)),
        th=int(np.sum(human_tie & ~model_tie)), tm=int(np.sum(~human_tie & model_tie)),
        thm=int(np.sum(human_tie & model_tie)),
    )


def imagereward_accuracy(h: np.ndarray, m: np.ndarray) -> float | None:
    h, m = np.asarray(h), np.asarray(m, dtype=np.float64)
    untied = h != 0
    if not untied.any():
        return None
    correct = np.nan_to_num(h[untied] * m[untied], nan=0.0) > 0
    return float(correct.mean())


def accuracy_ties_dropped(h: np.ndarray, m: np.ndarray) -> float | None:
    s = suff_stats(h, m, -1.0)
    return s.c / (s.c + s.d) if s.c + s.d else None


def tie_calibrated_accuracy(h: np.ndarray, m: np.ndarray) -> tuple[float | None, float | None]:
    """(tau*, eps*): the best (C + Thm) / N and the smallest eps reaching it."""
    h, m = _scored(h, m)
    n = len(h)
    if n == 0:
        return None, None
    order = np.argsort(np.abs(m), kind="stable")
    size = np.abs(m)[order]
    agree = np.concatenate([[0], np.cumsum((h * m > 0)[order])])
    both_tie = np.concatenate([[0], np.cumsum((h == 0)[order])])
    # Candidate k = number of pairs counted as model ties: 0 (eps = -1), then the end of each
    # run of equal |m|, so every pair of one |m| moves together.
    ends = np.append(np.flatnonzero(np.diff(size) != 0) + 1, n)
    k = np.concatenate([[0], ends])
    correct = (agree[-1] - agree[k]) + both_tie[k]
    eps = np.concatenate([[-1.0], size[ends - 1]])
    best = int(np.argmax(correct))
    return float(correct[best] / n), float(eps[best])


def preference_metrics(h: np.ndarray, m: np.ndarray) -> PreferenceMetrics:
    h, m = np.asarray(h, dtype=np.int64), np.asarray(m, dtype=np.float64)
    tau, eps = tie_calibrated_accuracy(h, m)
    return PreferenceMetrics(
        pairs=len(h), human_ties=int(np.sum(h == 0)), scored=int(np.sum(~np.isnan(m))),
        accuracy_imagereward=imagereward_accuracy(h, m), accuracy_ties_dropped=accuracy_ties_dropped(h, m),
        tau_star=tau, eps_star=eps,
    )


def ranking_pairs(ranks: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every pair (i < j) of one ranked group: (i, j, h); lower rank is better, equal is a tie."""
    ranks = np.asarray(ranks)
    i, j = np.triu_indices(len(ranks), k=1)
    return i, j, np.sign(ranks[j] - ranks[i]).astype(np.int64)


def _scored(h: np.ndarray, m: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    h, m = np.asarray(h, dtype=np.int64), np.asarray(m, dtype=np.float64)
    if h.shape != m.shape:
        raise ValueError(f"h and m differ in shape: {h.shape} vs {m.shape}")
    keep = ~np.isnan(m)
    return h[keep], m[keep]
