"""Pure aggregation of per-question p_yes into answers, scores and dimension scores.

Reproduces the upstream VisionReward formulas for hard answers:
- video ('mean'): score = mean_q(w_q * a_q), a_q = +1 if p_yes >= 0.5 else -1;
- image ('linear'): masks first (a gate answered no zeroes the questions it governs,
  applied in order, so a zeroed gate zeroes its own targets too, as upstream does by
  mutating its list), then score = alignment_weight * alignment + sum_q(w_q * a_q) + intercept.
`score_soft` is the same formula with 2*p_yes - 1 in place of a_q (masks still gate on the
hard answers, so a question is either counted or not). A dimension's score is the same rule
restricted to that dimension's questions, without intercept or alignment term.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from schemas.checklist import Checklist


@dataclass(frozen=True)
class Aggregated:
    answers: np.ndarray  # (N, Q) int8, +1/-1, before masking
    score: np.ndarray  # (N,) float64
    score_soft: np.ndarray  # (N,) float64
    dimensions: dict[str, np.ndarray]  # name -> (N,) float64


def hard_answers(p_yes: np.ndarray) -> np.ndarray:
    return np.where(p_yes >= 0.5, 1, -1).astype(np.int8)


def _apply_masks(checklist: Checklist, hard: np.ndarray, soft: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    hard, soft = hard.astype(np.float64), soft.astype(np.float64)
    col = {qid: i for i, qid in enumerate(checklist.question_ids)}
    for mask in checklist.masks:
        keep = (hard[:, col[mask.question]] > 0).astype(np.float64)
        for target in mask.zeroes:
            hard[:, col[target]] *= keep
            soft[:, col[target]] *= keep
    return hard, soft


def aggregate(checklist: Checklist, p_yes: np.ndarray, alignment: np.ndarray | None = None) -> Aggregated:
    """Scores for N items answered on `checklist`; p_yes is (N, Q) in checklist order.

    `alignment` (N,) is the external alignment probability for 'linear' checklists with an
    alignment term; NaN or None entries fall back to the checklist's `alignment_default`.
    """
    p_yes = np.asarray(p_yes, dtype=np.float64)
    n, q = p_yes.shape
    if q != len(checklist.questions):
        raise ValueError(f"p_yes has {q} columns, checklist {checklist.name!r} has {len(checklist.questions)} questions")
    answers = hard_answers(p_yes)
    hard, soft = _apply_masks(checklist, answers, 2.0 * p_yes - 1.0)
    w = np.array([qq.weight for qq in checklist.questions], dtype=np.float64)
    agg = checklist.aggregation

    def combine(values: np.ndarray, cols: np.ndarray, total: bool) -> np.ndarray:
        weighted = values[:, cols] * w[cols]
        if agg.rule == "mean":
            return weighted.mean(axis=1)
        out = weighted.sum(axis=1)
        if total:
            align = np.full(n, agg.alignment_default) if alignment is None else np.asarray(alignment, np.float64)
            align = np.where(np.isnan(align), agg.alignment_default, align)
            out = out + agg.alignment_weight * align + agg.intercept
        return out

    every = np.arange(q)
    dims = {}
    for name in checklist.dimensions:
        cols = np.array([i for i, qq in enumerate(checklist.questions) if qq.dimension == name])
        dims[name] = combine(hard, cols, total=False)
    return Aggregated(
        answers=answers,
        score=combine(hard, every, total=True),
        score_soft=combine(soft, every, total=True),
        dimensions=dims,
    )
