"""Pure aggregation of per-question p_yes into answers, scores and dimension scores.

Rules (hard answers a_q = +1 if p_yes >= 0.5 else -1; masks first: a gate answered no
zeroes the questions it governs, applied in order, so a zeroed gate zeroes its own targets
too, as upstream VisionReward does by mutating its list):
- 'mean' (ours): the weighted average of the answers over the questions that count for the
  item, score = sum_q(w_q * a_q) / sum_q |w_q| over unmasked questions. Masked and zero-weight
  questions drop out instead of pulling the score towards 0, so an item's score stays in
  [-1, 1] whatever its gates said; with none counting the score is 0 (no evidence).
- 'mean_all' (VisionReward video, bit for bit): score = mean over every question of w_q * a_q,
  masked and zero-weight questions counting as 0.
- 'linear' (VisionReward image, bit for bit):
  score = alignment_weight * alignment + sum_q(w_q * a_q) + intercept. With
  `aggregation.alignment_from`, alignment is that question's p_yes (taking precedence over an
  external alignment) and the question is left out of the sum and of every dimension.
`score_soft` is the same formula with 2*p_yes - 1 in place of a_q (masks still gate on the
hard answers, so a question is either counted or not). A rating question's p_yes is its expected
value v in [0, 1]: it enters both `score` and `score_soft` as 2v - 1 (its hard answer, v >= 0.5,
only gates masks and fills `answers`). A dimension's score is the same rule
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


def question_counts(checklist: Checklist, hard: np.ndarray) -> np.ndarray:
    """(N, Q) float64: 1 where the question counts for the item, 0 where a mask zeroed it."""
    hard = hard.astype(np.float64)
    keep = np.ones_like(hard)
    col = {qid: i for i, qid in enumerate(checklist.question_ids)}
    for mask in checklist.masks:
        # a gate that an earlier mask zeroed reads 0 here, so it zeroes its targets too
        gate_yes = (hard[:, col[mask.question]] * keep[:, col[mask.question]] > 0).astype(np.float64)
        for target in mask.zeroes:
            keep[:, col[target]] *= gate_yes
    return keep


def row_sums(values: np.ndarray) -> np.ndarray:
    """Each row's sum, added in question order. numpy's `sum(axis=1)` picks its order of addition
    from the array's shape, so a row's score could differ in the last bit with the rows it was
    batched with: `rescore` would then not reproduce `score` bit for bit."""
    out = np.zeros(values.shape[0])
    for column in values.T:
        out += column
    return out


def aggregate(checklist: Checklist, p_yes: np.ndarray, alignment: np.ndarray | None = None, *,
              soft_dimensions: bool = False) -> Aggregated:
    """Scores for N items answered on `checklist`; p_yes is (N, Q) in checklist order.

    `alignment` (N,) is the external alignment probability for 'linear' checklists with an
    alignment term; NaN or None entries fall back to the checklist's `alignment_default`.
    `soft_dimensions`: the dimensions take 2 p_yes - 1 as `score_soft` does (a judged pair's
    dimensions, whose feature is 2 p_a - 1), not the hard answers.
    """
    p_yes = np.asarray(p_yes, dtype=np.float64)
    n, q = p_yes.shape
    if q != len(checklist.questions):
        raise ValueError(f"p_yes has {q} columns, checklist {checklist.name!r} has {len(checklist.questions)} questions")
    answers = hard_answers(p_yes)
    keep = question_counts(checklist, answers)
    soft = (2.0 * p_yes - 1.0) * keep
    rating = np.array([qq.answer == "rating" for qq in checklist.questions])
    hard = np.where(rating, 2.0 * p_yes - 1.0, answers.astype(np.float64)) * keep
    w = np.array([qq.weight for qq in checklist.questions], dtype=np.float64)
    agg = checklist.aggregation
    if agg.alignment_from is not None:  # the alignment term, not also a feature
        source = checklist.question_ids.index(agg.alignment_from)
        alignment, w[source] = p_yes[:, source], 0.0

    def combine(values: np.ndarray, cols: np.ndarray, total: bool) -> np.ndarray:
        weighted = values[:, cols] * w[cols]
        if agg.rule == "mean_all":
            return row_sums(weighted) / len(cols)
        if agg.rule == "mean":
            counted = row_sums(keep[:, cols] * np.abs(w[cols]))
            return np.divide(row_sums(weighted), counted, out=np.zeros(n), where=counted > 0)
        out = row_sums(weighted)
        if total:
            align = np.full(n, agg.alignment_default) if alignment is None else np.asarray(alignment, np.float64)
            align = np.where(np.isnan(align), agg.alignment_default, align)
            out = out + agg.alignment_weight * align + agg.intercept
        return out

    every = np.arange(q)
    dims = {}
    for name in checklist.dimensions:
        cols = np.array([i for i, qq in enumerate(checklist.questions) if qq.dimension == name])
        dims[name] = combine(soft if soft_dimensions else hard, cols, total=False)
    return Aggregated(
        answers=answers,
        score=combine(hard, every, total=True),
        score_soft=combine(soft, every, total=True),
        dimensions=dims,
    )
