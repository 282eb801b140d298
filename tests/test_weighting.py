"""Aggregation formulas against hand-computed values and an independent transcription of
the upstream VisionReward scoring loops."""
import json

import numpy as np
import pytest

from pipeline.weighting import aggregate
from schemas.checklist import Aggregation, Checklist, Mask, Question
from schemas.visionreward_format import load_visionreward
from tests.paths import VR_DIMS, VR_IMAGE_QA, VR_IMAGE_W, VR_VIDEO_QA, VR_VIDEO_W, require


def _checklist(rule="mean", weights=(1.0, 2.0, 0.5), dims=("a", "b", "a"), masks=(), **agg):
    qs = [Question(id=f"q{i}", text=f"question {i}?", dimension=d, weight=w) for i, (w, d) in enumerate(zip(weights, dims))]
    return Checklist(name="t", media_type="image", questions=qs, aggregation=Aggregation(rule=rule, **agg), masks=list(masks))


def test_mean_rule_hard_soft_and_dimensions_by_hand():
    c = _checklist()
    out = aggregate(c, np.array([[0.9, 0.2, 0.5]]))
    assert out.answers.tolist() == [[1, -1, 1]]  # 0.5 counts as yes
    assert out.score[0] == pytest.approx((1 * 1 + 2 * -1 + 0.5 * 1) / 3)
    assert out.score_soft[0] == pytest.approx((1 * 0.8 + 2 * -0.6 + 0.5 * 0.0) / 3)
    assert out.dimensions["a"][0] == pytest.approx((1 * 1 + 0.5 * 1) / 2)
    assert out.dimensions["b"][0] == pytest.approx(-2.0)


def test_linear_rule_masks_alignment_and_intercept_by_hand():
    c = _checklist(rule="linear", weights=(0.0, 2.0, 0.5), dims=(None, "b", "a"),
                   masks=[Mask(question="q0", zeroes=["q1"])], intercept=0.25, alignment_weight=3.0)
    p = np.array([[0.1, 0.9, 0.8],    # gate says no: q1 zeroed
                  [0.6, 0.9, 0.3]])   # gate says yes: q1 counts
    out = aggregate(c, p, alignment=np.array([0.5, np.nan]))
    assert out.score[0] == pytest.approx(3.0 * 0.5 + 0.5 * 1 + 0.25)
    assert out.score[1] == pytest.approx(3.0 * 0.7 + 2.0 * 1 + 0.5 * -1 + 0.25)  # NaN -> default 0.7
    assert out.score_soft[0] == pytest.approx(3.0 * 0.5 + 0.5 * 0.6 + 0.25)
    assert out.dimensions["b"].tolist() == pytest.approx([0.0, 2.0])
    assert out.answers.tolist() == [[-1, 1, 1], [1, 1, -1]]  # raw answers, before masking


def test_masks_cascade_like_upstream():
    # q0 gates q1, q1 gates q2: a "no" on q0 zeroes q1, and a zeroed q1 then zeroes q2.
    c = _checklist(rule="linear", weights=(0.0, 0.0, 1.0), dims=(None, None, "a"),
                   masks=[Mask(question="q0", zeroes=["q1"]), Mask(question="q1", zeroes=["q2"])])
    out = aggregate(c, np.array([[0.1, 0.9, 0.9]]), alignment=np.array([0.0]))
    assert out.score[0] == pytest.approx(0.0)


def test_wrong_question_count_is_an_error():
    with pytest.raises(ValueError, match="3 questions"):
        aggregate(_checklist(), np.zeros((1, 4)))


def _upstream_image_score(p_yes, coef, intercept, alignment=0.7):
    # transcription of upstream inference-image.py cal_score, answers from p_yes >= 0.5
    mask_map = {0: [22, 23, 24, 28, 29], 1: [25, 26], 2: [27]}
    reward = [1 if p >= 0.5 else -1 for p in p_yes]
    for m, feats in mask_map.items():
        for f in feats:
            reward[f] *= int(reward[m] > 0)
    filtered = [v for i, v in enumerate(reward) if i not in (0, 1, 2)]
    return float(np.dot([alignment] + filtered, coef) + intercept)


def test_visionreward_image_matches_upstream_formula():
    require(VR_IMAGE_QA)
    c = load_visionreward(VR_IMAGE_QA, VR_IMAGE_W, VR_DIMS)
    w = json.loads(VR_IMAGE_W.read_text())
    rng = np.random.default_rng(0)
    p = rng.uniform(size=(200, 30))
    p[:50, :3] = 0.1  # make sure the "nobody in the image" branch is exercised
    out = aggregate(c, p)
    expected = [_upstream_image_score(row, w["coef"], w["intercept"][0]) for row in p]
    np.testing.assert_allclose(out.score, expected, rtol=1e-12)


def test_visionreward_video_matches_upstream_formula():
    require(VR_VIDEO_QA)
    c = load_visionreward(VR_VIDEO_QA, VR_VIDEO_W, VR_DIMS)
    weight = np.array(json.loads(VR_VIDEO_W.read_text()))
    p = np.random.default_rng(1).uniform(size=(100, 29))
    answers = np.where(p >= 0.5, 1, -1)
    np.testing.assert_allclose(aggregate(c, p).score, (answers * weight).mean(axis=1), rtol=1e-12)
    # per dimension: the same mean, over that dimension's questions
    dims = [q.dimension for q in c.questions]
    cols = [i for i, d in enumerate(dims) if d == "Alignment"]
    np.testing.assert_allclose(aggregate(c, p).dimensions["Alignment"], (answers[:, cols] * weight[cols]).mean(axis=1))
