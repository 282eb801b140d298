"""Pairwise judging against a stock forward, family by family: each one-order probability equals the
two-image prompt through the family's stock processor and `model(**inputs)` (tests/pair_stock.py,
none of vrscore's code), float32, on the shared-prefix fast path and on the one-forward-per-question
path; p_a is the mean of the two orders. Negative control: on a random model the two orders differ,
so averaging them is not vacuous. A model that cannot hold two media in one prompt is refused."""
from __future__ import annotations

import numpy as np
import pytest

from actors.adapters.base import MediaInput
from actors.demo_model import build_demo_model
from actors.pair_reader import PairReader
from schemas.checklist import Checklist
from schemas.job_config import DecodeConfig, ModelConfig
from tests.engine_models import build_llava
from tests.family_stock import verified_family
from tests.pair_stock import stock_pair_distribution, stock_qwen3_vl_video_pair

pytestmark = pytest.mark.equivalence

TOL = 1e-4
QUESTIONS = ["Which image is sharper?", "Which image shows \"a red fox in snow\" better?"]
INSTRUCTION = "Answer 1 or 2."


def pairwise(prefix: str | None = "Image ", ties: list[str] | None = None, media_type: str = "image") -> Checklist:
    return Checklist.model_validate(dict(
        name="pair", media_type=media_type, mode="pairwise", first_words=["1"], second_words=["2"], tie_words=ties,
        answer_prefix=prefix, prompt_template=f"[[question]] {INSTRUCTION}", aggregation={"rule": "mean"},
        questions=[{"id": f"q{i}", "text": q, "dimension": "d"} for i, q in enumerate(QUESTIONS)]))


def images() -> dict[str, MediaInput]:
    rng = np.random.default_rng(0)
    return {"a": MediaInput(rng.integers(0, 256, (1, 77, 77, 3), dtype=np.uint8), "image"),
            "b": MediaInput(rng.integers(0, 256, (1, 64, 96, 3), dtype=np.uint8), "image")}


def decode_of(family: str) -> DecodeConfig:
    # the Qwen3-VL tiny checkpoints' grid (32-pixel merged patches, tests/test_family_qwen3.py)
    return DecodeConfig(resize_factor=32) if family.startswith("qwen3") else DecodeConfig()


@pytest.mark.parametrize("family", [verified_family(f) for f in (
    "qwen2_vl", "qwen3_vl", "glm4v", "internvl", "llava_onevision", "gemma3", "smolvlm")])
def test_each_order_equals_the_stock_forward(tmp_path, family):
    model_dir = build_demo_model(tmp_path / family, family=family)
    items = images()
    reader = PairReader(ModelConfig(model=str(model_dir), device="cpu", dtype="float32"), decode_of(family),
                        pairwise())
    fast = reader.judge(items, [("a", "b", None)])[0].outcome
    reference = reader.judge(items, [("a", "b", None)], reference=True)[0].outcome
    frames = {k: v.frames for k, v in items.items()}
    for q, text in enumerate(QUESTIONS):
        question = f"{text} {INSTRUCTION}"
        ab = stock_pair_distribution(model_dir, frames["a"], frames["b"], question, [["1"], ["2"]], "Image ")
        ba = stock_pair_distribution(model_dir, frames["b"], frames["a"], question, [["1"], ["2"]], "Image ")
        for got in (fast, reference):
            assert got.p_first_ab[q] == pytest.approx(ab[0], abs=TOL)
            assert got.p_first_ba[q] == pytest.approx(ba[0], abs=TOL)
            assert got.p_a[q] == pytest.approx((ab[0] + ba[1]) / 2, abs=TOL)
    # negative control: the orders disagree on a random model (position matters), so the two
    # forwards are really of different prompts and p_a is not one order restated
    assert np.abs(fast.p_first_ab - (1 - fast.p_first_ba)).max() > 10 * TOL


def test_tie_words_are_renormalised_with_the_positions(tmp_path):
    model_dir = build_demo_model(tmp_path / "qwen2_vl", family="qwen2_vl")
    items = images()
    # no answer prefix: the words follow the generation prompt (a newline: no leading space)
    reader = PairReader(ModelConfig(model=str(model_dir), device="cpu", dtype="float32"), DecodeConfig(),
                        pairwise(prefix=None, ties=["same"]))
    got = reader.judge(items, [("a", "b", None)])[0].outcome
    sets = [["1"], ["2"], ["same", "Same"]]  # a word's case forms are pooled
    for q, text in enumerate(QUESTIONS):
        question = f"{text} {INSTRUCTION}"
        ab = stock_pair_distribution(model_dir, items["a"].frames, items["b"].frames, question, sets, "")
        ba = stock_pair_distribution(model_dir, items["b"].frames, items["a"].frames, question, sets, "")
        assert got.p_first_ab[q] == pytest.approx(ab[0], abs=TOL)
        assert got.p_tie[q] == pytest.approx((ab[2] + ba[2]) / 2, abs=TOL)
        assert got.p_a[q] == pytest.approx((ab[0] + ab[2] / 2 + ba[1] + ba[2] / 2) / 2, abs=TOL)


def test_a_bad_item_fails_its_pairs_only(tmp_path):
    model_dir = build_demo_model(tmp_path / "qwen2_vl", family="qwen2_vl")
    items = {**images(), "v": MediaInput(np.zeros((2, 64, 64, 3), np.uint8), "video")}
    reader = PairReader(ModelConfig(model=str(model_dir), device="cpu", dtype="float32"), DecodeConfig(), pairwise())
    ok, mixed = reader.judge(items, [("a", "b", None), ("a", "v", None)])
    assert ok.outcome is not None and mixed.outcome is None and "one kind" in mixed.error


def test_a_model_without_two_media_in_one_prompt_is_refused(tmp_path):
    with pytest.raises(ValueError, match="generic path shows one medium per prompt"):
        PairReader(ModelConfig(model=str(build_llava(tmp_path / "llava")), device="cpu", dtype="float32"),
                   DecodeConfig(), pairwise())
    gemma = build_demo_model(tmp_path / "gemma3", family="gemma3")  # takes images only
    with pytest.raises(ValueError, match="cannot show two videos in one prompt"):
        PairReader(ModelConfig(model=str(gemma), device="cpu", dtype="float32"), DecodeConfig(),
                   pairwise(media_type="video"))


def test_two_qwen3_vl_videos_equal_the_published_layout(tmp_path):
    model_dir = build_demo_model(tmp_path / "qwen3_vl", family="qwen3_vl")
    rng = np.random.default_rng(1)
    first, second = (rng.integers(0, 256, (t, 64, 96, 3), dtype=np.uint8) for t in (2, 4))
    items = {"a": MediaInput(first, "video", fps=2.0), "b": MediaInput(second, "video", fps=2.0)}
    reader = PairReader(ModelConfig(model=str(model_dir), device="cpu", dtype="float32"),
                        DecodeConfig(resize_factor=32, video_min_pixels=32 * 32, video_max_pixels=128 * 128),
                        pairwise(prefix="Video ", media_type="video"))
    got = reader.judge(items, [("a", "b", None)])[0].outcome
    for q, text in enumerate(QUESTIONS):
        question = f"{text} {INSTRUCTION}"
        ab = stock_qwen3_vl_video_pair(model_dir, first, second, question, [["1"], ["2"]], "Video ")
        ba = stock_qwen3_vl_video_pair(model_dir, second, first, question, [["1"], ["2"]], "Video ")
        assert got.p_first_ab[q] == pytest.approx(ab[0], abs=TOL)
        assert got.p_first_ba[q] == pytest.approx(ba[0], abs=TOL)
    assert np.abs(got.p_first_ab - (1 - got.p_first_ba)).max() > 10 * TOL


def test_words_split_differently_after_the_prefix_are_refused(tmp_path):
    # the tiny tokenizer splits "Image 1" as Image, space, 1 but "Image same" as Image, " same": the
    # two words would be read at different positions
    model_dir = build_demo_model(tmp_path / "qwen2_vl", family="qwen2_vl")
    with pytest.raises(ValueError, match="split answer_prefix 'Image ' differently"):
        PairReader(ModelConfig(model=str(model_dir), device="cpu", dtype="float32"), DecodeConfig(),
                   pairwise(ties=["same"]))
