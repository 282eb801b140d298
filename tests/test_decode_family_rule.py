"""The decode stage sizes frames by the model family's own rule, resolved on the driver.

End to end as Ray Data calls the stages (validate_rows -> MediaDecoder -> ChecklistScorer, in
process), every family's tiny model scores each image as its stock processor does on the source
image (`tests/family_stock.py`), at sizes where the rules differ: Qwen's rounding against the
source tiles of InternVL, LLaVA-OneVision and Gemma 3, and GLM-4.1V's upscale of a side under 28.
"""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from actors.adapters.families import FAMILY_MODULES, family_class
from actors.checklist_scorer import ChecklistScorer
from actors.demo_model import build_demo_model
from actors.media_decoder import MediaDecoder
from actors.synthetic_media import write_image
from pipeline.model_family import FAMILY_RESIZE_RULES, resolve_decode
from pipeline.resize_policy import MODEL_SIZE_RULES
from pipeline.score_pipeline import validate_rows
from schemas import status
from schemas.checklist import Aggregation, Checklist, Question
from schemas.checklist_set import checklists_to_json
from schemas.job_config import DecodeConfig, ModelConfig, StorageConfig
from tests.family_stock import stock_p_yes

TOL = 1e-4
SIZES = [(37, 301), (90, 60), (1000, 17)]  # (width, height): tall, small, a side under 28
QUESTIONS = ["Is the image clear?", "Is there anything red in the picture?"]
CHECKLISTS = {"image": Checklist(
    name="resize_check", media_type="image", aggregation=Aggregation(rule="mean"),
    questions=[Question(id=f"q{k}", text=q, dimension="d") for k, q in enumerate(QUESTIONS)])}
# Each family's rule and factor under the default DecodeConfig (tiny models: Qwen3-VL patches are 16).
EXPECTED = {"qwen2_vl": ("smart_resize", 28), "qwen3_vl": ("smart_resize", 32),
            "glm4v": ("smart_resize_small_up", 28), "internvl": ("fit_within", None),
            "llava_onevision": ("fit_within", None), "gemma3": ("fit_within", None)}


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    built = {}

    def get(family: str):
        if family not in built:
            built[family] = build_demo_model(tmp_path_factory.mktemp(family), family=family)
        return built[family]
    return get


def _model(model_dir) -> ModelConfig:
    return ModelConfig(model=str(model_dir), device="cpu", dtype="float32")


def job_path_p_yes(model: ModelConfig, decode: DecodeConfig, uris: list[str], monkeypatch) -> tuple[list, list]:
    """(p_yes per row, `resized` flags the adapter got) through the decode and scorer stages."""
    batch = {"id": np.array([str(k) for k in range(len(uris))], dtype=object),
             "uri": np.array(uris, dtype=object), "prompt": np.array(["x"] * len(uris), dtype=object)}
    batch = validate_rows(batch, {"image": False})
    decoder = MediaDecoder(decode.model_dump())
    try:
        decoded = decoder(batch)
    finally:
        decoder.close()
    scorer = ChecklistScorer(model.model_dump(), decode.model_dump(), checklists_to_json(CHECKLISTS))
    adapter, seen = scorer.adapters["image"], []
    readout = adapter.readout

    def spy(items, questions, answers=None):
        seen.extend(item.resized for item in items)
        return readout(items, questions, answers)
    monkeypatch.setattr(adapter, "readout", spy)
    out = scorer(decoded)
    assert list(out["status"]) == [status.OK] * len(uris), list(out["error"])
    return [np.frombuffer(raw, dtype=np.float32) for raw in out["p_yes"]], seen


@pytest.mark.parametrize("family", list(EXPECTED))
def test_the_job_path_scores_what_the_stock_processor_scores_on_the_source(family, models, tmp_path, monkeypatch):
    model_dir = models(family)
    model = _model(model_dir)
    decode = resolve_decode(model, DecodeConfig(), StorageConfig())  # what `vrscore score` does on the driver
    assert (decode.resize_rule, decode.resize_factor) == EXPECTED[family]
    uris = [str(write_image(tmp_path / f"{w}x{h}.png", (w, h), seed=k)) for k, (w, h) in enumerate(SIZES)]
    got, resized = job_path_p_yes(model, decode, uris, monkeypatch)
    sources = [np.asarray(Image.open(u).convert("RGB"))[None] for u in uris]
    want = [np.array([stock_p_yes(model_dir, s, "image", q) for q in QUESTIONS]) for s in sources]
    for uri, g, w in zip(uris, got, want):
        np.testing.assert_allclose(g, w, atol=TOL, rtol=0, err_msg=f"{family} {uri}")
    # frames are taken as the model's input only under the family's own model-size rule
    assert resized and set(resized) == {decode.resize_rule in MODEL_SIZE_RULES}
    # controls: the answers differ between questions, and another image's stock answers are far off
    assert np.ptp(np.concatenate(want)) > 20 * TOL
    assert max(np.abs(g - w).max() for g, w in zip(got, want[1:] + want[:1])) > 10 * TOL


@pytest.mark.parametrize("family", ["glm4v", "internvl", "llava_onevision", "gemma3"])
def test_frames_sized_by_another_rule_change_the_scores(family, models, tmp_path):
    """Control: at these sizes the Qwen rule at 28 (what the decode stage applied to every model
    before) scores away from the stock processor, so the test above can tell the rules apart."""
    from actors.adapters import MediaInput, load_adapter
    from actors.frame_decode import decode_image

    model_dir = models(family)
    qwen = DecodeConfig(resize_rule="smart_resize", resize_factor=28)
    adapter = load_adapter(_model(model_dir), DecodeConfig())
    worst = 0.0
    for k, size in enumerate(SIZES):
        path = write_image(tmp_path / f"{k}.png", size, seed=k)
        frames = decode_image(path.read_bytes(), qwen).frames
        got = adapter.score([MediaInput(frames, "image", resized=family == "glm4v")], [QUESTIONS])[0]
        source = np.asarray(Image.open(path).convert("RGB"))[None]
        worst = max(worst, np.abs(got - [stock_p_yes(model_dir, source, "image", q) for q in QUESTIONS]).max())
    assert worst > 10 * TOL


def test_the_scorer_refuses_frames_of_a_rule_other_than_the_models(models):
    qwen = DecodeConfig(resize_rule="smart_resize", resize_factor=28)
    with pytest.raises(ValueError, match="sizes frames by 'smart_resize', but the model takes 'fit_within'"):
        ChecklistScorer(_model(models("internvl")).model_dump(), qwen.model_dump(), checklists_to_json(CHECKLISTS))


def test_every_family_module_declares_the_rule_the_driver_resolves():
    assert set(FAMILY_RESIZE_RULES) == set(FAMILY_MODULES)
    for model_type, rule in FAMILY_RESIZE_RULES.items():
        assert family_class(model_type).resize_rule == rule, model_type
