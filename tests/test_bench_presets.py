"""`bench` family checkpoints have the real vision geometry: an image costs the real model's token count.

The counts are those of the checkpoints each module names (their config.json and processor
configs), derived by hand: a regression in a module's tile, patch or merge sizes changes them.
"""
from __future__ import annotations

import numpy as np
import pytest
from transformers import AutoTokenizer

from actors.demo_model import build_demo_model
from tests.family_stock import stock_inputs

# family: (image side, image tokens in the prompt)
REAL_COUNTS = {
    "qwen3_vl": (448, (448 // 32) ** 2),  # Qwen3-VL-2B: 16-pixel patches, 2x2 merge
    "glm4v": (448, (448 // 28) ** 2),  # GLM-4.1V: 14-pixel patches, 2x2 merge
    "internvl": (448, 256),  # InternVL3-1B: one 448 tile, 32^2 patches pixel-shuffled by 0.5
    "gemma3": (896, 256),  # gemma-3-4b: 64^2 patches pooled 4x4
    "smolvlm": (512, 17 * 64),  # SmolVLM2-256M: upscaled to 2048, 4x4 views + global, 64 each
    "idefics3": (364, 17 * 169),  # Idefics3-8B: upscaled to 1456, 4x4 views + global, 169 each
    # LLaVA-OneVision-0.5B: a 729-token base tile plus one AnyRes tile of 27 rows of 27 + a newline
    "llava_onevision": (384, 729 + 27 * 28),
}


@pytest.mark.parametrize("family", sorted(REAL_COUNTS))
def test_bench_image_costs_the_real_checkpoints_token_count(family, tmp_path):
    side, expected = REAL_COUNTS[family]
    path = build_demo_model(tmp_path / family, preset="bench", family=family)
    frames = np.random.default_rng(0).integers(0, 256, (1, side, side, 3), dtype=np.uint8)
    inputs, _ = stock_inputs(path, frames, "image", "Is it sharp?")
    tokenizer = AutoTokenizer.from_pretrained(path)
    image_token = {"glm4v": "<|image|>", "qwen3_vl": "<|image_pad|>", "internvl": "<IMG_CONTEXT>",
                   "gemma3": "<image_soft_token>"}.get(family, "<image>")
    count = int((inputs["input_ids"] == tokenizer.convert_tokens_to_ids(image_token)).sum())
    assert count == expected
    tiny = build_demo_model(tmp_path / "tiny", family=family)
    tiny_inputs, _ = stock_inputs(tiny, frames, "image", "Is it sharp?")
    tiny_count = int((tiny_inputs["input_ids"] == tokenizer.convert_tokens_to_ids(image_token)).sum())
    # control: the toy tiles of `tiny` give far fewer; Qwen3-VL's and GLM-4.1V's tiny checkpoints
    # already have the real patch and merge sizes (dynamic resolution), so the same count
    assert tiny_count == expected if family in ("qwen3_vl", "glm4v") else tiny_count < expected / 5
