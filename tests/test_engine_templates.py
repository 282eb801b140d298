"""Chat templates and answer tokens: the checkpoint's template or a file named by
`model.chat_template`, refused when there is none; answer words with a leading space where the
generation prompt ends in text; a template that puts the question before the media."""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import AutoModelForImageTextToText, AutoTokenizer
from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

from actors.adapters import MediaInput, load_adapter
from actors.adapters.chat_template import ends_in_text
from schemas.job_config import DecodeConfig, ModelConfig

pytestmark = pytest.mark.equivalence  # run again on the lowest supported transformers (.ci/run)

DECODE = DecodeConfig(image_min_pixels=28 * 28, image_max_pixels=84 * 84)
# question first, media after it, generation prompt ending in text: "Assistant:"
TEXT_FIRST = (
    "{% for message in messages %}{% if message['role'] == 'user' %}User:"
    "{% for c in message['content'] %}{% if c['type'] == 'text' %} {{ c['text'] }}{% endif %}{% endfor %}"
    "{% for c in message['content'] %}{% if c['type'] == 'image' %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% endif %}{% endfor %}<|im_end|>\n{% endif %}{% endfor %}{% if add_generation_prompt %}Assistant:{% endif %}"
)
QUESTIONS = ["Is the image clear?", "Yes or no?", "Are the hands distorted?", "Is the sky blue?"]
IMAGE = np.random.default_rng(5).integers(0, 256, (56, 84, 3), dtype=np.uint8)


def _stock_p_yes(model_dir: Path, template: str, questions: list[str], words: tuple[list[str], list[str]]) -> np.ndarray:
    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForImageTextToText.from_pretrained(model_dir).eval()
    vision = Qwen2VLImageProcessorPil.from_pretrained(model_dir, min_pixels=DECODE.image_min_pixels,
                                                      max_pixels=DECODE.image_max_pixels)(images=[IMAGE], return_tensors="pt")
    n = int(vision["image_grid_thw"].prod()) // 4
    yes, no = ([tok.convert_tokens_to_ids(tok.tokenize(w))[0] for w in ws] for ws in words)
    out = []
    for q in questions:
        messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": q}]}]
        text = tok.apply_chat_template(messages, chat_template=template, tokenize=False, add_generation_prompt=True)
        ids = tok(text.replace("<|image_pad|>", "<|image_pad|>" * n), return_tensors="pt")["input_ids"]
        with torch.no_grad():
            logits = model(input_ids=ids, mm_token_type_ids=(ids == model.config.image_token_id).long(), **vision).logits[0, -1]
        out.append(torch.sigmoid(torch.logsumexp(logits[yes], 0) - torch.logsumexp(logits[no], 0)).item())
    return np.array(out)


def test_a_template_file_with_the_question_first_and_a_text_generation_prompt(tmp_path, demo_model_dir):
    template = tmp_path / "text_first.jinja"
    template.write_text(TEXT_FIRST)
    adapter = load_adapter(ModelConfig(model=str(demo_model_dir), device="cpu", chat_template=str(template)), DECODE)
    tok = adapter.tokenizer
    # "Assistant:" ends in text: the answer comes after a space
    assert tok.convert_ids_to_tokens(adapter.answer_ids) == ["ĠYes", "Ġyes", "ĠNo", "Ġno"]
    item = MediaInput(IMAGE[None], "image")
    fast = adapter.score([item], [QUESTIONS])[0]
    reference = adapter.score_reference([item], [QUESTIONS])[0]
    expected = _stock_p_yes(demo_model_dir, TEXT_FIRST, QUESTIONS, ([" Yes", " yes"], [" No", " no"]))
    np.testing.assert_allclose(reference, expected, atol=1e-5, rtol=0)
    # the media follows the question, so no prefix holds it: the fast path scores by the reference
    np.testing.assert_allclose(fast, expected, atol=1e-5, rtol=0)
    assert np.ptp(expected) > 1e-3
    # negative controls: the checkpoint's own template, and the bare answer words, answer differently
    own = load_adapter(ModelConfig(model=str(demo_model_dir), device="cpu"), DECODE).score([item], [QUESTIONS])[0]
    assert np.abs(own - fast).max() > 1e-3
    bare = load_adapter(ModelConfig(model=str(demo_model_dir), device="cpu", chat_template=str(template),
                                    answer_leading_space=False), DECODE)
    assert tok.convert_ids_to_tokens(bare.answer_ids) == ["Yes", "yes", "No", "no"]
    assert np.abs(bare.score([item], [QUESTIONS])[0] - fast).max() > 1e-3


def test_a_checkpoint_without_a_chat_template_is_refused(tmp_path, demo_model_dir):
    model = tmp_path / "no-template"
    shutil.copytree(demo_model_dir, model)
    (model / "chat_template.jinja").unlink()
    with pytest.raises(ValueError, match="has no chat template.*model.chat_template"):
        load_adapter(ModelConfig(model=str(model), device="cpu"), DECODE)


def test_generation_prompts_that_end_in_text(demo_model_dir):
    tok = AutoTokenizer.from_pretrained(demo_model_dir)
    assert ends_in_text("User: hi\nAssistant:", tok)
    assert not ends_in_text("<|im_start|>assistant\n", tok)
    assert not ends_in_text("<|im_start|>", tok)
    assert not ends_in_text("Assistant: ", tok)
