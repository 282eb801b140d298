"""The fast path (shared prefix, batched items, KV-cache expansion) against one forward per question."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import AutoModelForImageTextToText, AutoTokenizer
from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

from actors.adapters import MediaInput, load_adapter, supported_model_types
from schemas.job_config import DecodeConfig, ModelConfig

pytestmark = pytest.mark.equivalence  # run again on the lowest supported transformers (.ci/run)

# small frames keep the tiny model's forwards in milliseconds
DECODE = DecodeConfig(image_min_pixels=28 * 28, image_max_pixels=112 * 112,
                      video_min_pixels=28 * 28, video_max_pixels=84 * 84)
LONG_PROMPT = ("a golden retriever running along a beach at sunset, waves rolling in, seagulls in the sky, "
               "cinematic slow motion shot with warm lighting, shallow depth of field and a camera that "
               "moves from left to right while the dog looks back at a young woman in a red dress")
QUESTIONS = [
    "Is the image clear?",
    f'Does the video meet all the requirements stated in the text "{LONG_PROMPT}"?',
    "Is the composition aesthetically pleasing and does the lighting look natural without obvious flaws?",
    "Yes or no?",
    "Are there any distorted hands or faces?",
]


def _items(seed: int = 0) -> list[MediaInput]:
    rng = np.random.default_rng(seed)
    frames = lambda t, h, w: rng.integers(0, 256, (t, h, w, 3), dtype=np.uint8)  # noqa: E731
    return [
        MediaInput(frames(5, 56, 84), "video", fps=2.0),   # odd frame count: last frame repeated
        MediaInput(frames(1, 84, 112), "image"),
        MediaInput(frames(1, 28, 56), "image"),
        MediaInput(frames(7, 60, 50), "video", fps=8.0),   # resized while preparing
    ]


QUESTION_LISTS = [QUESTIONS, QUESTIONS[2:4], [QUESTIONS[0]], QUESTIONS[1:]]


def _adapter(path: Path, **overrides) -> object:
    return load_adapter(ModelConfig(model=str(path), **{"device": "cpu", **overrides}), DECODE)


@pytest.fixture(params=["qwen2_vl", "qwen2_5_vl"])
def model_dir(request, demo_model_dir, demo_model_dir_25) -> Path:
    return {"qwen2_vl": demo_model_dir, "qwen2_5_vl": demo_model_dir_25}[request.param]


def _count_calls(monkeypatch, adapter, name: str) -> list[int]:
    calls = []
    original = getattr(adapter, name)

    def counted(*args, **kwargs):
        calls.append(1)
        return original(*args, **kwargs)

    monkeypatch.setattr(adapter, name, counted)
    return calls


CUDA = pytest.param("cuda", marks=[pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(),
                                                                        reason="needs a CUDA GPU")])


@pytest.mark.parametrize("device", ["cpu", CUDA])
@pytest.mark.parametrize("dtype,tolerance", [("float32", 1e-4), ("bfloat16", 2e-2)])
def test_fast_path_equals_reference(model_dir, device, dtype, tolerance, monkeypatch):
    # the two videos are over this budget (their questions go in chunks), the two images of
    # different sizes share one forward
    adapter = _adapter(model_dir, device=device, dtype=dtype, token_budget=150)
    items = _items()
    prefix_forwards = _count_calls(monkeypatch, adapter, "_prefix_forward")
    suffix_forwards = _count_calls(monkeypatch, adapter, "_suffix_forward")
    fast = adapter.score(items, QUESTION_LISTS)
    assert len(prefix_forwards) < len(items) < len(suffix_forwards)
    reference = adapter.score_reference(items, QUESTION_LISTS)
    for f, r, qs in zip(fast, reference, QUESTION_LISTS):
        assert f.dtype == r.dtype == np.float32 and f.shape == r.shape == (len(qs),)
        np.testing.assert_allclose(f, r, atol=tolerance, rtol=0)
    # answers vary far more than the tolerance, so agreement is not vacuous
    assert np.ptp(np.concatenate(reference)) > 20 * tolerance


def test_eager_attention_takes_the_same_mask_and_flash_attention_is_refused(demo_model_dir):
    eager = _adapter(demo_model_dir, attn_implementation="eager", token_budget=150)
    items = _items()
    for f, r in zip(eager.score(items, QUESTION_LISTS), eager.score_reference(items, QUESTION_LISTS)):
        np.testing.assert_allclose(f, r, atol=1e-4, rtol=0)
    with pytest.raises(ValueError, match="4D mask"):
        _adapter(demo_model_dir, attn_implementation="flash_attention_2")


def test_items_batched_together_equal_items_scored_alone(demo_model_dir):
    adapter = _adapter(demo_model_dir)  # default budget: all four items in one forward
    items = _items(seed=1)
    together = adapter.score(items, QUESTION_LISTS)
    alone = [adapter.score([item], [qs])[0] for item, qs in zip(items, QUESTION_LISTS)]
    for t, a in zip(together, alone):
        np.testing.assert_allclose(t, a, atol=1e-5, rtol=0)


def test_reference_equals_a_hand_written_forward(demo_model_dir):
    """Independent of the adapter's prompt and pixel code: the tokenizer's chat template, the stock
    image processor and the model's own forward."""
    image = np.random.default_rng(2).integers(0, 256, (84, 112, 3), dtype=np.uint8)
    question = QUESTIONS[2]
    tokenizer = AutoTokenizer.from_pretrained(demo_model_dir)
    model = AutoModelForImageTextToText.from_pretrained(demo_model_dir, use_safetensors=True).eval()
    processor = Qwen2VLImageProcessorPil.from_pretrained(
        demo_model_dir, min_pixels=DECODE.image_min_pixels, max_pixels=DECODE.image_max_pixels)
    vision = processor(images=[image], return_tensors="pt")
    messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": question}]}]
    text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    text = text.replace("<|image_pad|>", "<|image_pad|>" * int(vision["image_grid_thw"].prod() // 4))
    ids = torch.tensor([tokenizer.encode(text)])
    with torch.inference_mode():
        logits = model(input_ids=ids, attention_mask=torch.ones_like(ids),
                       mm_token_type_ids=(ids == model.config.image_token_id).long(), **vision).logits[0, -1]
    yes = torch.logsumexp(logits[[tokenizer.convert_tokens_to_ids(w) for w in ("Yes", "yes")]], 0)
    no = torch.logsumexp(logits[[tokenizer.convert_tokens_to_ids(w) for w in ("No", "no")]], 0)
    expected = torch.softmax(torch.stack([yes, no]), 0)[0].item()

    adapter = _adapter(demo_model_dir)
    got = adapter.score_reference([MediaInput(image[None], "image")], [[question]])[0]
    assert abs(got[0] - expected) < 1e-5


def test_system_prompt_is_used_and_shared(demo_model_dir):
    items, questions = _items()[:2], QUESTION_LISTS[:2]
    default = _adapter(demo_model_dir).score(items, questions)
    custom = load_adapter(ModelConfig(model=str(demo_model_dir), device="cpu"), DECODE,
                          system_prompt="You judge generated videos strictly.")
    fast, reference = custom.score(items, questions), custom.score_reference(items, questions)
    for f, r, d in zip(fast, reference, default):
        np.testing.assert_allclose(f, r, atol=1e-4, rtol=0)
        assert np.abs(f - d).max() > 1e-3


def test_items_without_questions_and_share_prefix_off(demo_model_dir):
    items = _items()[:3]
    questions = [[], QUESTIONS[:2], QUESTIONS[:1]]
    fast = _adapter(demo_model_dir).score(items, questions)
    assert fast[0].shape == (0,) and fast[1].shape == (2,) and fast[2].shape == (1,)
    plain = _adapter(demo_model_dir, share_prefix=False).score(items, questions)
    for f, p in zip(fast, plain):
        np.testing.assert_allclose(f, p, atol=1e-4, rtol=0)
    with pytest.raises(ValueError, match="question lists"):
        _adapter(demo_model_dir).score(items, questions[:2])


def test_answer_words_must_be_single_tokens(demo_model_dir):
    with pytest.raises(ValueError, match="exactly one token"):
        _adapter(demo_model_dir, yes_words=["Yes", "Absolutely"])


def test_unsupported_model_type_lists_the_supported_ones(tmp_path):
    (tmp_path / "config.json").write_text('{"model_type": "llama"}')
    with pytest.raises(ValueError, match="'llama', not an image-text-to-text model; supported model types: .*'qwen2_5_vl', 'qwen2_vl'"):
        load_adapter(ModelConfig(model=str(tmp_path)), DECODE)
    assert {"qwen2_vl", "qwen2_5_vl"} <= set(supported_model_types())


def test_media_input_validates_frames():
    with pytest.raises(ValueError, match="uint8"):
        MediaInput(np.zeros((1, 8, 8, 3), np.float32), "image")
    with pytest.raises(ValueError, match="one frame"):
        MediaInput(np.zeros((2, 8, 8, 3), np.uint8), "image")
    with pytest.raises(ValueError, match="media_type"):
        MediaInput(np.zeros((2, 8, 8, 3), np.uint8), "audio")
