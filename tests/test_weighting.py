"""Aggregation formulas against hand-computed values and an independent transcription of
the upstream VisionReward scoring loops."""
import json

import numpy as np
import pytest

from pipeline.weighting import aggregate
from schemas.checklist import DEFAULTS_DIR, Aggregation, Checklist, Mask, Question, load_checklist_file
from schemas.visionreward_format import load_visionreward
from tests.paths import VR_DIMS, VR_IMAGE_QA, VR_IMAGE_W, VR_VIDEO_QA, VR_VIDEO_W, require


def _checklist(rule="mean", weights=(1.0, 2.0, 0.5), dims=("a", "b", "a"), masks=(), **agg):
    qs = [Question(id=f"q{i}", text=f"question {i}?", dimension=d, weight=w) for i, (w, d) in enumerate(zip(weights, dims))]
    return Checklist(name="t", media_type="image", questions=qs, aggregation=Aggregation(rule=rule, **agg), masks=list(masks))


def test_mean_rule_hard_soft_and_dimensions_by_hand():
    c = _checklist()
    out = aggregate(c, np.array([[0.9, 0.2, 0.5]]))
    assert out.answers.tolist() == [[1, -1, 1]]  # 0.5 counts as yes
    assert out.score[0] == pytest.approx((1 * 1 + 2 * -1 + 0.5 * 1) / 3.5)
    assert out.score_soft[0] == pytest.approx((1 * 0.8 + 2 * -0.6 + 0.5 * 0.0) / 3.5)
    assert out.dimensions["a"][0] == pytest.approx((1 * 1 + 0.5 * 1) / 1.5)
    assert out.dimensions["b"][0] == pytest.approx(-1.0)


def test_mean_rule_leaves_out_masked_and_zero_weight_questions():
    # q0 is a zero-weight gate over q1; q3 is a zero-weight question with a dimension
    c = _checklist(weights=(0.0, 2.0, 0.5, 0.0), dims=(None, "b", "a", "a"), masks=[Mask(question="q0", zeroes=["q1"])])
    p = np.array([[0.1, 0.2, 0.9, 0.1],   # gate no: only q2 counts
                  [0.9, 0.2, 0.9, 0.1],   # gate yes: q1 and q2 count
                  [0.1, 0.9, 0.3, 0.9]])  # gate no, q2 says no
    out = aggregate(c, p)
    assert out.score.tolist() == pytest.approx([1.0, (-2.0 + 0.5) / 2.5, -1.0])
    assert out.score_soft.tolist() == pytest.approx([0.8, (2 * -0.6 + 0.5 * 0.8) / 2.5, -0.4])
    assert out.dimensions["b"].tolist() == pytest.approx([0.0, -1.0, 0.0])  # nothing counts: 0
    assert out.dimensions["a"].tolist() == pytest.approx([1.0, 1.0, -1.0])


def test_mean_all_rule_divides_by_every_question():
    c = _checklist(rule="mean_all", weights=(0.0, 2.0, 0.5), dims=(None, "b", "a"), masks=[Mask(question="q0", zeroes=["q1"])])
    out = aggregate(c, np.array([[0.1, 0.9, 0.9], [0.9, 0.9, 0.2]]))
    assert out.score.tolist() == pytest.approx([0.5 / 3, (2.0 - 0.5) / 3])
    assert out.dimensions["b"].tolist() == pytest.approx([0.0, 2.0])


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


def _upstream_image_masked_answers(p_yes):
    # transcription of upstream inference-image.py cal_score's masking, answers from p_yes >= 0.5
    mask_map = {0: [22, 23, 24, 28, 29], 1: [25, 26], 2: [27]}
    reward = [1 if p >= 0.5 else -1 for p in p_yes]
    for m, feats in mask_map.items():
        for f in feats:
            reward[f] *= int(reward[m] > 0)
    return reward


def _upstream_image_score(p_yes, coef, intercept, alignment=0.7):
    reward = _upstream_image_masked_answers(p_yes)
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


def test_visionreward_image_dimensions_match_upstream_terms():
    # a dimension is upstream's sum of coef * masked answer over that dimension's lines
    require(VR_DIMS)
    c = load_visionreward(VR_IMAGE_QA, VR_IMAGE_W, VR_DIMS)
    coef = json.loads(VR_IMAGE_W.read_text())["coef"]
    dims = {e["question"].strip(): e["dimension"] for e in json.loads(VR_DIMS.read_text())["image_select"]}
    lines = [ln.strip() for ln in VR_IMAGE_QA.read_text().splitlines() if ln.strip()]
    rng = np.random.default_rng(2)
    p = rng.uniform(size=(200, 30))
    p[:60, :3] = 0.2
    out = aggregate(c, p)
    for name in {d for d in dims.values() if d != "Mask"}:
        expected = []
        for row in p:
            reward = _upstream_image_masked_answers(row)
            expected.append(sum(coef[i - 2] * reward[i] for i in range(3, 30) if dims[lines[i]] == name))
        np.testing.assert_allclose(out.dimensions[name], expected, rtol=1e-12, atol=1e-15)


def test_visionreward_video_matches_upstream_formula():
    require(VR_VIDEO_QA)
    c = load_visionreward(VR_VIDEO_QA, VR_VIDEO_W, VR_DIMS)
    assert c.aggregation.rule == "mean_all" and not c.masks
    weight = np.array(json.loads(VR_VIDEO_W.read_text()))
    p = np.random.default_rng(1).uniform(size=(100, 29))
    answers = np.where(p >= 0.5, 1, -1)
    out = aggregate(c, p)
    np.testing.assert_allclose(out.score, (answers * weight).mean(axis=1), rtol=1e-12)
    np.testing.assert_allclose(out.score_soft, ((2 * p - 1) * weight).mean(axis=1), rtol=1e-12)
    # per dimension (as dimensions.json assigns them): the same mean over its questions
    by_text = {e["question"].strip(): e["dimension"] for e in json.loads(VR_DIMS.read_text())["video_select"]}
    dims = [by_text[ln.strip()] for ln in VR_VIDEO_QA.read_text().splitlines() if ln.strip()]
    assert set(dims) == set(c.dimensions) and len(set(dims)) >= 8
    for name in set(dims):
        cols = [i for i, d in enumerate(dims) if d == name]
        np.testing.assert_allclose(out.dimensions[name], (answers[:, cols] * weight[cols]).mean(axis=1), rtol=1e-12)


@pytest.mark.parametrize("rule", ["image", "video", "default"])
def test_a_rows_scores_do_not_depend_on_the_rows_beside_it(rule):
    """Bit for bit: rescore reads whole files where the scoring job aggregated scorer batches, so a
    row's score must not change with the batch it was aggregated in (numpy's sum(axis=1) did, in
    the last bit, for the published VisionReward checklists)."""
    if rule == "default":
        checklist = load_checklist_file(DEFAULTS_DIR / "image_default.yaml")
    else:
        require(VR_IMAGE_QA)
        qa, w = (VR_IMAGE_QA, VR_IMAGE_W) if rule == "image" else (VR_VIDEO_QA, VR_VIDEO_W)
        checklist = load_visionreward(qa, w, VR_DIMS)
    rng = np.random.default_rng(0)
    p = rng.random((10, len(checklist.questions))).astype(np.float32).astype(np.float64)
    alignment = rng.random(10)
    whole = aggregate(checklist, p, alignment)
    for sizes in [(1,) * 10, (4, 4, 2), (3, 7), (2,) * 5]:
        start = 0
        for size in sizes:
            part = aggregate(checklist, p[start:start + size], alignment[start:start + size])
            for got, want in [(part.score, whole.score), (part.score_soft, whole.score_soft),
                              *[(part.dimensions[d], whole.dimensions[d]) for d in whole.dimensions]]:
                assert got.view(np.uint64).tolist() == want[start:start + size].view(np.uint64).tolist()
            start += size
