"""From the answer distributions of both orders of a pair to what `OUT/pairs/` records (pure numpy).

Each order's distribution is over the position word sets, renormalised: (first, second) or, with
tie words, (first, second, tie). Order "ab" shows a first, order "ba" shows b first, so in "ba" the
second slot is a. See schemas/judge_output.py for the columns.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class PairOutcome:
    """Per question (arrays of shape (Q,)) what both orders of one pair said."""

    p_first_ab: np.ndarray
    p_first_ba: np.ndarray
    p_a: np.ndarray
    position_bias: np.ndarray
    consistent: np.ndarray  # bool
    p_tie: np.ndarray | None  # only with tie words


def pair_outcome(ab: np.ndarray, ba: np.ndarray) -> PairOutcome:
    """`ab`, `ba`: (Q, K) distributions over the word sets of each question, K = 2 (first, second)
    or 3 (first, second, tie), each row summing to 1.

    p_a = (P(a | ab) + P(a | ba)) / 2 where P(a | ab) = first + tie / 2 and P(a | ba) = second + tie / 2:
    each order's tie mass counts half for each side. Without ties this is (p_first_ab + 1 - p_first_ba) / 2.
    """
    ab, ba = np.asarray(ab, np.float64), np.asarray(ba, np.float64)
    if ab.shape != ba.shape or ab.ndim != 2 or ab.shape[1] not in (2, 3):
        raise ValueError(f"expected two (questions, 2 or 3) distributions of one shape, got {ab.shape} and {ba.shape}")
    ties = ab.shape[1] == 3
    tie_ab, tie_ba = (ab[:, 2], ba[:, 2]) if ties else (np.zeros(len(ab)), np.zeros(len(ba)))
    a_given_ab = ab[:, 0] + tie_ab / 2
    a_given_ba = ba[:, 1] + tie_ba / 2
    return PairOutcome(
        p_first_ab=ab[:, 0].astype(np.float32),
        p_first_ba=ba[:, 0].astype(np.float32),
        p_a=((a_given_ab + a_given_ba) / 2).astype(np.float32),
        position_bias=((ab[:, 0] + ba[:, 0]) / 2 - 0.5).astype(np.float32),
        # each order's preference is its first-vs-second comparison: a wins "ab" when first > second,
        # and "ba" when second > first
        consistent=(ab[:, 0] > ab[:, 1]) == (ba[:, 1] > ba[:, 0]),
        p_tie=((tie_ab + tie_ba) / 2).astype(np.float32) if ties else None,
    )
