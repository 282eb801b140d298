"""Rating questions through the scorer and assembler stages, as Ray Data calls them: the
`level_probs` column (list<list<float32>>, null for yes/no questions) holds the adapter's level
distributions, `p_yes` their expected values, and `score`/`score_soft` take a rating as 2v - 1,
recomputed here. A checklist of yes/no questions writes no `level_probs` column, as before."""
from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
from PIL import Image

from actors.adapters.base import MediaInput
from actors.checklist_scorer import ChecklistScorer, answer_kinds, frames_of
from actors.media_decoder import MediaDecoder
from pipeline.assemble import ScoreAssembler
from pipeline.rescore import Rescorer, rescored_schema
from pipeline.score_pipeline import validate_rows
from pipeline.weighting import aggregate
from schemas import status
from schemas.checklist import Checklist
from schemas.checklist_set import checklists_to_json, resolve_checklists
from schemas.job_config import DecodeConfig, ModelConfig
from schemas.scores import LEVEL_PROBS_FIELD, reserved_column, scores_schema

LEVELS = ["bad", "low", "good", "high", "beautiful"]
RATED = Checklist.model_validate({
    "name": "rated", "media_type": "image",
    "questions": [
        {"id": "overall", "text": "How good is this image?", "dimension": "quality", "weight": 2.0,
         "answer": "rating", "levels": LEVELS},
        {"id": "cat", "text": "Is there a cat?", "dimension": "content", "weight": 1.0},
        {"id": "shown", "text": "Does this figure show \"[[prompt]]\"?", "dimension": "content", "weight": 0.5,
         "readout": "absolute", "prompt_template": "[[question]] Please answer yes or no."},
        {"id": "light", "text": "How bright is it?", "dimension": "quality", "weight": 1.0,
         "answer": "rating", "levels": ["low", "high"], "values": [0.2, 0.9]},
    ],
    "aggregation": {"rule": "mean"}})


def _decoded(tmp_path, checklists: dict, n: int = 3) -> dict:
    rng = np.random.default_rng(11)
    uris = []
    for k in range(n):
        uris.append(str(tmp_path / f"{k}.png"))
        Image.fromarray(rng.integers(0, 256, (64, 80, 3), dtype=np.uint8)).save(uris[-1])
    batch = {"id": np.array([f"r{k}" for k in range(n)], dtype=object), "uri": np.array(uris, dtype=object),
             "prompt": np.array(["a cat"] * n, dtype=object)}
    batch = validate_rows(batch, {k: c.uses_prompt for k, c in checklists.items()})
    return MediaDecoder(DecodeConfig().model_dump())(batch)


def _scored(tmp_path, demo_model_dir, checklists: dict) -> tuple[ChecklistScorer, dict, pa.Table]:
    decoded = _decoded(tmp_path, checklists)
    model = ModelConfig(model=str(demo_model_dir), dtype="float32")
    scorer = ChecklistScorer(model.model_dump(), DecodeConfig().model_dump(), checklists_to_json(checklists))
    out = scorer(decoded)
    assert list(out["status"]) == [status.OK] * len(out["id"]), list(out["error"])
    schema = scores_schema([d for c in checklists.values() for d in c.dimensions],
                           level_probs=any(c.has_ratings for c in checklists.values()))
    return scorer, decoded, ScoreAssembler(checklists, schema)(out)


def test_level_probs_p_yes_and_scores_of_a_rated_checklist(tmp_path, demo_model_dir):
    scorer, decoded, table = _scored(tmp_path, demo_model_dir, {"image": RATED})
    assert table.schema.field("level_probs") == LEVEL_PROBS_FIELD
    items = [MediaInput(frames_of(f, s), "image") for f, s in zip(decoded["frames"], decoded["frames_shape"])]
    want = scorer.adapters["image"].readout_reference(items, [RATED.render("a cat")] * len(items), answer_kinds(RATED))
    weights = np.array([q.weight for q in RATED.questions])
    rating = np.array([q.answer == "rating" for q in RATED.questions])
    for row, ref in zip(table.to_pylist(), want):
        levels = row["level_probs"]
        assert levels[1] is None and levels[2] is None and [len(levels[0]), len(levels[3])] == [5, 2]
        for q in (0, 3):
            np.testing.assert_allclose(levels[q], ref.level_probs[q], rtol=0, atol=1e-6)
        np.testing.assert_allclose(row["p_yes"], ref.p_yes, rtol=0, atol=1e-6)
        p = np.array(row["p_yes"], dtype=np.float32).astype(np.float64)
        assert p[0] == pytest.approx(np.dot(levels[0], np.linspace(0, 1, 5)), abs=1e-6)
        assert p[3] == pytest.approx(np.dot(levels[3], [0.2, 0.9]), abs=1e-6)
        hard = np.where(p >= 0.5, 1.0, -1.0)
        features = np.where(rating, 2 * p - 1, hard)
        assert row["answers"] == hard.astype(int).tolist()
        assert row["score"] == pytest.approx(np.sum(weights * features) / np.sum(np.abs(weights)), rel=1e-12)
        assert row["score_soft"] == pytest.approx(np.sum(weights * (2 * p - 1)) / np.sum(np.abs(weights)), rel=1e-12)
        # negative control: read as hard answers, the ratings would give another score
        assert row["score"] != pytest.approx(np.sum(weights * hard) / np.sum(np.abs(weights)), rel=1e-6)
        quality = [0, 3]
        assert row["dim_quality"] == pytest.approx(np.sum(weights[quality] * features[quality])
                                                   / np.sum(np.abs(weights[quality])), rel=1e-12)


def test_a_yes_no_checklist_writes_no_level_probs(tmp_path, demo_model_dir):
    checklists = resolve_checklists(["default"])
    _, _, table = _scored(tmp_path, demo_model_dir, {"image": checklists["image"]})
    assert "level_probs" not in table.column_names


def test_rating_questions_are_refused_when_malformed():
    base = RATED.model_dump()
    for change, match in [({"levels": ["good"]}, "at least two"), ({"levels": ["good", "Good"]}, "repeat a word"),
                          ({"values": [0.0, 0.5, 1.0]}, "one number in \\[0, 1\\] per level"),
                          ({"values": [0, 0.2, 0.4, 0.6, 2.0]}, "one number in \\[0, 1\\] per level"),
                          ({"readout": "absolute"}, "a rating is renormalised")]:
        questions = [dict(base["questions"][0], **change), *base["questions"][1:]]
        with pytest.raises(ValueError, match=match):
            Checklist.model_validate(dict(base, questions=questions))
    with pytest.raises(ValueError, match="levels and values are for answer: rating"):
        Checklist.model_validate(dict(base, questions=[dict(base["questions"][1], levels=LEVELS)]))


def test_aggregate_takes_a_rating_as_its_expected_value():
    p = np.array([[0.6, 0.2, 0.9, 0.3]])
    got = aggregate(RATED, p)
    assert got.answers.tolist() == [[1, -1, 1, -1]]
    # weights 2, 1, 0.5, 1; features 2*0.6-1, -1, +1, 2*0.3-1
    assert got.score[0] == pytest.approx((2 * 0.2 - 1 + 0.5 - 0.4) / 4.5)
    assert got.dimensions["quality"][0] == pytest.approx((2 * 0.2 - 0.4) / 3)


def test_rescore_carries_level_probs_in_the_new_question_order(tmp_path, demo_model_dir):
    _, _, table = _scored(tmp_path, demo_model_dir, {"image": RATED})
    table = table.replace_schema_metadata({b"vrscore.checklists": checklists_to_json({"image": RATED}).encode()})
    reordered = Checklist.model_validate(dict(RATED.model_dump(), name="reordered",
                                              questions=RATED.model_dump()["questions"][::-1]))
    schema = rescored_schema(table.schema, {"image": reordered}, "{}")
    out = Rescorer({"image": RATED}, {"image": reordered}, schema)(table)
    assert out.schema.field("level_probs") == LEVEL_PROBS_FIELD
    for old, new in zip(table.to_pylist(), out.to_pylist()):
        assert new["level_probs"] == old["level_probs"][::-1] and new["p_yes"] == old["p_yes"][::-1]
        assert new["score"] == pytest.approx(old["score"], rel=1e-12)  # same questions, same weights
    assert reserved_column("level_probs") is not None  # a manifest column of that name is refused
