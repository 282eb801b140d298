"""Each family's tiny checkpoint builds offline, reloads like a real one, and its image reaches the logits.

The stock p_yes (tests/family_stock.py) must change when the image or video is swapped: a fixture
whose media does not reach the answer (Gemma 3's all-zero projector from `from_config`) would let
every equivalence test pass vacuously.
"""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
import warnings
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from transformers import AutoImageProcessor, AutoModelForImageTextToText, AutoTokenizer
from transformers.video_utils import VideoMetadata

from actors.demo_model import build_demo_model
from actors.tiny_models import FAMILY_MODULES
from actors.tiny_models.tokenizer import build_bpe_tokenizer
from tests.family_stock import (
    NO_WORDS,
    YES_WORDS,
    answer_ids,
    image_processor_of,
    render,
    stock_inputs,
    stock_p_yes,
)
from tests.family_stock_video import VIDEO_BUILDERS, qwen3_vl_prompt

FAMILIES = sorted(FAMILY_MODULES)
QUESTION = "Is the lighting natural?"


@pytest.fixture(scope="module", params=FAMILIES)
def family_dir(request, tmp_path_factory):
    return request.param, build_demo_model(tmp_path_factory.mktemp(request.param), family=request.param)


def _frames(seed: int, t: int, h: int, w: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (t, h, w, 3), dtype=np.uint8)


def test_reloads_from_safetensors_with_the_auto_classes(family_dir):
    family, path = family_dir
    assert (path / "model.safetensors").exists() and not list(path.glob("*.bin"))
    model, info = AutoModelForImageTextToText.from_pretrained(path, output_loading_info=True)
    assert model.config.model_type == family
    assert not info["missing_keys"] and not info["unexpected_keys"]
    assert sum(p.numel() for p in model.parameters()) < 2_000_000
    tokenizer = AutoTokenizer.from_pretrained(path)
    assert len(tokenizer) <= model.config.get_text_config().vocab_size
    # the stock image processor builds from the saved preprocessor_config.json
    assert AutoImageProcessor.from_pretrained(path) is not None


def test_template_renders_and_answer_words_are_single_tokens(family_dir):
    _, path = family_dir
    tokenizer = AutoTokenizer.from_pretrained(path)
    prompt = render(tokenizer, "image", QUESTION)
    assert QUESTION in prompt
    for word in YES_WORDS + NO_WORDS:
        for form in (word, " " + word):
            assert len(tokenizer.encode(form, add_special_tokens=False)) == 1, form
    for token in tokenizer.all_special_tokens:
        assert len(tokenizer.encode(token, add_special_tokens=False)) == 1, token


@pytest.mark.parametrize("shape", [(64, 64), (64, 128), (96, 64)])
def test_swapping_the_image_changes_stock_p_yes(family_dir, shape):
    _, path = family_dir
    a = stock_p_yes(path, _frames(0, 1, *shape), "image", QUESTION)
    b = stock_p_yes(path, _frames(1, 1, *shape), "image", QUESTION)
    assert 0 < a < 1 and abs(a - b) > 1e-3


@pytest.mark.parametrize("n_frames", [1, 2, 9])
def test_swapping_the_video_changes_stock_p_yes(family_dir, n_frames):
    family, path = family_dir
    if family not in VIDEO_BUILDERS:
        pytest.skip(f"{family} takes no video")
    a = stock_p_yes(path, _frames(0, n_frames, 64, 64), "video", QUESTION)
    b = stock_p_yes(path, _frames(1, n_frames, 64, 64), "video", QUESTION)
    assert 0 < a < 1 and abs(a - b) > 1e-4


def test_video_layout_counts_match_the_model(family_dir):
    """The hand-laid video inputs hold as many placeholder tokens as the vision tower emits."""
    family, path = family_dir
    if family not in VIDEO_BUILDERS:
        pytest.skip(f"{family} takes no video")
    inputs, _ = stock_inputs(path, _frames(0, 3, 64, 96), "video", QUESTION)
    model = AutoModelForImageTextToText.from_pretrained(path)
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("error", FutureWarning)
        logits = model(**inputs).logits
    assert logits.shape[:2] == inputs["input_ids"].shape


def test_unknown_family_is_refused_and_other_presets_too(tmp_path):
    with pytest.raises(ValueError, match="unknown family"):
        build_demo_model(tmp_path / "x", family="llava")
    with pytest.raises(ValueError, match="comes in presets"):
        build_demo_model(tmp_path / "y", family=FAMILIES[0], preset="qwen2_vl_2b")
    assert not list(tmp_path.iterdir())


def test_make_demo_model_command_builds_a_family(tmp_path):
    out = tmp_path / "m"
    done = subprocess.run([sys.executable, "-m", "jobs.cli", "make-demo-model", str(out), "--family", "qwen3_vl"],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert json.loads((out / "config.json").read_text())["model_type"] == "qwen3_vl"


def test_gemma3_with_the_projector_from_config_ignores_the_image(tmp_path):
    """The control above catches a zero projector: left as `from_config` makes it, the image is ignored."""
    path = build_demo_model(tmp_path / "drawn", family="gemma3")
    model = AutoModelForImageTextToText.from_pretrained(path)
    with torch.no_grad():
        model.model.multi_modal_projector.mm_input_projection_weight.zero_()
    zeroed = tmp_path / "zeroed"
    shutil.copytree(path, zeroed)
    model.save_pretrained(zeroed)
    a, b = (stock_p_yes(zeroed, _frames(seed, 1, 64, 64), "image", QUESTION) for seed in (0, 1))
    assert abs(a - b) < 1e-6
    a, b = (stock_p_yes(path, _frames(seed, 1, 64, 64), "image", QUESTION) for seed in (0, 1))
    assert abs(a - b) > 1e-3


def test_answer_after_a_space_reads_the_space_forms():
    """SmolVLM's template ends in `Assistant:`: the answer token is " Yes", not "Yes"."""
    tokenizer = build_bpe_tokenizer(("<x>",), "", eos="<x>", pad="<x>")
    assert answer_ids(tokenizer, "Assistant:", ("Yes",)) == tokenizer.encode(" Yes", add_special_tokens=False)
    assert answer_ids(tokenizer, "assistant\n", ("Yes",)) == tokenizer.encode("Yes", add_special_tokens=False)


@pytest.mark.parametrize("n_frames", [1, 2, 9])
def test_hand_laid_video_tokens_equal_the_stock_processors_expansion(family_dir, n_frames):
    """The stock processor's own `replace_video_token`, fed the video inputs a torchvision video
    processor would return, expands the placeholder to the same tokens as the hand layout."""
    family, path = family_dir
    if family not in VIDEO_BUILDERS:
        pytest.skip(f"{family} takes no video")
    inputs, prompt = stock_inputs(path, _frames(0, n_frames, 64, 64), "video", QUESTION)
    processor = image_processor_of(str(path))
    video_config = json.loads((path / "video_preprocessor_config.json").read_text())
    processor.video_processor = SimpleNamespace(**video_config)  # what replace_video_token reads
    metadata = VideoMetadata(total_num_frames=n_frames, fps=2.0, frames_indices=list(range(n_frames)))
    pixels = inputs.get("pixel_values_videos", inputs.get("pixel_values"))
    video_inputs = {"video_grid_thw": inputs.get("video_grid_thw"), "video_metadata": [metadata],
                    "pixel_values_videos": pixels if pixels.ndim == 5 else pixels[None], "pixel_values": pixels}
    expansion = processor.replace_video_token(video_inputs, 0)
    tokenizer = processor.tokenizer
    # Qwen3-VL: the expansion goes where the published processor puts it (in place of the whole
    # marker triple), which transformers versions disagree on (tests/test_family_qwen3.py)
    text = (qwen3_vl_prompt(prompt, expansion) if VIDEO_BUILDERS[family] is VIDEO_BUILDERS["qwen3_vl"]
            else prompt.replace(processor.video_token, expansion, 1))
    expected = tokenizer.encode(text, add_special_tokens=False)
    assert inputs["input_ids"][0].tolist() == expected


@pytest.mark.parametrize("family", ["qwen3_vl", "glm4v"])
def test_hand_laid_video_pixels_of_a_still_equal_the_stock_image_processors(family, tmp_path):
    """Two equal frames make one temporal patch, which the stock image processor builds from one
    image by repeating it: resize rule, normalisation and patch order must all agree."""
    path = build_demo_model(tmp_path / family, family=family)
    still = _frames(0, 1, 64, 96)
    video, _ = stock_inputs(path, np.repeat(still, 2, axis=0), "video", QUESTION)
    image, _ = stock_inputs(path, still, "image", QUESTION)
    assert torch.equal(video["video_grid_thw"], image["image_grid_thw"])
    torch.testing.assert_close(video["pixel_values_videos"], image["pixel_values"], atol=1e-6, rtol=0)
