"""Gemma 3's family module: the fast path equals the stock forward on images (Gemma 3 takes no video).

The tiny checkpoint's sliding window (32) is shorter than its prompts, so the engine's per-layer
masks are exercised; the controls show that dropping the token types (bidirectional attention
over the image) or the window would be caught.
"""
from __future__ import annotations

import numpy as np
import pytest

from actors.adapters import MediaInput
from actors.demo_model import build_demo_model
from tests.family_equivalence import (
    QUESTIONS,
    adapter,
    fast_vs_stock,
    frames,
    item,
    shifted_positions_effect,
    stock,
    swapped_media_effect,
)

FAMILY = "gemma3"
IMAGES = [(64, 64), (56, 112), (120, 48)]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return build_demo_model(tmp_path_factory.mktemp(FAMILY), family=FAMILY)


@pytest.mark.parametrize("token_budget", [4096, 60])  # all items in one forward / one item per forward
def test_images_of_three_aspect_ratios_match_stock(model_dir, token_budget):
    cases = [("image", frames(s, (1, *hw))) for s, hw in enumerate(IMAGES)]
    assert fast_vs_stock(model_dir, cases, token_budget=token_budget) < 1e-4


def test_prompts_outlast_the_sliding_window(model_dir):
    scorer = adapter(model_dir)
    lengths = [len(s) for s in scorer.prepare(item("image", frames(0, (1, 64, 64))), QUESTIONS).sequences]
    assert scorer.sliding_window is not None and max(lengths) > scorer.sliding_window


def test_video_is_refused(model_dir):
    with pytest.raises(ValueError, match="takes image, not video"):
        adapter(model_dir).score([MediaInput(frames(0, (2, 56, 56)), "video")], [QUESTIONS])


def test_negative_controls_change_p_yes(model_dir, monkeypatch):
    pixels = frames(0, (1, 56, 112))
    assert swapped_media_effect(model_dir, "image", pixels, frames(1, (1, 56, 112))) > 1e-3
    assert shifted_positions_effect(model_dir, "image", pixels, monkeypatch) > 1e-4
    expected = stock(model_dir, "image", pixels)
    causal = adapter(model_dir)  # without token types the image is attended causally
    monkeypatch.setattr(causal.family, "token_types", lambda ids: {})
    assert np.abs(causal.score([item("image", pixels)], [QUESTIONS])[0] - expected).max() > 1e-4
    unwindowed = adapter(model_dir)  # every layer attending to the whole prompt
    unwindowed.sliding_window = None
    assert np.abs(unwindowed.score([item("image", pixels)], [QUESTIONS])[0] - expected).max() > 1e-4
