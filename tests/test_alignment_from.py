"""`aggregation.alignment_from`: the linear rule's alignment term answered by a question of the
checklist. VisionReward's image formula is completed here with VQAScore's question: the published
image select list and weights as loaded from ../shared (the project ships no copy of their
sentences), plus the VQAScore question read with `readout: absolute`. Scored with tiny models of two
families, its VQAScore answer equals the stock forward's P("Yes" or "yes") under the whole softmax,
and `score` equals the linear formula recomputed here from the row's own p_yes."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from actors.checklist_scorer import ChecklistScorer
from actors.demo_model import build_demo_model
from actors.media_decoder import MediaDecoder
from pipeline.assemble import ScoreAssembler
from pipeline.model_family import resolve_decode
from pipeline.score_pipeline import validate_rows
from pipeline.weighting import aggregate
from schemas import status
from schemas.checklist import Checklist, load_checklist_file
from schemas.checklist_set import checklists_to_json, resolve_checklists
from schemas.job_config import DecodeConfig, ModelConfig, StorageConfig
from schemas.scores import scores_schema
from schemas.visionreward_format import UPSTREAM_IMAGE_MASKS, load_visionreward
from tests.family_stock import stock_absolute
from tests.paths import VR_DIMS, VR_IMAGE_QA, VR_IMAGE_W, VR_VIDEO_QA, VR_VIDEO_W, require

VQASCORE = {"id": "vqascore", "text": 'Does this figure show "[[prompt]]"? Please answer yes or no.',
            "dimension": None, "weight": 0.0, "readout": "absolute", "prompt_template": "[[question]]"}


def with_vqascore(published: Checklist) -> Checklist:
    """The published image checklist with VQAScore's question as its alignment term."""
    data = published.model_dump()
    data["name"] = "visionreward-image-vqascore"
    data["questions"].append(VQASCORE)
    data["aggregation"]["alignment_from"] = "vqascore"
    return Checklist.model_validate(data)
PROMPTS = ["a red fox in snow", "a cat on a sofa"]


def test_the_published_checklist_plus_vqascore_keeps_the_published_formula(tmp_path):
    require(VR_IMAGE_QA)
    published = load_visionreward(VR_IMAGE_QA, VR_IMAGE_W, VR_DIMS)
    path = tmp_path / "image.json"
    path.write_text(with_vqascore(published).model_dump_json())
    shipped = load_checklist_file(path)  # our checklist format round-trips it
    assert shipped.questions[:-1] == published.questions and shipped.masks == published.masks
    agg, upstream = shipped.aggregation, published.aggregation
    assert (agg.rule, agg.intercept, agg.alignment_weight) == (upstream.rule, upstream.intercept,
                                                               upstream.alignment_weight)
    vqa = shipped.questions[-1]
    assert agg.alignment_from == vqa.id and vqa.readout == "absolute" and vqa.dimension is None
    assert shipped.render("a fox")[-1] == 'Does this figure show "a fox"? Please answer yes or no.'
    # loadable beside the published video files, one checklist per media kind
    both = resolve_checklists([str(path), str(VR_VIDEO_QA)], [str(VR_VIDEO_W)], str(VR_DIMS))
    assert both["image"] == shipped and both["video"].name.startswith("visionreward:")


@pytest.fixture(scope="module", params=["qwen2_vl", "gemma3"])
def scored(request, tmp_path_factory):
    require(VR_IMAGE_QA)
    tmp = tmp_path_factory.mktemp(request.param)
    model_dir = build_demo_model(tmp / "model", family=request.param)
    checklist = with_vqascore(load_visionreward(VR_IMAGE_QA, VR_IMAGE_W, VR_DIMS))
    rng = np.random.default_rng(4)
    uris = []
    for k in range(len(PROMPTS)):
        uris.append(str(tmp / f"{k}.png"))
        Image.fromarray(rng.integers(0, 256, (224, 224, 3), dtype=np.uint8)).save(uris[-1])
    batch = {"id": np.array([f"r{k}" for k in range(len(uris))], dtype=object),
             "uri": np.array(uris, dtype=object), "prompt": np.array(PROMPTS, dtype=object)}
    batch = validate_rows(batch, {"image": True})
    model = ModelConfig(model=str(model_dir), dtype="float32", device="cpu")
    decode = resolve_decode(model, DecodeConfig(resize_factor=32) if request.param.startswith("qwen3")
                            else DecodeConfig(), StorageConfig())
    decoded = MediaDecoder(decode.model_dump())(batch)
    out = ChecklistScorer(model.model_dump(), decode.model_dump(), checklists_to_json({"image": checklist}))(decoded)
    assert list(out["status"]) == [status.OK] * len(uris), list(out["error"])
    table = ScoreAssembler({"image": checklist}, scores_schema(checklist.dimensions))(out)
    images = [np.asarray(Image.open(u).convert("RGB"))[None] for u in uris]
    return model_dir, checklist, images, table.to_pylist()


def test_vqascore_answer_is_the_stock_absolute_p_yes(scored):
    model_dir, checklist, images, rows = scored
    for image, prompt, row in zip(images, PROMPTS, rows):
        want = stock_absolute(model_dir, image, "image", checklist.render(prompt)[-1])
        assert row["p_yes"][-1] == pytest.approx(want, rel=1e-4)


def test_score_is_the_linear_formula_with_the_question_as_alignment(scored):
    _, checklist, _, rows = scored
    agg = checklist.aggregation
    weights = np.array([q.weight for q in checklist.questions])
    for row in rows:
        p = np.array(row["p_yes"], dtype=np.float32).astype(np.float64)
        hard = np.where(p >= 0.5, 1.0, -1.0)
        keep = np.ones_like(hard)
        for gate, targets in UPSTREAM_IMAGE_MASKS.items():  # upstream's masks, by position
            if hard[gate] < 0:
                keep[targets] = 0.0
        features = (hard * keep)[:-1]  # the VQAScore question is the alignment, not a feature
        want = agg.alignment_weight * p[-1] + np.dot(weights[:-1], features) + agg.intercept
        assert row["score"] == pytest.approx(want, rel=1e-12, abs=1e-12)
        # negative control: upstream's stand-in constant instead of the answered alignment
        assert abs(row["score"] - (want - agg.alignment_weight * (p[-1] - 0.7))) > 1e-3


def _linear(**aggregation: object) -> Checklist:
    return Checklist.model_validate({
        "name": "aligned", "media_type": "image",
        "questions": [{"id": "shown", "text": "Does it show [[prompt]]?", "dimension": "content", "weight": 5.0,
                       "readout": "absolute"},
                      {"id": "sharp", "text": "Is it sharp?", "dimension": "quality", "weight": 2.0}],
        "aggregation": {"rule": "linear", "alignment_weight": 3.0, "intercept": 0.5, **aggregation}})


def test_alignment_from_replaces_the_external_term_and_leaves_the_features():
    checklist = _linear(alignment_from="shown")
    p = np.array([[0.2, 0.9], [0.8, 0.1]])
    got = aggregate(checklist, p, alignment=np.array([0.9, np.nan]))
    np.testing.assert_allclose(got.score, 3.0 * p[:, 0] + 2.0 * np.array([1, -1]) + 0.5, rtol=1e-12)
    np.testing.assert_allclose(got.dimensions["content"], [0.0, 0.0])
    without = aggregate(_linear(), p)  # negative control: the question as a feature, alignment 0.7
    np.testing.assert_allclose(without.score, 3.0 * 0.7 + 5.0 * np.array([-1, 1]) + 2.0 * np.array([1, -1]) + 0.5)


@pytest.mark.parametrize("aggregation, match", [({"alignment_from": "nope"}, "unknown question id 'nope'"),
                                                ({"alignment_from": "shown", "rule": "mean"}, "for the linear rule")])
def test_bad_alignment_from_is_refused(aggregation, match):
    with pytest.raises(ValueError, match=match):
        _linear(**aggregation)
