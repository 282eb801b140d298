"""An independent p_yes: one stock transformers forward per question, none of vrscore's code.

The tokenizer's chat template, transformers' PIL image processor on the source image (it
resizes it itself), `model(**inputs).logits[0, -1]`, and the same yes/no pooling the
adapter documents: softmax over log-sum-exp("Yes", "yes") and log-sum-exp("No", "no"); the
answer mass is `torch.softmax` over the whole logits, summed over those four tokens.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image
from transformers import AutoModelForImageTextToText, AutoTokenizer
from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil


def stock_prompt_ids(tok, text: str, n_media: int, text_as_data: bool = False) -> torch.Tensor:
    """(1, L) ids of the one-image chat prompt. `text_as_data`: the text is tokenized with
    `split_special_tokens=True` between the template's pieces, so that no control token comes of it;
    otherwise the whole rendered prompt is tokenized as a stock processor does."""
    marker = "\ue000TEXT\ue001"
    messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": marker}]}]
    prompt = tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    prompt = prompt.replace("<|image_pad|>", "<|image_pad|>" * n_media)
    if not text_as_data:
        return tok(prompt.replace(marker, text), return_tensors="pt")["input_ids"]
    before, after = prompt.split(marker)
    ids = (tok.encode(before, add_special_tokens=False)
           + tok.encode(text, add_special_tokens=False, split_special_tokens=True)
           + tok.encode(after, add_special_tokens=False))
    return torch.tensor([ids])


def stock_image_p_yes(model_dir: Path, image: Image.Image, texts: list[str],
                      min_pixels: int, max_pixels: int, text_as_data: bool = False) -> np.ndarray:
    return stock_image_answers(model_dir, image, texts, min_pixels, max_pixels, text_as_data)[0]


def stock_image_answers(model_dir: Path, image: Image.Image, texts: list[str], min_pixels: int, max_pixels: int,
                        text_as_data: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """(p_yes, answer mass) per text."""
    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForImageTextToText.from_pretrained(model_dir, dtype=torch.float32).eval()
    proc = Qwen2VLImageProcessorPil.from_pretrained(model_dir, min_pixels=min_pixels, max_pixels=max_pixels)
    vision = proc(images=[image.convert("RGB")], return_tensors="pt")
    n_media = int(vision["image_grid_thw"].prod()) // proc.merge_size**2
    yes = [tok.convert_tokens_to_ids(w) for w in ("Yes", "yes")]
    no = [tok.convert_tokens_to_ids(w) for w in ("No", "no")]
    image_id = tok.convert_tokens_to_ids("<|image_pad|>")
    out, mass = [], []
    for text in texts:
        ids = stock_prompt_ids(tok, text, n_media, text_as_data)
        with torch.no_grad():
            logits = model(input_ids=ids, attention_mask=torch.ones_like(ids),
                           mm_token_type_ids=(ids == image_id).long(), **vision).logits[0, -1]
        pair = torch.stack([torch.logsumexp(logits[yes], 0), torch.logsumexp(logits[no], 0)])
        out.append(torch.softmax(pair, 0)[0].item())
        mass.append(torch.softmax(logits.double(), 0)[yes + no].sum().item())
    return np.array(out), np.array(mass)
