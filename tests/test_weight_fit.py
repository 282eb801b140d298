"""Weight fitting without Ray: planted weights recovered, the optimum checked against an
independent projected-gradient solver, features and the fitted checklist against the
library's own scoring."""
from __future__ import annotations

import numpy as np
import pytest

from pipeline.fit_validation import (cross_validate, curve_sizes, evaluate, grouped_folds, learning_curve, summarise,
                                     untrainable_folds)
from pipeline.weight_fit import FeatureLayout, Pairs, fitted_checklist, item_features, solve
from pipeline.weighting import aggregate
from schemas.checklist import default_checklist
from schemas.visionreward_format import load_visionreward
from tests.paths import VR_DIMS, VR_IMAGE_QA, VR_IMAGE_W, require

IMAGE = default_checklist("image")


def planted_problem(n_groups: int, per_group: int, seed: int, features: str = "hard"):
    """Items answered on the default image checklist (masks included), preferences drawn
    from P(a > b) = sigmoid(w . (x_a - x_b)) with known non-negative weights, some zero."""
    rng = np.random.default_rng(seed)
    p_yes = rng.random((n_groups * per_group, len(IMAGE.questions)))
    x = item_features(IMAGE, p_yes, features)
    w = rng.uniform(0.2, 1.0, x.shape[1])
    w[rng.choice(x.shape[1], 5, replace=False)] = 0.0
    i, j = np.triu_indices(per_group, k=1)
    a = (np.arange(n_groups)[:, None] * per_group + i).ravel()
    b = (np.arange(n_groups)[:, None] * per_group + j).ravel()
    z = (x @ w)[a] - (x @ w)[b]
    y = np.where(rng.random(len(a)) < 1.0 / (1.0 + np.exp(-z)), 1, -1)
    return x, w, Pairs(a, b, y), a // per_group


def cosine(u: np.ndarray, v: np.ndarray) -> float:
    return float(u @ v / np.linalg.norm(u) / np.linalg.norm(v))


def test_planted_weights_are_recovered_with_their_zeros():
    x, w, pairs, _ = planted_problem(4000, 5, seed=0)  # 40,000 pairs
    fit = solve(x, pairs)
    assert fit.converged and fit.pairs == 40_000
    assert cosine(fit.weights, w) >= 0.95
    layout = FeatureLayout.of(IMAGE)
    planted_zero = [n for n, v in zip(layout.questions, w) if v == 0]
    assert np.all(fit.weights[w == 0] <= 0.05 * fit.weights.max())  # zero or near it
    assert set(layout.zero_questions(fit.weights)) <= set(planted_zero)
    assert np.all(fit.weights[w > 0] > 0.1 * fit.weights.max())

    # Negative control: the same items with preferences that ignore the weights.
    shuffled = Pairs(pairs.a, pairs.b, np.random.default_rng(1).permutation(pairs.y))
    assert cosine(solve(x, shuffled).weights, w) < 0.9


def test_held_out_accuracy_matches_the_planted_weights_own():
    x, w, pairs, group = planted_problem(3000, 4, seed=2)
    folds = grouped_folds(group, 5, seed=0)
    cv = cross_validate(x, pairs, folds)
    fitted = summarise(cv)["accuracy_ties_dropped"]["mean"]
    planted = np.mean([evaluate(x, pairs.take(np.flatnonzero(folds == r.fold)), w).accuracy_ties_dropped for r in cv])
    assert abs(fitted - planted) <= 0.01
    # Negative control: weights of the wrong sign order the held-out pairs badly.
    assert np.mean([evaluate(x, pairs.take(np.flatnonzero(folds == r.fold)), -w).accuracy_ties_dropped
                    for r in cv]) < planted - 0.2


def test_grouped_folds_never_split_a_group_and_balance_pairs():
    rng = np.random.default_rng(3)
    group = np.repeat(np.arange(300), rng.integers(1, 30, 300))
    folds = grouped_folds(group, 5, seed=1)
    for g in np.unique(group):
        assert len(set(folds[group == g])) == 1
    counts = np.bincount(folds)
    assert len(counts) == 5 and counts.min() > 0.7 * counts.max()
    assert len(np.unique(grouped_folds(np.array([7, 7, 9]), 5))) == 2  # fewer groups than folds
    with pytest.raises(ValueError, match="at least 2 groups"):
        grouped_folds(np.zeros(4), 5)


@pytest.mark.parametrize("seed", range(8))
def test_one_dominant_group_leaves_no_fold_empty(seed):
    # Cut by running pair counts, a large group after the small ones took every fold: one
    # fold, trained on 0 pairs.
    group = np.repeat(np.arange(5), [100, 1, 1, 1, 1])
    folds = grouped_folds(group, 5, seed)
    assert sorted(np.unique(folds)) == [0, 1, 2, 3, 4]
    assert len(np.unique(grouped_folds(group, 3, seed))) == 3
    for g in np.unique(group):
        assert len(set(folds[group == g])) == 1
    # Greedy by size: the dominant group alone in its fold, the small ones spread over the rest.
    assert np.sum(folds == folds[0]) == 100


def test_a_fold_without_untied_training_pairs_is_refused():
    x, _, pairs, group = planted_problem(2, 4, seed=8)
    folds = grouped_folds(group, 2)
    tied = Pairs(pairs.a, pairs.b, np.where(group == 1, 0, pairs.y))  # group 1: every pair a human tie
    assert untrainable_folds(pairs, folds) == []  # negative control
    assert untrainable_folds(tied, folds) == [int(folds[group == 0][0])]
    with pytest.raises(ValueError, match="not enough groups"):
        cross_validate(x, tied, folds)


def test_curve_sizes():
    assert curve_sizes(3500) == [100, 200, 500, 1000, 2000, 3500]
    assert curve_sizes(1000) == [100, 200, 500, 1000]
    assert curve_sizes(60) == [60]


def test_learning_curve_rises_to_the_cross_validation_figure():
    x, _, pairs, group = planted_problem(600, 5, seed=4)
    folds = grouped_folds(group, 4)
    curve = learning_curve(x, pairs, folds)
    assert [p["train_pairs"] for p in curve] == [100, 200, 500, 1000, 2000, 4500]
    acc = [p["accuracy_ties_dropped"]["mean"] for p in curve]
    assert acc[-1] > acc[0]
    assert acc[-1] == pytest.approx(summarise(cross_validate(x, pairs, folds))["accuracy_ties_dropped"]["mean"])


def _pg_objective(d: np.ndarray, w: np.ndarray, l2: float) -> float:
    return float(np.mean(np.logaddexp(0.0, -d @ w)) + 0.5 * l2 * w @ w)


def projected_gradient(d: np.ndarray, l2: float, nonnegative: bool, iters: int = 2000) -> np.ndarray:
    """FISTA on the explicit pair-difference matrix d (rows y*(x_a - x_b)), projected on w >= 0."""
    lipschitz = np.linalg.norm(d, 2) ** 2 / (4 * len(d)) + l2
    w = v = np.zeros(d.shape[1])
    t = 1.0
    for _ in range(iters):
        g = -d.T @ (1.0 / (1.0 + np.exp(d @ v))) / len(d) + l2 * v
        w_next = v - g / lipschitz
        if nonnegative:
            w_next = np.maximum(w_next, 0.0)
        t_next = (1 + np.sqrt(1 + 4 * t * t)) / 2
        v = w_next + (t - 1) / t_next * (w_next - w)
        w, t = w_next, t_next
    return w


@pytest.mark.parametrize("l2, nonnegative", [(0.0, True), (0.01, True), (0.01, False)])
def test_objective_no_worse_than_projected_gradient(l2, nonnegative):
    x, _, pairs, _ = planted_problem(300, 5, seed=5)
    untied = pairs.take(np.flatnonzero(pairs.y != 0))
    d = untied.y[:, None] * (x[untied.a] - x[untied.b])
    fit = solve(x, pairs, l2=l2, nonnegative=nonnegative)
    pg = projected_gradient(d, l2, nonnegative)
    ours = _pg_objective(d, fit.weights, l2)
    assert ours == pytest.approx(fit.objective, rel=1e-12)
    assert ours <= _pg_objective(d, pg, l2) + 1e-9  # float noise only
    np.testing.assert_allclose(fit.weights, pg, atol=1e-4)  # one optimum, reached by both
    if nonnegative:
        assert fit.weights.min() >= 0.0
    # Negative control: the objective notices a small step away from the optimum.
    assert _pg_objective(d, fit.weights + 0.05, l2) > ours + 1e-6


def test_features_apply_the_checklists_masks():
    rng = np.random.default_rng(6)
    p = rng.random((200, len(IMAGE.questions)))
    hard, soft = item_features(IMAGE, p, "hard"), item_features(IMAGE, p, "soft")
    col = {q: i for i, q in enumerate(IMAGE.question_ids)}
    names = FeatureLayout.of(IMAGE).questions
    assert None not in [IMAGE.questions[col[n]].dimension for n in names]  # gates are not features
    keep = np.ones_like(p)
    for mask in IMAGE.masks:  # independent: a gate answered no, or itself masked, zeroes its targets
        gate_yes = (p[:, col[mask.question]] >= 0.5) & (keep[:, col[mask.question]] > 0)
        for t in mask.zeroes:
            keep[:, col[t]] *= gate_yes
    keep = keep[:, [col[n] for n in names]]
    assert keep.min() == 0  # some questions really are masked here
    answers = np.where(p >= 0.5, 1.0, -1.0)[:, [col[n] for n in names]]
    np.testing.assert_array_equal(hard, answers * keep)
    np.testing.assert_allclose(soft, (2 * p[:, [col[n] for n in names]] - 1) * keep)


def test_fitted_checklist_scores_items_as_the_fitted_model():
    vr = load_visionreward(require(VR_IMAGE_QA), VR_IMAGE_W, VR_DIMS)  # masks and an alignment term
    rng = np.random.default_rng(7)
    p = rng.random((300, len(vr.questions)))
    align = rng.random(300)
    layout = FeatureLayout.of(vr)
    assert layout.alignment
    w = rng.uniform(-1, 1, len(layout))
    out = fitted_checklist(vr, layout, w)
    agg = aggregate(out, p, align)
    np.testing.assert_allclose(agg.score, item_features(vr, p, "hard", align) @ w, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(agg.score_soft, item_features(vr, p, "soft", align) @ w, rtol=1e-12, atol=1e-12)
    assert out.masks == vr.masks and out.aggregation.intercept == 0.0 and out.aggregation.rule == "linear"
    # An alignment weight that was not fitted is kept.
    assert fitted_checklist(vr, layout.without_alignment(), w[1:]).aggregation.alignment_weight == \
        vr.aggregation.alignment_weight
