"""Pairwise preference metrics against hand-computed cases and a plain brute force that
scores every candidate eps by counting every pair (O(pairs x eps))."""
import json

import numpy as np
import pytest

from pipeline.preference_metrics import (accuracy_ties_dropped, imagereward_accuracy, preference_metrics,
                                         ranking_pairs, score_differences, suff_stats, tie_calibrated_accuracy)
from tests.paths import PREFERENCES, require


def brute_tau(h, m):
    """README definition, transcribed literally: eps over -1 and every distinct |m|, each
    with all pairs |m| <= eps as model ties; the smallest eps reaching the best value."""
    pairs = [(int(a), float(b)) for a, b in zip(h, m) if not np.isnan(b)]
    best, best_eps = None, None
    if not pairs:
        return best, best_eps
    for eps in [-1.0] + sorted({abs(b) for _, b in pairs}):
        good = 0
        for hi, mi in pairs:
            model_tie = abs(mi) <= eps
            if hi == 0 and model_tie:
                good += 1  # Thm
            elif hi != 0 and not model_tie and hi * mi > 0:
                good += 1  # C
        if best is None or good / len(pairs) > best:
            best, best_eps = good / len(pairs), eps
    return best, best_eps


def brute_imagereward(h, m):
    untied = [(hi, mi) for hi, mi in zip(h, m) if hi != 0]
    return sum(1 for hi, mi in untied if not np.isnan(mi) and hi * mi > 0) / len(untied)


def test_hand_computed_counts_and_accuracies():
    h = np.array([1, 1, -1, 0, 0, 1, -1])
    m = np.array([0.5, -0.2, -0.1, 0.0, 0.3, 0.0, np.nan])
    assert suff_stats(h, m, -1.0).__dict__ == {"c": 2, "d": 2, "th": 2, "tm": 0, "thm": 0}
    assert suff_stats(h, m, 0.2).__dict__ == {"c": 1, "d": 0, "th": 1, "tm": 3, "thm": 1}
    assert accuracy_ties_dropped(h, m) == pytest.approx(2 / 4)  # m = 0 with h = 1 is discordant at eps = -1
    assert imagereward_accuracy(h, m) == pytest.approx(2 / 5)  # the unscored pair counts as wrong
    # eps=-1: 2/6; eps=0: C=2, Thm=1 -> 3/6; 0.1, 0.2: 2/6; 0.3: C=1, Thm=2 -> 3/6 (not smaller); 0.5: 2/6
    assert tie_calibrated_accuracy(h, m) == pytest.approx((3 / 6, 0.0))


def test_equal_differences_move_together_on_tied_scores():
    # One human tie and one human preference share |m| = 1. Counting only the tie as moved
    # (as an incremental scan would, mid-run) gives 2/2; the honest figure is 1/2.
    tau, eps = tie_calibrated_accuracy(np.array([0, 1]), np.array([1.0, 1.0]))
    assert tau == pytest.approx(0.5)
    assert eps == -1.0  # reached already without model ties: the smallest eps wins


@pytest.mark.parametrize("levels", [None, 3, 5])
def test_tau_matches_brute_force_on_random_and_heavily_tied_scores(levels):
    rng = np.random.default_rng(7 if levels is None else levels)
    for _ in range(60):
        n = int(rng.integers(1, 40))
        h = rng.choice([-1, 0, 1], size=n, p=[0.4, 0.2, 0.4])
        if levels is None:
            a, b = rng.normal(size=n), rng.normal(size=n)
        else:  # discrete scores: many equal |m|
            a, b = rng.integers(0, levels, n) / 2, rng.integers(0, levels, n) / 2
        m = score_differences(a, b)
        m[rng.random(n) < 0.1] = np.nan
        expected = brute_tau(h, m)
        got = tie_calibrated_accuracy(h, m)
        if expected[0] is None:
            assert got == (None, None)
            continue
        assert got[0] == pytest.approx(expected[0]) and got[1] == pytest.approx(expected[1])
        if (h != 0).any():
            assert imagereward_accuracy(h, m) == pytest.approx(brute_imagereward(h, m))


def test_score_differences_make_float_noise_one_tie_class():
    m = score_differences(np.array([0.3, 0.5, 0.1 + 0.2]), np.array([0.1, 0.3, 0.3]))
    assert m[0] == m[1] and m[2] == 0.0
    assert np.isnan(score_differences(np.array([np.nan]), np.array([1.0]))[0])


def test_ranking_pairs_lower_rank_preferred_and_ties():
    i, j, h = ranking_pairs(np.array([2, 1, 2, 3]))
    assert list(zip(i.tolist(), j.tolist(), h.tolist())) == [
        (0, 1, -1), (0, 2, 0), (0, 3, 1), (1, 2, 1), (1, 3, 1), (2, 3, 1)]


def test_imagereward_test_split_has_6399_untied_pairs():
    items = json.loads(require(PREFERENCES / "imagereward_test.json").read_text())
    h = np.concatenate([ranking_pairs(np.array(it["ranking"]))[2] for it in items])
    assert int((h != 0).sum()) == 6399
    # A model agreeing with every untied pair and tying nothing gets 100% on every figure
    # except tau*, which pays for the human ties it cannot reproduce without model ties.
    result = preference_metrics(h, h.astype(float))
    assert result.accuracy_imagereward == result.accuracy_ties_dropped == 1.0
    assert result.tau_star == pytest.approx(1.0)  # eps = 0 turns exactly the human ties into model ties
    assert result.eps_star == 0.0 and result.scored == len(h)
