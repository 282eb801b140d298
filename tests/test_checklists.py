"""Our checklist format, the shipped defaults and the VisionReward loaders."""
import json

import pytest
import yaml

from schemas.checklist import Checklist, default_checklist, dimension_column, load_checklist_file
from schemas.checklist_set import all_dimensions, checklists_from_json, checklists_to_json, resolve_checklists
from schemas.visionreward_format import ChecklistFormatError, load_visionreward, read_question_lines
from tests.paths import VISIONREWARD, VR_DIMS, VR_IMAGE_QA, VR_IMAGE_W, VR_VIDEO_QA, VR_VIDEO_W, require


@pytest.mark.parametrize("kind", ["image", "video"])
def test_default_checklists_load_and_render(kind):
    c = default_checklist(kind)
    assert c.media_type == kind and len(c.questions) >= 15
    texts = c.render("a red bicycle")
    assert len(texts) == len(c.questions)
    assert any('"a red bicycle"' in t for t in texts)
    assert all("[[" not in t for t in texts)
    with pytest.raises(ValueError, match="needs a prompt"):
        c.render(None)


def test_default_checklists_cover_visionreward_dimensions():
    assert set(default_checklist("image").dimensions) == {"alignment", "composition", "quality", "fidelity", "safety_emotion"}
    assert set(default_checklist("video").dimensions) == {
        "alignment", "composition", "quality", "fidelity", "safety", "stability", "dynamic", "physics", "preservation"}


def test_defaults_are_our_own_words():
    require(VR_IMAGE_QA)
    published = set()
    for f in VISIONREWARD.rglob("*_qa*.txt"):
        published |= {" ".join(line.split()) for line in read_question_lines(f)}
    for kind in ("image", "video"):
        assert not {q.text for q in default_checklist(kind).questions} & published


def test_yaml_round_trip_and_validation(tmp_path):
    data = {"name": "mine", "media_type": "any", "questions": [
        {"id": "sharp", "text": "Is it sharp?", "dimension": "Quality", "weight": 2}],
        "aggregation": {"rule": "mean"}}
    p = tmp_path / "c.yaml"
    p.write_text(yaml.safe_dump(data))
    c = load_checklist_file(p)
    assert c.questions[0].weight == 2.0 and not c.uses_prompt
    assert Checklist.model_validate_json(c.to_json()) == c
    bad = dict(data, questions=data["questions"] * 2)
    p.write_text(yaml.safe_dump(bad))
    with pytest.raises(ValueError, match="duplicate question ids"):
        load_checklist_file(p)
    p.write_text(yaml.safe_dump(dict(data, masks=[{"question": "sharp", "zeroes": ["nope"]}])))
    with pytest.raises(ValueError, match="unknown question ids"):
        load_checklist_file(p)
    p.write_text(yaml.safe_dump(dict(data, extra_field=1)))
    with pytest.raises(ValueError, match="extra"):
        load_checklist_file(p)


def test_dimension_columns_are_snake_case():
    assert dimension_column("Safety&Emotion") == "dim_safety_emotion"
    assert dimension_column("quality") == "dim_quality"


def test_visionreward_image_select_loads_with_masks_and_dimensions():
    require(VR_DIMS)
    c = load_visionreward(VR_IMAGE_QA, VR_IMAGE_W, VR_DIMS)
    w = json.loads(VR_IMAGE_W.read_text())
    assert c.media_type == "image" and len(c.questions) == 30
    assert c.aggregation.rule == "linear" and c.aggregation.alignment_weight == w["coef"][0]
    assert [q.weight for q in c.questions[3:]] == w["coef"][1:]
    assert [q.dimension for q in c.questions[:3]] == [None, None, None]
    gates = {m.question: [int(z[1:3]) for z in m.zeroes] for m in c.masks}
    assert list(gates.values()) == [[22, 23, 24, 28, 29], [25, 26], [27]]
    assert set(c.dimensions) == {"Composition", "Quality", "Fidelity", "Safety&Emotion"}


def test_visionreward_reordered_subset_keeps_dimensions_and_masks(tmp_path):
    require(VR_DIMS)
    lines = VR_IMAGE_QA.read_text().splitlines()
    coef = json.loads(VR_IMAGE_W.read_text())["coef"]
    order = [27, 0, 5, 2, 22, 3]  # hands question first, gates in the middle
    (tmp_path / "subset_image_qa.txt").write_text("\n".join(lines[i] for i in order))
    kept = [i for i in order if i >= 3]
    (tmp_path / "w.json").write_text(json.dumps({"coef": [coef[0]] + [coef[i - 2] for i in kept], "intercept": [0.0]}))
    c = load_visionreward(tmp_path / "subset_image_qa.txt", tmp_path / "w.json", VR_DIMS)
    by_text = {q.text: q for q in c.questions}
    assert by_text[lines[22].strip()].dimension == "Fidelity"
    assert by_text[lines[0].strip()].dimension is None
    masks = {m.question: m.zeroes for m in c.masks}
    body_gate = by_text[lines[0].strip()].id
    assert masks[body_gate] == [by_text[lines[22].strip()].id]
    assert masks[by_text[lines[2].strip()].id] == [by_text[lines[27].strip()].id]
    assert by_text[lines[27].strip()].weight == coef[27 - 2]


def test_visionreward_video_and_count_mismatch_errors():
    require(VR_DIMS)
    c = load_visionreward(VR_VIDEO_QA, VR_VIDEO_W, VR_DIMS)
    assert c.media_type == "video" and c.aggregation.rule == "mean_all" and len(c.questions) == 29
    assert c.uses_prompt
    with pytest.raises(ChecklistFormatError, match="29"):
        load_visionreward(VISIONREWARD / "VisionReward_Video" / "VisionReward_video_qa.txt", VR_VIDEO_W)
    with pytest.raises(ChecklistFormatError, match="55"):
        load_visionreward(VISIONREWARD / "VisionReward_Image" / "VisionReward_image_qa.txt",
                          VISIONREWARD / "VisionReward_Image" / "weight.json")


def test_resolve_checklists_pairs_and_json_round_trip():
    require(VR_DIMS)
    cs = resolve_checklists([str(VR_VIDEO_QA), "default"], [str(VR_VIDEO_W)], str(VR_DIMS))
    assert cs["video"].name.startswith("visionreward") and cs["image"].name.startswith("vrscore-image")
    assert checklists_from_json(checklists_to_json(cs)) == cs
    assert all_dimensions(cs)[0] == "alignment"
    with pytest.raises(ValueError, match="weight file"):
        resolve_checklists([str(VR_VIDEO_QA)])
    with pytest.raises(ValueError, match="two checklists for videos"):
        resolve_checklists([str(VR_VIDEO_QA), str(VR_VIDEO_QA)], [str(VR_VIDEO_W)] * 2)


def _named(tmp_path, file, name, media_type, question_ids):
    data = {"name": name, "media_type": media_type, "aggregation": {"rule": "mean"},
            "questions": [{"id": q, "text": f"Is it {q}?", "dimension": "quality", "weight": 1} for q in question_ids]}
    (tmp_path / file).write_text(yaml.safe_dump(data))
    return str(tmp_path / file)


def test_two_checklists_of_one_name_are_refused_naming_both(tmp_path):
    # Rows record their checklist by name: with two of one name, `q.sharp` on image rows read
    # the video checklist's position of `sharp` (filter, report and the Python API alike).
    image = _named(tmp_path, "image.yaml", "mine", "image", ["sharp", "bright"])
    video = _named(tmp_path, "video.yaml", "mine", "video", ["bright", "sharp", "smooth"])
    with pytest.raises(ValueError, match=r"two different checklists are named 'mine': .*image\.yaml.*video\.yaml"):
        resolve_checklists([image, video])
    with pytest.raises(ValueError, match=r"two different checklists are named 'vrscore-image-default-v2'"):
        resolve_checklists([_named(tmp_path, "v.yaml", default_checklist("image").name, "video", ["sharp"]), "default"])
    # no command writes them (rescore included: every writer goes through checklists_to_json)
    pair = {"image": load_checklist_file(image), "video": load_checklist_file(video)}
    with pytest.raises(ValueError, match="two different checklists are named 'mine'"):
        checklists_to_json(pair)
    # scores written before the check: reading their checklists refuses too, instead of mixing
    both = json.dumps({k: json.loads(c.to_json()) for k, c in pair.items()})
    with pytest.raises(ValueError, match="two different checklists are named 'mine'"):
        checklists_from_json(both)


def test_one_checklist_for_both_kinds_keeps_its_name(tmp_path):
    both = resolve_checklists([_named(tmp_path, "any.yaml", "mine", "any", ["sharp"])])
    assert both["image"] is both["video"] and checklists_from_json(checklists_to_json(both)) == both
