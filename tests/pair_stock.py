"""An independent pairwise answer: the two-media prompt through the family's stock processor and one
`model(**inputs)` forward, none of vrscore's code (tests/family_stock.py does the same for one medium).

The chat template renders one user turn holding the first image, the second image and the question;
the answer prefix follows the generation prompt; each answer word is the last token of the
tokenizer's split of prefix + word; the word sets' probabilities are pooled (log-sum-exp over their
tokens) and renormalised together.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

import warnings

from tests.family_stock import ANSWER_PREFIX, image_processor_of, load


def stock_pair_prompt(tokenizer, family: str, question: str, prefix: str) -> str:
    content = [{"type": "image"}, {"type": "image"}, {"type": "text", "text": question}]
    prompt = tokenizer.apply_chat_template([{"role": "user", "content": content}], tokenize=False,
                                           add_generation_prompt=True)
    return prompt + ANSWER_PREFIX.get(family, "") + prefix


def stock_pair_distribution(model_dir: Path, first: np.ndarray, second: np.ndarray, question: str,
                            word_sets: list[list[str]], prefix: str) -> np.ndarray:
    """P(each word set), renormalised over the sets, after the prompt showing `first` then `second`
    (uint8 (1, H, W, 3) images), float32 forward."""
    model, tokenizer = load(str(model_dir))
    family = model.config.model_type
    prompt = stock_pair_prompt(tokenizer, family, question, prefix)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "__array__ implementation doesn't accept a copy", DeprecationWarning)
        inputs = dict(image_processor_of(str(model_dir))(
            images=[Image.fromarray(first[0]), Image.fromarray(second[0])], text=[prompt], return_tensors="pt"))
    inputs.pop("batch_num_images", None)  # LLaVA-OneVision's bookkeeping, not a model input
    head = tokenizer.encode(prefix, add_special_tokens=False)
    with torch.no_grad():
        logits = model(**inputs).logits[0, -1].float()
    pooled = []
    for words in word_sets:
        ids = []
        for w in words:
            whole = tokenizer.encode(prefix + w, add_special_tokens=False)
            assert whole[:-1] == head, (prefix, w, whole, head)  # the prompt ends where the word begins
            ids.append(whole[-1])
        pooled.append(torch.logsumexp(logits[ids], 0))
    return torch.softmax(torch.stack(pooled), 0).numpy()


def stock_qwen3_vl_video_pair(model_dir: Path, first: np.ndarray, second: np.ndarray, question: str,
                              word_sets: list[list[str]], prefix: str) -> np.ndarray:
    """The same for two Qwen3-VL videos (frames at 2 a second from 0), laid out by the rule of the
    processor Qwen3-VL was published with, one video after the other (tests/family_stock_video.py)."""
    from tests.family_stock_video import _qwen_style_video, qwen3_vl_prompt

    model, tokenizer = load(str(model_dir))
    content = [{"type": "video"}, {"type": "video"}, {"type": "text", "text": question}]
    prompt = tokenizer.apply_chat_template([{"role": "user", "content": content}], tokenize=False,
                                           add_generation_prompt=True) + prefix
    pixels, grids = [], []
    for frames in (first, second):
        values, (gt, gh, gw), merge, temporal = _qwen_style_video(model_dir, frames)
        seconds = [i / 2 for i in range(len(frames))]
        times = seconds + [seconds[-1]] * (-len(seconds) % temporal)
        stamps = [(times[i] + times[i + temporal - 1]) / 2 for i in range(0, len(times), temporal)]
        assert gh * gw // merge**2 > 1  # a block then never holds the template's own marker triple
        block = "".join(f"<{s:.1f} seconds><|vision_start|>" + "<|video_pad|>" * (gh * gw // merge**2)
                        + "<|vision_end|>" for s in stamps)
        prompt = qwen3_vl_prompt(prompt, block)  # the first marker triple left: this video's
        pixels.append(values)
        grids.append([gt, gh, gw])
    ids = torch.tensor([tokenizer.encode(prompt, add_special_tokens=False)])
    video_id = tokenizer.convert_tokens_to_ids("<|video_pad|>")
    inputs = {"input_ids": ids, "attention_mask": torch.ones_like(ids), "mm_token_type_ids": (ids == video_id).long() * 2,
              "pixel_values_videos": torch.cat(pixels), "video_grid_thw": torch.tensor(grids)}
    with torch.no_grad():
        logits = model(**inputs).logits[0, -1].float()
    pooled = [torch.logsumexp(logits[[tokenizer.encode(prefix + w, add_special_tokens=False)[-1] for w in words]], 0)
              for words in word_sets]
    return torch.softmax(torch.stack(pooled), 0).numpy()
