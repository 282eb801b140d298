"""SmolVLM's and Idefics3's family module: the fast path equals the stock forward.

These two models call their decoder `text_model`, not `language_model`: the engine must find it
through `get_decoder()` (these tests once needed an alias for it and failed without one).
"""
from __future__ import annotations

import pytest

from actors.demo_model import build_demo_model
from tests.family_equivalence import (
    adapter,
    fast_vs_stock,
    frames,
    shifted_positions_effect,
    swapped_media_effect,
)

IMAGES = [(64, 64), (80, 120), (200, 48)]  # one view; a 2x2 grid + global; a 1x4 strip + global


@pytest.fixture(scope="module", params=["smolvlm", "idefics3"])
def model_dir(request, tmp_path_factory):
    return build_demo_model(tmp_path_factory.mktemp(request.param), family=request.param)


def test_images_of_three_aspect_ratios_match_stock(model_dir):
    cases = [("image", frames(s, (1, *hw))) for s, hw in enumerate(IMAGES)]
    assert fast_vs_stock(model_dir, cases) < 1e-4


def test_videos_of_1_2_and_9_frames_match_stock(model_dir):
    if "video" not in adapter(model_dir).family.media_types:
        pytest.skip("Idefics3 takes no video")
    cases = [("video", frames(s, (t, 64, 64))) for s, t in enumerate([1, 2, 9])]
    assert fast_vs_stock(model_dir, cases + [("image", frames(7, (1, 80, 120)))]) < 1e-4


def test_negative_controls_change_p_yes(model_dir, monkeypatch):
    a, b = frames(0, (1, 80, 120)), frames(1, (1, 80, 120))
    assert swapped_media_effect(model_dir, "image", a, b) > 1e-3
    assert shifted_positions_effect(model_dir, "image", frames(2, (1, 64, 64)), monkeypatch) > 1e-4
