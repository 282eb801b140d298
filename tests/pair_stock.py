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
