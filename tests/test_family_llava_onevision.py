"""LLaVA-OneVision's family module: the fast path equals the stock forward, on images and videos."""
from __future__ import annotations

import pytest

from actors.demo_model import build_demo_model
from tests.family_equivalence import (
    QUESTIONS,
    adapter,
    fast_vs_stock,
    frames,
    item,
    shifted_positions_effect,
    swapped_media_effect,
)

FAMILY = "llava_onevision"


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return build_demo_model(tmp_path_factory.mktemp(FAMILY), family=FAMILY)


def test_images_of_three_aspect_ratios_match_stock(model_dir):
    # square, wide (padding cut off the grid) and a large one shrunk to anyres_max_9 tiles
    cases = [("image", frames(s, (1, *hw))) for s, hw in enumerate([(64, 64), (56, 112), (300, 200)])]
    assert fast_vs_stock(model_dir, cases) < 1e-4


@pytest.mark.parametrize("n_frames", [1, 2, 9])
def test_videos_match_stock(model_dir, n_frames):
    cases = [("video", frames(s, (n_frames, 56, 56))) for s in range(2)] + [("image", frames(2, (1, 56, 112)))]
    assert fast_vs_stock(model_dir, cases) < 1e-4


def test_videos_of_different_lengths_in_one_forward_are_refused_clearly(model_dir):
    scorer = adapter(model_dir)
    with pytest.raises(ValueError, match="different frame counts"):
        scorer.score([item("video", frames(0, (1, 56, 56))), item("video", frames(1, (2, 56, 56)))],
                     [QUESTIONS, QUESTIONS])


def test_negative_controls_change_p_yes(model_dir, monkeypatch):
    a, b = frames(0, (1, 56, 112)), frames(1, (1, 56, 112))
    assert swapped_media_effect(model_dir, "image", a, b) > 1e-3
    assert shifted_positions_effect(model_dir, "video", frames(2, (2, 56, 56)), monkeypatch) > 1e-4
