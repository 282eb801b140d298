"""The fast path against an independent stock-transformers forward per question, on two
random-weight checkpoints no other test uses (a Qwen2-VL with grouped-query attention and an
untied head; a Qwen2.5-VL with window attention, two full-attention blocks and its own
mrope_section) and on images of sizes and aspect ratios the other tests do not use.

The stock side uses none of vrscore's code: the tokenizer's chat template, transformers'
PIL image processor (on the raw, unaligned frames: it resizes them itself) and
`model(**inputs).logits[0, -1]`.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from transformers import (
    Qwen2_5_VLConfig,
    Qwen2_5_VLForConditionalGeneration,
    Qwen2VLConfig,
    Qwen2VLForConditionalGeneration,
)

from actors import demo_model as dm
from actors.adapters import MediaInput, load_adapter
from actors.synthetic_media import make_picture
from schemas.checklist import default_checklist
from schemas.job_config import DecodeConfig, ModelConfig
from tests.stock_forward import stock_image_answers

pytestmark = pytest.mark.equivalence  # run again on the lowest supported transformers (.ci/run)

TOL = 1e-4
DECODE = DecodeConfig(image_min_pixels=56 * 56, image_max_pixels=64 * 28 * 28)
PROMPT = "ein Café in Zürich bei Nacht, 東京の雨の街角, neon reflections 🌃"
CHECKLIST = default_checklist("image").render(PROMPT)
QUESTIONS = [
    ["Yes or no?", CHECKLIST[0], "Is the image clear?", "Is the image clear and sharp?"],
    ["Est-ce « un café » à Zürich? 画像は鮮明ですか？ 🙂", " ".join(CHECKLIST[:5])],
    ["?"],
    [CHECKLIST[3], CHECKLIST[3], "", "  spaces\nand a newline?"],
    CHECKLIST[4:9],
]
# (height, width): tall, wide, tiny (scaled up to min_pixels), large (scaled down), odd sides
SIZES = [(400, 30), (60, 400), (10, 10), (480, 640), (217, 333)]

MODELS = {
    "qwen2_vl_gqa": dict(
        family="qwen2_vl", tie=False,
        text=dict(hidden_size=128, intermediate_size=352, num_hidden_layers=3, num_attention_heads=4,
                  num_key_value_heads=2, rope_parameters={"rope_type": "default", "rope_theta": 1e4,
                                                          "mrope_section": [8, 4, 4]}),
        vision=dict(depth=2, embed_dim=64, num_heads=2, mlp_ratio=2)),
    "qwen2_5_vl_window": dict(
        family="qwen2_5_vl", tie=True,
        text=dict(hidden_size=128, intermediate_size=352, num_hidden_layers=2, num_attention_heads=2,
                  num_key_value_heads=1, rope_parameters={"rope_type": "default", "rope_theta": 1e6,
                                                          "mrope_section": [16, 8, 8]}),
        vision=dict(depth=4, hidden_size=64, num_heads=2, intermediate_size=128, hidden_act="silu",
                    window_size=56, fullatt_block_indexes=[1, 3], tokens_per_second=25)),
}


def _build(out: Path, spec: dict) -> Path:
    tok = dm.build_tokenizer()
    ids = {name: tok.convert_tokens_to_ids(t) for name, t in (
        ("image_token_id", "<|image_pad|>"), ("video_token_id", "<|video_pad|>"),
        ("vision_start_token_id", "<|vision_start|>"), ("vision_end_token_id", "<|vision_end|>"))}
    text = dict(spec["text"], vocab_size=-(-len(tok) // 64) * 64, max_position_embeddings=32768,
                initializer_range=0.1, bos_token_id=tok.pad_token_id, pad_token_id=tok.pad_token_id,
                eos_token_id=tok.eos_token_id, tie_word_embeddings=spec["tie"])
    vision = dict(spec["vision"], in_channels=3, patch_size=dm.PATCH_SIZE, spatial_merge_size=dm.MERGE_SIZE,
                  temporal_patch_size=dm.TEMPORAL_PATCH_SIZE, initializer_range=0.1)
    if spec["family"] == "qwen2_vl":
        config_class, model_class = Qwen2VLConfig, Qwen2VLForConditionalGeneration
        vision["hidden_size"] = text["hidden_size"]
    else:
        config_class, model_class = Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration
        vision["out_hidden_size"] = text["hidden_size"]
    config = config_class(text_config=text, vision_config=vision, tie_word_embeddings=spec["tie"], **ids)
    torch.manual_seed(0)
    model_class(config).eval().save_pretrained(out, safe_serialization=True)
    tok.save_pretrained(out)
    (out / "preprocessor_config.json").write_text(json.dumps(dm._preprocessor_config(spec["family"])))
    return out


@pytest.fixture(scope="module", params=list(MODELS))
def model_dir(request, tmp_path_factory) -> Path:
    return _build(tmp_path_factory.mktemp(request.param), MODELS[request.param])


def test_fast_path_equals_stock_forward(model_dir):
    rng = np.random.default_rng(0)
    images = [make_picture((w, h), seed=k) if k % 2 == 0 else rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
              for k, (h, w) in enumerate(SIZES)]
    stock = [stock_image_answers(model_dir, Image.fromarray(image), qs, DECODE.image_min_pixels,
                                 DECODE.image_max_pixels) for image, qs in zip(images, QUESTIONS)]
    expected = [p for p, _ in stock]
    items = [MediaInput(image[None], "image") for image in images]
    # 120: items over the budget alone, their questions in chunks; default: all items in one forward
    for budget in (120, 16384):
        adapter = load_adapter(ModelConfig(model=str(model_dir), device="cpu", dtype="float32",
                                           token_budget=budget), DECODE)
        for got, (p_yes, mass) in zip(adapter.readout(items, QUESTIONS), stock):
            np.testing.assert_allclose(got.p_yes, p_yes, atol=TOL, rtol=0)
            np.testing.assert_allclose(got.answer_mass, mass, atol=0, rtol=TOL)  # whole-vocabulary softmax
    # random weights still answer differently per image and question: agreement is not vacuous
    assert np.ptp(np.concatenate(expected)) > 20 * TOL
