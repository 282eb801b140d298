"""The engine on the current transformers API: no deprecated calls, and prompt ids laid out by
splicing equal the stock encoding of the expanded prompt."""
from __future__ import annotations

import warnings

import numpy as np
import pytest

from actors.adapters import MediaInput, load_adapter
from actors.adapters.prompt_tokens import encode_segments
from schemas.job_config import DecodeConfig, ModelConfig

pytestmark = pytest.mark.equivalence  # run again on the lowest supported transformers (.ci/run)

DECODE = DecodeConfig(image_min_pixels=28 * 28, image_max_pixels=56 * 84,
                      video_min_pixels=28 * 28, video_max_pixels=56 * 56)
QUESTIONS = ["Is the image clear?", "Yes or no?", "Are the hands distorted?"]


def _items() -> list[MediaInput]:
    rng = np.random.default_rng(0)
    return [MediaInput(rng.integers(0, 256, (1, 56, 84, 3), dtype=np.uint8), "image"),
            MediaInput(rng.integers(0, 256, (3, 56, 56, 3), dtype=np.uint8), "video", fps=2.0)]


@pytest.mark.parametrize("family", ["qwen2_vl", "qwen2_5_vl"])
def test_loading_and_scoring_raise_no_deprecation_warning(family, demo_model_dir, demo_model_dir_25):
    model_dir = {"qwen2_vl": demo_model_dir, "qwen2_5_vl": demo_model_dir_25}[family]
    with warnings.catch_warnings():
        warnings.simplefilter("error", FutureWarning)
        warnings.simplefilter("error", DeprecationWarning)
        adapter = load_adapter(ModelConfig(model=str(model_dir), device="cpu"), DECODE)
        fast = adapter.score(_items(), [QUESTIONS, QUESTIONS[:2]])
        reference = adapter.score_reference(_items(), [QUESTIONS, QUESTIONS[:2]])
    for f, r in zip(fast, reference):
        np.testing.assert_allclose(f, r, atol=1e-5, rtol=0)


def test_spliced_media_ids_equal_encoding_the_expanded_prompt(demo_model_dir):
    adapter = load_adapter(ModelConfig(model=str(demo_model_dir), device="cpu"), DECODE,
                           system_prompt="You judge images.")
    for item in _items():
        prepared = adapter.prepare(item, QUESTIONS)
        placeholder, expansion = adapter.family.media_layout(prepared.visual)
        assert len(expansion) > 3 * len(placeholder)  # several media tokens: the splice did something
        content = adapter.family.media_content(item.media_type)
        for q, ids in zip(QUESTIONS, prepared.sequences):
            segments = adapter.prompts.segments(content, q)
            expanded = [(s if d else s.replace(placeholder, expansion), d) for s, d in segments]
            full = adapter.tokenizer.encode("".join(s for s, _ in expanded), add_special_tokens=False)
            np.testing.assert_array_equal(ids, full)
            np.testing.assert_array_equal(ids, encode_segments(adapter.tokenizer, expanded))
