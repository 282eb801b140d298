"""Qwen3-VL, Qwen3-VL-MoE and Qwen3.5 (linear attention: one prefix-state copy per question)
against the stock forward."""
from __future__ import annotations

import pytest

from actors.demo_model import build_demo_model
from schemas.job_config import DecodeConfig
from tests.family_checks import check_family

pytestmark = pytest.mark.equivalence  # run again on the lowest supported transformers (.ci/run)

# the tiny checkpoints' image bounds (preprocessor_config.json), 32-pixel merged patches
DECODE = DecodeConfig(resize_factor=32, image_min_pixels=64 * 64, image_max_pixels=32 * 32 * 1024,
                      video_min_pixels=32 * 32, video_max_pixels=128 * 128)


@pytest.mark.parametrize("family", ["qwen3_vl", "qwen3_vl_moe", "qwen3_5"])
@pytest.mark.parametrize("budget", [16384, 150], ids=["one-forward", "chunked"])
def test_fast_path_equals_the_stock_forward(tmp_path, family, budget):
    model_dir = build_demo_model(tmp_path / family, family=family)
    # tall, square, wide; odd sizes that both the stock image processor and the family resize
    check_family(model_dir, DECODE, [(130, 61), (77, 77), (50, 170)], video_size=(64, 96), token_budget=budget)
