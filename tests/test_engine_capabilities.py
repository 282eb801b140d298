"""Capabilities read from the model config: sliding-window layers get their own mask, on the
tokens' true places in the sequence, when the prefix plus packed suffixes exceed the window."""
from __future__ import annotations

import pytest
import numpy as np

from actors.adapters import MediaInput, load_adapter
from schemas.job_config import DecodeConfig, ModelConfig
from tests.engine_models import build_sliding_qwen2_vl

pytestmark = pytest.mark.equivalence  # run again on the lowest supported transformers (.ci/run)

DECODE = DecodeConfig(image_min_pixels=28 * 28, image_max_pixels=112 * 112,
                      video_min_pixels=28 * 28, video_max_pixels=56 * 84)
QUESTIONS = ["Is the image clear?", "Yes or no?", "Are there any distorted hands or faces in it?",
             "Is the composition aesthetically pleasing and does the lighting look natural?", "Is it red?"]


def test_sliding_window_layers_match_the_stock_forward(tmp_path):
    window = 24  # the prefixes are 30 to 60 tokens: every suffix reaches past the window
    adapter = load_adapter(ModelConfig(model=str(build_sliding_qwen2_vl(tmp_path / "m", window)), device="cpu"), DECODE)
    assert adapter.sliding_window == window
    rng = np.random.default_rng(0)
    items = [MediaInput(rng.integers(0, 256, (1, 84, 112, 3), dtype=np.uint8), "image"),
             MediaInput(rng.integers(0, 256, (1, 28, 56, 3), dtype=np.uint8), "image"),
             MediaInput(rng.integers(0, 256, (3, 56, 84, 3), dtype=np.uint8), "video", fps=2.0)]
    questions = [QUESTIONS, QUESTIONS[1:], QUESTIONS[:3]]
    reference = adapter.score_reference(items, questions)
    fast = adapter.score(items, questions)
    for f, r in zip(fast, reference):
        np.testing.assert_allclose(f, r, atol=1e-5, rtol=0)
    # negative control: the same suffixes under the full-attention mask in every layer
    adapter.sliding_window = None
    unwindowed = adapter.score(items, questions)
    assert max(np.abs(u - r).max() for u, r in zip(unwindowed, reference)) > 1e-3
