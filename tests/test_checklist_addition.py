"""The shipped `visionreward-alignment` addition completes VisionReward's image formula: loaded
beside the user's copy of the published files (../shared), the published image checklist gains our
own alignment question (readout absolute, its own prompt_template) as `alignment_from`, and its
`score` is the published linear formula with that question's p_yes as the alignment term. The
project holds none of the published sentences."""
from __future__ import annotations

import numpy as np
import pytest
import yaml

from pipeline.weighting import aggregate
from schemas.checklist import DEFAULTS_DIR
from schemas.checklist_set import resolve_checklists
from schemas.user_error import UserError
from schemas.visionreward_format import load_visionreward, read_question_lines
from tests.paths import VR_DIMS, VR_IMAGE_QA, VR_IMAGE_W, VR_VIDEO_QA, VR_VIDEO_W, require


def _published(*more: str) -> dict:
    require(VR_IMAGE_QA)
    return resolve_checklists([str(VR_IMAGE_QA), str(VR_VIDEO_QA), *more], [str(VR_IMAGE_W), str(VR_VIDEO_W)],
                              str(VR_DIMS))


def test_the_shipped_addition_completes_the_published_image_formula():
    published = _published()["image"]
    both = _published("visionreward-alignment")
    image, video = both["image"], both["video"]
    assert video == _published()["video"]  # the video checklist is left as published
    assert image.questions[:-1] == published.questions and image.masks == published.masks
    added = image.questions[-1]
    agg = image.aggregation
    assert agg.alignment_from == added.id and added.readout == "absolute" and added.dimension is None
    assert (agg.rule, agg.intercept, agg.alignment_weight) == ("linear", published.aggregation.intercept,
                                                               published.aggregation.alignment_weight)
    assert image.name == published.name + "+alignment"
    assert image.render("a red fox")[-1] == 'Is this image a faithful depiction of "a red fox"? Reply with yes or no.'

    rng = np.random.default_rng(0)
    p = rng.random((50, len(image.questions)))
    expected = aggregate(published, p[:, :-1], alignment=p[:, -1])  # the published formula, term from the question
    got = aggregate(image, p)
    np.testing.assert_array_equal(got.score, expected.score)
    for dim, values in expected.dimensions.items():
        np.testing.assert_array_equal(got.dimensions[dim], values)
    # negative control: without the addition the term is upstream's stand-in constant
    assert not np.allclose(aggregate(published, p[:, :-1]).score, got.score)


def test_an_addition_file_by_path_and_its_refusals(tmp_path):
    data = yaml.safe_load((DEFAULTS_DIR / "visionreward_image_alignment.yaml").read_text())
    (tmp_path / "mine.yaml").write_text(yaml.safe_dump(dict(data, name_suffix="+mine")))
    assert _published(str(tmp_path / "mine.yaml"))["image"].name.endswith("+mine")
    with pytest.raises(UserError, match="no image checklist"):
        resolve_checklists([str(VR_VIDEO_QA), "visionreward-alignment"], [str(VR_VIDEO_W)], str(VR_DIMS))
    with pytest.raises(UserError, match="linear"):  # our default image checklist has no alignment term
        resolve_checklists(["default", "visionreward-alignment"])
    with pytest.raises(UserError, match="duplicate"):
        _published("visionreward-alignment", "visionreward-alignment")
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump(dict(data, adds_to="audio")))
    with pytest.raises(UserError, match="not a valid checklist addition"):
        _published(str(tmp_path / "bad.yaml"))


def test_the_project_ships_none_of_the_published_sentences():
    require(VR_IMAGE_QA)
    published = {" ".join(t.split()).lower() for path in (VR_IMAGE_QA, VR_VIDEO_QA) for t in read_question_lines(path)}
    shipped = " ".join(" ".join(p.read_text().split()) for p in DEFAULTS_DIR.glob("*.yaml")).lower()
    assert published and not [t for t in published if t in shipped]
    assert load_visionreward(VR_IMAGE_QA, VR_IMAGE_W, VR_DIMS).aggregation.alignment_from is None
