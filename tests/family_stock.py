"""An independent p_yes per model family, built the way each family's stock processor builds inputs.

None of vrscore's adapter code is used: this is what the adapters are checked against. Images go
through the family's stock PIL image processor and its own placeholder expansion. Videos cannot
(every stock video processor needs torchvision, absent here), so their inputs are laid out by hand
following the stock processor code (`family_stock_video.py`). The answer is read from
`model(**inputs).logits[0, -1]` and pooled as sigmoid(logsumexp(yes logits) - logsumexp(no logits))
over "Yes"/"yes" and "No"/"no", each resolved to a single token (with a leading space where the
template leaves the answer after one).
"""
from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from transformers import AutoModelForImageTextToText, AutoTokenizer

from tests.family_stock_video import VIDEO_BUILDERS

YES_WORDS, NO_WORDS = ("Yes", "yes"), ("No", "no")


@lru_cache(maxsize=4)
def load(model_dir: str):
    model = AutoModelForImageTextToText.from_pretrained(model_dir, dtype=torch.float32).eval()
    return model, AutoTokenizer.from_pretrained(model_dir)


def render(tokenizer, media: str, question: str) -> str:
    """The checkpoint's chat template on one user turn: the media item, then the question."""
    messages = [{"role": "user", "content": [{"type": media}, {"type": "text", "text": question}]}]
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)


def answer_ids(tokenizer, prompt: str, words: tuple[str, ...]) -> list[int]:
    """Each word as one token, with a leading space when the prompt does not end in whitespace."""
    prefix = "" if prompt[-1].isspace() else " "
    ids = [tokenizer.encode(prefix + w, add_special_tokens=False) for w in words]
    if any(len(i) != 1 for i in ids):
        raise ValueError(f"answer words {words} are not single tokens: {ids}")
    return [i[0] for i in ids]


def _tokenize(tokenizer, text: str) -> dict[str, torch.Tensor]:
    ids = torch.tensor([tokenizer.encode(text, add_special_tokens=False)])
    return {"input_ids": ids, "attention_mask": torch.ones_like(ids)}


# ---- images: the stock PIL image processor and the processor's expansion rule ----

def _qwen_vl_image(model_dir, tokenizer, prompt, image):
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

    proc = Qwen2VLImageProcessorPil.from_pretrained(model_dir)
    vision = proc(images=[image], return_tensors="pt")
    n = int(vision["image_grid_thw"].prod()) // proc.merge_size**2
    inputs = _tokenize(tokenizer, prompt.replace("<|image_pad|>", "<|image_pad|>" * n))
    image_id = tokenizer.convert_tokens_to_ids("<|image_pad|>")
    inputs["mm_token_type_ids"] = (inputs["input_ids"] == image_id).long()
    return {**inputs, **vision}


def _glm4v_image(model_dir, tokenizer, prompt, image):
    from transformers.models.glm4v.image_processing_pil_glm4v import Glm4vImageProcessorPil

    proc = Glm4vImageProcessorPil.from_pretrained(model_dir)
    vision = proc(images=[image], return_tensors="pt")
    n = int(vision["image_grid_thw"].prod()) // proc.merge_size**2
    inputs = _tokenize(tokenizer, prompt.replace("<|image|>", "<|image|>" * n))
    # processing_glm4v.create_mm_token_type_ids: 1 for image tokens outside the video markers
    inputs["mm_token_type_ids"] = (inputs["input_ids"] == tokenizer.convert_tokens_to_ids("<|image|>")).long()
    return {**inputs, **vision}


def _internvl_image(model_dir, tokenizer, prompt, image):
    from transformers.models.got_ocr2.image_processing_pil_got_ocr2 import GotOcr2ImageProcessorPil

    proc = GotOcr2ImageProcessorPil.from_pretrained(model_dir)
    # InternVLProcessor's images_kwargs default: crop_to_patches=True (tiles plus a thumbnail)
    vision = proc(images=[image], crop_to_patches=True, return_tensors="pt")
    seq = json.loads((Path(model_dir) / "processor_config.json").read_text())["image_seq_length"]
    context = tokenizer.context_image_token * seq * int(vision.pop("num_patches")[0])
    block = f"{tokenizer.start_image_token}{context}{tokenizer.end_image_token}"
    return {**_tokenize(tokenizer, prompt.replace(tokenizer.context_image_token, block, 1)), **vision}


IMAGE_BUILDERS = {
    "qwen3_vl": _qwen_vl_image, "qwen3_vl_moe": _qwen_vl_image, "qwen3_5": _qwen_vl_image,
    "glm4v": _glm4v_image, "internvl": _internvl_image,
}


def stock_inputs(model_dir: Path, frames: np.ndarray, media: str, question: str,
                 seconds: list[float] | None = None) -> tuple[dict, str]:
    """(model inputs, rendered prompt) for one item and one question."""
    model, tokenizer = load(str(model_dir))
    family = model.config.model_type
    prompt = render(tokenizer, media, question)
    if media == "image":
        if len(frames) != 1:
            raise ValueError("an image is one frame")
        return IMAGE_BUILDERS[family](model_dir, tokenizer, prompt, Image.fromarray(frames[0])), prompt
    if seconds is None:  # frames sampled at 2 fps, the stock processors' default rate
        seconds = [i / 2 for i in range(len(frames))]
    return VIDEO_BUILDERS[family](model_dir, tokenizer, prompt, frames, seconds), prompt


def stock_p_yes(model_dir: Path, frames: np.ndarray, media: str, question: str,
                seconds: list[float] | None = None) -> float:
    """p_yes for `question` about `frames` (uint8 T,H,W,3; T == 1 for an image)."""
    model, tokenizer = load(str(model_dir))
    inputs, prompt = stock_inputs(model_dir, frames, media, question, seconds)
    with torch.no_grad():
        logits = model(**inputs).logits[0, -1].float()
    yes = torch.logsumexp(logits[answer_ids(tokenizer, prompt, YES_WORDS)], 0)
    no = torch.logsumexp(logits[answer_ids(tokenizer, prompt, NO_WORDS)], 0)
    return torch.sigmoid(yes - no).item()
