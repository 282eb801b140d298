"""InternVL's family module: the fast path equals the stock forward, on images and videos."""
from __future__ import annotations

import pytest

from actors.demo_model import build_demo_model
from tests.family_equivalence import (
    fast_vs_stock,
    frames,
    shifted_positions_effect,
    swapped_media_effect,
)

FAMILY = "internvl"


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return build_demo_model(tmp_path_factory.mktemp(FAMILY), family=FAMILY)


def test_images_of_three_aspect_ratios_match_stock(model_dir):
    # square: one tile plus nothing; wide and tall: several tiles plus the thumbnail
    cases = [("image", frames(s, (1, *hw))) for s, hw in enumerate([(64, 64), (56, 112), (120, 48)])]
    assert fast_vs_stock(model_dir, cases) < 1e-4


def test_videos_of_1_2_and_9_frames_match_stock(model_dir):
    cases = [("video", frames(s, (t, 56, 56))) for s, t in enumerate([1, 2, 9])]
    assert fast_vs_stock(model_dir, cases) < 1e-4


def test_negative_controls_change_p_yes(model_dir, monkeypatch):
    a, b = frames(0, (1, 56, 112)), frames(1, (1, 56, 112))
    assert swapped_media_effect(model_dir, "image", a, b) > 1e-3
    assert shifted_positions_effect(model_dir, "video", frames(2, (2, 56, 56)), monkeypatch) > 1e-4
