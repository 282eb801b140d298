"""Qwen3-VL, Qwen3-VL-MoE and Qwen3.5 (linear attention: one prefix-state copy per question)
against the stock forward, and Qwen3-VL's video layout against the processor it was published with."""
from __future__ import annotations

import numpy as np
import pytest
from transformers import AutoConfig

from actors.adapters import MediaInput, load_adapter
from actors.adapters.families.qwen3_vl import Qwen3VLFamily
from actors.adapters.prompt_tokens import PromptEncoder
from actors.demo_model import build_demo_model
from actors.tiny_models.qwen3_vl import QWEN3_VL_CHAT_TEMPLATE
from schemas.job_config import DecodeConfig, ModelConfig
from tests.family_checks import TOL, check_family
from tests.family_stock import load, p_yes_of, render, stock_p_yes
from tests.family_stock_video import qwen3_vl_video
from tests.test_real_vocabularies import real_tokenizer

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


# ---- the video layout of the processor Qwen3-VL was published with ----------------------------
# Written from that processor's rule (transformers 4.57 `Qwen3VLProcessor.__call__`, vLLM's
# `Qwen3VLMultiModalProcessor`): the template's `<|vision_start|><|video_pad|><|vision_end|>` is
# replaced as a whole by the frame blocks; a bare `<|video_pad|>` only where the prompt has no
# such triple. transformers 5.24 nests the blocks inside the template's markers
# instead, so the installed processor is not what these tests compare against.

WRAPPED = "<|vision_start|><|video_pad|><|vision_end|>"
QUESTION = "Is the motion smooth?"
# 4 frames of 64x64 at 2 fps: 2 temporal patches (times 0 and 0.5 -> 0.25; 1 and 1.5 -> 1.25),
# each of (64 / 16)^2 / 2^2 = 4 merged tokens
PUBLISHED_BLOCK = ("<0.2 seconds><|vision_start|>" + "<|video_pad|>" * 4 + "<|vision_end|>"
                   "<1.2 seconds><|vision_start|>" + "<|video_pad|>" * 4 + "<|vision_end|>")


@pytest.fixture(scope="module")
def qwen3_vl_dir(tmp_path_factory):
    return build_demo_model(tmp_path_factory.mktemp("qwen3_vl"), family="qwen3_vl")


def _video() -> MediaInput:
    return MediaInput(np.random.default_rng(4).integers(0, 256, (4, 64, 64, 3), dtype=np.uint8), "video", fps=2.0)


def _adapter(model_dir, **model):
    return load_adapter(ModelConfig(model=str(model_dir), device="cpu", dtype="float32", **model), DECODE)


@pytest.mark.parametrize("system", [None, "You judge videos."])
def test_video_tokens_follow_the_published_layout(qwen3_vl_dir, system):
    adapter = load_adapter(ModelConfig(model=str(qwen3_vl_dir), device="cpu", dtype="float32"), DECODE,
                           system_prompt=system)
    tokenizer = adapter.tokenizer
    ids = adapter.prepare(_video(), [QUESTION]).sequences[0].tolist()
    prompt = render(tokenizer, "video", QUESTION, system=system, family="qwen3_vl")
    # the frame blocks' ids are encoded once per item and spliced into every question's prompt
    layout = adapter.family.media_layout(adapter.family.prepare_media(_video()))
    assert adapter.prompts._splice({"type": "video"}, WRAPPED, layout[1]) is not None
    assert prompt.count(WRAPPED) == 1
    published = tokenizer.encode(prompt.replace(WRAPPED, PUBLISHED_BLOCK), add_special_tokens=False)
    nested = tokenizer.encode(prompt.replace("<|video_pad|>", PUBLISHED_BLOCK), add_special_tokens=False)
    assert ids == published
    start, end = (tokenizer.convert_tokens_to_ids(t) for t in ("<|vision_start|>", "<|vision_end|>"))
    assert ids.count(start) == ids.count(end) == 2  # one pair per temporal patch, none around them
    assert nested.count(start) == 3 and len(nested) == len(published) + 2
    # the video's own tokens: each time stamp, then its marked frame of 4 merged tokens
    stamps = sum(len(tokenizer.encode(t, add_special_tokens=False)) for t in ("<0.2 seconds>", "<1.2 seconds>"))
    text_only = len(tokenizer.encode(prompt.replace(WRAPPED, ""), add_special_tokens=False))
    assert len(ids) - text_only == stamps + 2 * (1 + 4 + 1)


def test_a_bare_video_pad_is_replaced_alone(qwen3_vl_dir, tmp_path):
    # the published rule's other branch: a template without the marker triple
    template = tmp_path / "bare.jinja"
    template.write_text(QWEN3_VL_CHAT_TEMPLATE.replace(WRAPPED, "<|video_pad|>"))
    adapter = _adapter(qwen3_vl_dir, chat_template=str(template))
    ids = adapter.prepare(_video(), [QUESTION]).sequences[0].tolist()
    prompt = adapter.prompts.render({"type": "video"}, [QUESTION])
    assert WRAPPED not in prompt and prompt.count("<|video_pad|>") == 1
    assert ids == adapter.tokenizer.encode(prompt.replace("<|video_pad|>", PUBLISHED_BLOCK), add_special_tokens=False)


@pytest.mark.parametrize("family", ["qwen3_vl", "qwen3_5"])
def test_fast_path_equals_the_published_layout_not_the_nested_one(tmp_path, family):
    model_dir = build_demo_model(tmp_path / family, family=family)
    video = _video()
    seconds = [k / video.fps for k in range(len(video.frames))]
    questions = [QUESTION, "Is there a cat?"]
    fast = _adapter(model_dir).score([video], [questions])[0]
    published = np.array([stock_p_yes(model_dir, video.frames, "video", q, seconds=seconds) for q in questions])
    np.testing.assert_allclose(fast, published, atol=TOL, rtol=0)
    # negative control: the nested layout (transformers 5.24) answers differently
    _, tokenizer = load(str(model_dir))
    nested = []
    for q in questions:
        prompt = render(tokenizer, "video", q, family=family)
        inputs = qwen3_vl_video(model_dir, tokenizer, prompt, video.frames, seconds, None, layout="nested")
        assert inputs["input_ids"].shape[1] == len(_adapter(model_dir).prepare(video, [q]).sequences[0]) + 2
        nested.append(p_yes_of(model_dir, inputs, prompt))
    assert np.abs(np.array(nested) - fast).max() > 5 * TOL


def test_a_two_patch_video_is_24_tokens_on_the_released_vocabulary(qwen3_vl_dir):
    """MODELS.md's count: on Qwen3-VL's released vocabulary (Qwen2's BPE ranks and vision tokens),
    this video (2 temporal patches of 4 merged tokens) is 24 tokens in the published layout; the
    nested one is 26. The tiny checkpoint supplies only the vision geometry."""
    tokenizer = real_tokenizer("qwen2_vl")
    config = AutoConfig.from_pretrained(qwen3_vl_dir)
    for key, token in (("image_token_id", "<|image_pad|>"), ("video_token_id", "<|video_pad|>"),
                       ("vision_start_token_id", "<|vision_start|>"), ("vision_end_token_id", "<|vision_end|>")):
        setattr(config, key, tokenizer.convert_tokens_to_ids(token))
    assert config.video_token_id == 151656  # the released id
    family = Qwen3VLFamily(str(qwen3_vl_dir), config, tokenizer, DECODE)
    encoder = PromptEncoder(tokenizer, QWEN3_VL_CHAT_TEMPLATE, None)
    ids = encoder.sequences({"type": "video"}, [QUESTION], family.media_layout(family.prepare_media(_video())))[0]
    prompt = encoder.render({"type": "video"}, [QUESTION])
    text_only = len(tokenizer.encode(prompt.replace(WRAPPED, ""), add_special_tokens=False))
    nested = tokenizer.encode(prompt.replace("<|video_pad|>", PUBLISHED_BLOCK), add_special_tokens=False)
    assert (len(ids) - text_only, len(nested) - text_only) == (24, 26)
    assert ids.tolist() == tokenizer.encode(prompt.replace(WRAPPED, PUBLISHED_BLOCK), add_special_tokens=False)
