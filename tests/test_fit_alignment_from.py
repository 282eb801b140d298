"""`vrscore fit` on a checklist whose alignment term is a question (`aggregation.alignment_from`):
the term is that question's p_yes, its weight is refitted (planted on synthetic preferences, and
recovered), the question is not also a feature, and the fitted checklist keeps `alignment_from`
and scores items as the fitted model does. A rating question's feature is its 2v - 1, as in the
scores. Negative controls: preferences that ignore the term give it no weight."""
from __future__ import annotations

import argparse

import numpy as np

from jobs.fit_command import fit_media
from jobs.fit_data import MediaPairs
from pipeline.weight_fit import FeatureLayout, Pairs, fitted_checklist, item_features
from pipeline.weighting import aggregate
from schemas.checklist import Aggregation, Checklist, Question

FEATURES = ["sharp", "bright", "tidy"]
CHECKLIST = Checklist(
    name="aligned", media_type="image",
    # upstream's alignment weight was fitted to another model's scale; start from it
    aggregation=Aggregation(rule="linear", alignment_weight=2.3, alignment_from="matches"),
    questions=[Question(id=q, text=f"Is it {q}?", dimension="quality") for q in FEATURES]
    + [Question(id="matches", text='Does it show "[[prompt]]"?', dimension=None, weight=0.0, readout="absolute",
                prompt_template="[[question]] Answer yes or no.")])


def _args() -> argparse.Namespace:
    return argparse.Namespace(max_pairs=1_000_000, seed=0, features="hard", l2=0.0, allow_negative=False, folds=2)


def _planted(alignment_weight: float, seed: int = 0, n: int = 6000):
    rng = np.random.default_rng(seed)
    p = rng.random((n, len(CHECKLIST.questions))).astype(np.float32)
    p[:, 3] *= 0.3  # another model's P(Yes): a narrower scale than CLIP-FlanT5's
    answers = np.where(p[:, :3] >= 0.5, 1.0, -1.0)
    utility = alignment_weight * p[:, 3].astype(np.float64) + answers @ np.array([1.0, 0.5, 0.0])
    a, b = np.arange(0, n, 2), np.arange(1, n, 2)
    y = np.where(rng.random(len(a)) < 1 / (1 + np.exp(utility[b] - utility[a])), 1, -1)
    external = rng.random(n)  # a manifest column that must not be read in place of the question
    return p, MediaPairs(p, external, {"score": np.zeros(n)}, Pairs(a, b, y), a // 10)


def test_the_alignment_weight_of_a_question_is_refitted():
    p, data = _planted(12.0)
    fitted, r = fit_media("image", CHECKLIST, data, _args())
    assert list(r["weights"]) == FEATURES and r["alignment_from"] == "matches"  # the question is the term only
    assert 9.0 < r["alignment_weight"] < 15.0  # planted 12, from the 2.3 it started at
    assert r["weights"]["sharp"] > 0.7 and r["weights"]["tidy"] < 0.2
    agg = fitted.aggregation
    assert agg.alignment_from == "matches" and agg.alignment_weight == r["alignment_weight"]
    # the fitted checklist scores items as the fitted model: the question's own p_yes is the term
    expected = r["alignment_weight"] * p[:, 3].astype(np.float64) + np.where(p[:, :3] >= 0.5, 1.0, -1.0) @ \
        np.array([r["weights"][q] for q in FEATURES])
    np.testing.assert_allclose(aggregate(fitted, p, data.alignment).score, expected, rtol=1e-9, atol=1e-9)

    # negative control: preferences that ignore the question leave its term (near) zero
    _, flat = _planted(0.0, seed=1)
    _, r0 = fit_media("image", CHECKLIST, flat, _args())
    assert r0["alignment_weight"] < 1.5 and r0["weights"]["sharp"] > 0.7


def test_features_read_the_alignment_question_and_a_rating_as_the_scores_do():
    rated = CHECKLIST.model_copy(update={"questions": [*CHECKLIST.questions[:3], Question(
        id="overall", text="Rate it.", dimension="quality", answer="rating", levels=["1", "2", "3", "4", "5"]),
        CHECKLIST.questions[3]]})
    rng = np.random.default_rng(3)
    p = rng.random((200, 5))
    layout = FeatureLayout.of(rated)
    assert layout.alignment and layout.questions == ("sharp", "bright", "tidy", "overall")
    x = item_features(rated, p, "hard", alignment=rng.random(200))
    np.testing.assert_array_equal(x[:, 0], p[:, 4])  # the question, not the external column
    np.testing.assert_array_equal(x[:, 4], 2 * p[:, 3] - 1)  # a rating's feature is 2v - 1
    w = rng.uniform(0, 2, len(layout))
    out = fitted_checklist(rated, layout, w)
    np.testing.assert_allclose(aggregate(out, p).score, x @ w, rtol=1e-12, atol=1e-12)
