"""GLM-4.1V against the stock forward: images and videos share the `<|image|>` token, told apart by
token types between the video markers."""
from __future__ import annotations

import pytest

from actors.demo_model import build_demo_model
from schemas.job_config import DecodeConfig
from tests.family_checks import check_family

pytestmark = pytest.mark.equivalence  # run again on the lowest supported transformers (.ci/run)

# the stock bounds count the two frames of a temporal patch: per frame, half the checkpoint's
DECODE = DecodeConfig(image_min_pixels=56 * 56 // 2, image_max_pixels=28 * 28 * 1024 // 2,
                      video_min_pixels=28 * 28, video_max_pixels=112 * 112)


@pytest.mark.parametrize("budget", [16384, 150], ids=["one-forward", "chunked"])
def test_fast_path_equals_the_stock_forward(tmp_path, budget):
    model_dir = build_demo_model(tmp_path / "glm4v", family="glm4v")
    # tall, square, wide, and one small side GLM scales up before rounding
    check_family(model_dir, DECODE, [(130, 61), (77, 77), (20, 170)], video_size=(56, 84), token_budget=budget)
