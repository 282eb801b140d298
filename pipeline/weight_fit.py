"""Checklist weights from human preference pairs: VisionReward's model, solved exactly.

P(a preferred over b) = sigmoid(w . (x_a - x_b)), no intercept. x holds one feature per
scored question (the hard answer +1/-1, or 2*p_yes - 1 with features "soft"), with the
checklist's masks applied by `pipeline/weighting.py` itself (a masked question is 0), plus
the alignment value where the checklist has an alignment term: a manifest column's, or with
`aggregation.alignment_from` that question's p_yes (then the question is the term, not also a
feature; its weight is refitted, since another model's P(Yes) is on another scale). Upstream fits this by SGD
and zeroes negative weights after each pass; here the same constrained problem is solved
to its optimum by L-BFGS-B with bounds (w >= 0 unless negative weights are allowed):

    minimise  mean_i log(1 + exp(-y_i * w.(x_a_i - x_b_i)))  +  l2/2 * |w|^2

The objective goes through per-item scores (s = X w, then s_a - s_b), so a pair costs two
lookups and never a row of a pairs x features matrix: memory is the items', not the pairs'.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
from scipy.optimize import minimize
from scipy.special import expit

from pipeline.weighting import aggregate
from schemas.checklist import Aggregation, Checklist

Features = Literal["hard", "soft"]


def fitted_question_ids(checklist: Checklist) -> list[str]:
    """Questions that get a weight: those with a dimension, but the alignment question. Gate-only
    questions (dimension null) just mask others and carry no coefficient, as upstream's presence
    questions; the alignment question's value is the alignment term (weighted by alignment_weight)."""
    source = checklist.aggregation.alignment_from
    return [q.id for q in checklist.questions if q.dimension is not None and q.id != source]


def has_alignment(checklist: Checklist) -> bool:
    """Whether the fit has an alignment term: a linear checklist with an alignment weight, or one
    whose alignment comes from a question (fitted even from a weight of 0)."""
    agg = checklist.aggregation
    return agg.rule == "linear" and (agg.alignment_weight != 0.0 or agg.alignment_from is not None)


@dataclass(frozen=True)
class FeatureLayout:
    """The columns of an item feature matrix: the alignment term first when `alignment`,
    then one per question id. The term is a flag, not a name among the question ids, so a
    question may be called anything (`alignment` included) and keep its own weight."""

    alignment: bool
    questions: tuple[str, ...]

    @staticmethod
    def of(checklist: Checklist) -> FeatureLayout:
        return FeatureLayout(has_alignment(checklist), tuple(fitted_question_ids(checklist)))

    def __len__(self) -> int:
        return int(self.alignment) + len(self.questions)

    def without_alignment(self) -> FeatureLayout:
        """The layout once the alignment column is dropped (x[:, 1:])."""
        return FeatureLayout(False, self.questions)

    def alignment_weight(self, w: np.ndarray) -> float | None:
        return float(w[0]) if self.alignment else None

    def question_weights(self, w: np.ndarray) -> dict[str, float]:
        return {q: float(v) for q, v in zip(self.questions, w[int(self.alignment):])}

    def zero_questions(self, w: np.ndarray) -> list[str]:
        """Questions whose weight is zero (the question selection), on the scale of every weight."""
        return [q for q, zero in zip(self.questions, zero_weights(w)[int(self.alignment):]) if zero]


def _one_question_dimensions(checklist: Checklist) -> Checklist:
    """The checklist with each question alone in its own dimension, unit weight, linear rule:
    aggregate's dimension scores are then exactly the masked hard answers, by the library's
    own mask rule (whatever it is), with no copy of it here."""
    # each question keeps how it is read: a rating enters as 2v - 1, as in `aggregate`
    questions = [q.model_copy(update={"dimension": q.id, "weight": 1.0}) for q in checklist.questions]
    return checklist.model_copy(update={"questions": questions, "aggregation": Aggregation(rule="linear")})


def item_features(checklist: Checklist, p_yes: np.ndarray, features: Features = "hard",
                  alignment: np.ndarray | None = None) -> np.ndarray:
    """(N, F) float64 in `FeatureLayout.of(checklist)` order for N items answered on `checklist`.
    `alignment` (the manifest column's) is not read where the checklist takes it from a question."""
    p = np.asarray(p_yes, dtype=np.float64)
    dims = aggregate(_one_question_dimensions(checklist), p).dimensions
    ids = fitted_question_ids(checklist)
    col = {q: i for i, q in enumerate(checklist.question_ids)}
    hard = np.column_stack([dims[q] for q in ids]) if ids else np.zeros((len(p), 0))
    if features == "soft":  # a kept question's hard value is +1/-1, a masked one's 0
        hard = (2.0 * p[:, [col[q] for q in ids]] - 1.0) * (hard != 0)
    if not has_alignment(checklist):
        return hard
    default = checklist.aggregation.alignment_default
    if checklist.aggregation.alignment_from is not None:  # as `aggregate` reads it
        alignment = p[:, col[checklist.aggregation.alignment_from]]
    align = np.full(len(p), default) if alignment is None else np.asarray(alignment, dtype=np.float64)
    return np.column_stack([np.where(np.isnan(align), default, align), hard])


@dataclass(frozen=True)
class Pairs:
    """Judged pairs over the rows of an item feature matrix."""

    a: np.ndarray  # (P,) item index of the first item
    b: np.ndarray  # (P,) item index of the second
    y: np.ndarray  # (P,) +1 humans prefer a, -1 b, 0 tie

    def take(self, idx: np.ndarray) -> Pairs:
        return Pairs(self.a[idx], self.b[idx], self.y[idx])

    def __len__(self) -> int:
        return len(self.y)


@dataclass(frozen=True)
class SolverResult:
    weights: np.ndarray
    objective: float
    converged: bool
    message: str
    iterations: int
    pairs: int


def objective(w: np.ndarray, x: np.ndarray, pairs: Pairs, l2: float = 0.0) -> tuple[float, np.ndarray]:
    """Mean logistic loss over untied pairs plus l2/2 |w|^2, and its gradient."""
    s = x @ w
    margin = pairs.y * (s[pairs.a] - s[pairs.b])
    n = len(pairs)
    loss = float(np.logaddexp(0.0, -margin).mean()) + 0.5 * l2 * float(w @ w)
    r = -pairs.y * expit(-margin) / n  # d loss / d (s_a - s_b)
    grad_s = np.bincount(pairs.a, r, len(x)) - np.bincount(pairs.b, r, len(x))
    return loss, x.T @ grad_s + l2 * w


def solve(x: np.ndarray, pairs: Pairs, *, l2: float = 0.0, nonnegative: bool = True,
          max_iter: int = 2000) -> SolverResult:
    """Weights minimising `objective` over the untied pairs (ties carry no preference)."""
    pairs = pairs.take(np.flatnonzero(pairs.y != 0))
    # Only the items the pairs touch: a 100-pair fit must not pay for a million items.
    used, inverse = np.unique(np.concatenate([pairs.a, pairs.b]), return_inverse=True)
    x, pairs = x[used], Pairs(inverse[: len(pairs)], inverse[len(pairs):], pairs.y.astype(np.float64))
    w0 = np.zeros(x.shape[1])
    if not len(pairs):
        return SolverResult(w0, float("nan"), False, "no untied pairs", 0, 0)
    bounds = [(0.0, None)] * x.shape[1] if nonnegative else None
    res = minimize(objective, w0, args=(x, pairs, l2), jac=True, method="L-BFGS-B", bounds=bounds,
                   options={"maxiter": max_iter, "ftol": 1e-13, "gtol": 1e-9})
    return SolverResult(np.asarray(res.x), float(res.fun), bool(res.success), str(res.message), int(res.nit),
                        len(pairs))


def zero_weights(w: np.ndarray, rel_tol: float = 1e-6) -> np.ndarray:
    """Per feature, whether its weight is zero: L-BFGS-B leaves a weight on its bound at
    exactly 0; the tolerance absorbs what is left of a free weight near it."""
    scale = max(float(np.max(np.abs(w), initial=0.0)), 1e-12)
    return np.abs(np.asarray(w)) <= rel_tol * scale


def fitted_checklist(checklist: Checklist, layout: FeatureLayout, w: np.ndarray) -> Checklist:
    """`checklist` with the fitted weights and the rule that ranks items as the fitted model
    does: linear, intercept 0, same masks, so score = w . x exactly (hard features give
    `score`, soft ones `score_soft`). Gate-only questions weigh 0; an alignment weight that
    was not fitted is kept, and so is the question it comes from (`alignment_from`). A stored
    normalisation is dropped: its moments are those of the old weights' scores."""
    fitted = layout.question_weights(w)
    questions = [q.model_copy(update={"weight": fitted.get(q.id, 0.0)}) for q in checklist.questions]
    agg = checklist.aggregation
    alignment = layout.alignment_weight(w)
    if alignment is None:
        alignment = agg.alignment_weight if agg.rule == "linear" else 0.0
    aggregation = Aggregation(rule="linear", intercept=0.0, alignment_weight=alignment,
                              alignment_default=agg.alignment_default, alignment_from=agg.alignment_from)
    return checklist.model_copy(update={"name": f"{checklist.name}+fit", "questions": questions,
                                        "aggregation": aggregation})
