"""An independent p_yes per model family, built the way each family's stock processor builds inputs.

None of vrscore's adapter code is used: this is what the adapters are checked against. Images go
through the family's stock processor (PIL image processor, placeholder expansion, token types). Videos cannot
(every stock video processor needs torchvision, absent here), so their inputs are laid out by hand
following the stock processor code (`family_stock_video.py`). The answer is read from
`model(**inputs).logits[0, -1]` and pooled as sigmoid(logsumexp(yes logits) - logsumexp(no logits))
over "Yes"/"yes" and "No"/"no", each resolved to a single token (with a leading space where the
template leaves the answer after one); the answer mass is torch.softmax over those whole logits,
summed over the same four tokens.
"""
from __future__ import annotations

import inspect
import json
import warnings
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
import transformers
import pytest
from packaging.version import Version
from PIL import Image
from transformers import AutoModelForImageTextToText, AutoTokenizer

from tests.family_stock_video import VIDEO_BUILDERS

YES_WORDS, NO_WORDS = ("Yes", "yes"), ("No", "no")

# SmolVLM/Idefics3 are verified on transformers 5.24 only: on 5.5.4 (the declared lowest) the
# image processor registry cannot read the tiny SmolVLM/Idefics3 checkpoints (measured).
SMOLVLM_NEEDS = Version("5.24")


def verified_family(family: str):
    """`family` as a pytest parameter, skipped on a transformers its stock processor cannot be read on."""
    return pytest.param(family, marks=pytest.mark.skipif(
        family in ("smolvlm", "idefics3") and Version(transformers.__version__) < SMOLVLM_NEEDS,
        reason=f"{family} is verified on transformers >= {SMOLVLM_NEEDS} only"))


@lru_cache(maxsize=4)
def load(model_dir: str):
    model = AutoModelForImageTextToText.from_pretrained(model_dir, dtype=torch.float32).eval()
    return model, AutoTokenizer.from_pretrained(model_dir)


# Families whose chat template writes a system message's content as it is (a list of parts would
# come out as its repr); the others' templates read text parts (LLaVA-OneVision's and Idefics3's
# render a string content as nothing).
SYSTEM_AS_STRING = frozenset({"glm4v"})


# Where each released checkpoint writes its answer, as its authors document it (not vrscore's code):
# Qwen3.5 answers at once when rendered with enable_thinking=False; GLM-4.1V-9B-Thinking writes
# `<think>...</think><answer>...` (its report, arXiv 2507.01006), so its answer follows that opening.
TEMPLATE_KWARGS = {"qwen3_5": {"enable_thinking": False}}
ANSWER_PREFIX = {"glm4v": "<think></think><answer>"}


def render(tokenizer, media: str, question: str, system: str | None = None, family: str | None = None,
           template_kwargs: dict | None = None, answer_prefix: str | None = None) -> str:
    """The checkpoint's chat template on one user turn: the media item, then the question; after a
    system message `system` when given (`family`: the model type, which says how to write it).
    `template_kwargs` go to the rendering and `answer_prefix` follows it (None: the family's own,
    TEMPLATE_KWARGS and ANSWER_PREFIX)."""
    messages = [{"role": "user", "content": [{"type": media}, {"type": "text", "text": question}]}]
    if system is not None:
        content = system if family in SYSTEM_AS_STRING else [{"type": "text", "text": system}]
        messages.insert(0, {"role": "system", "content": content})
    kwargs = TEMPLATE_KWARGS.get(family, {}) if template_kwargs is None else template_kwargs
    prefix = ANSWER_PREFIX.get(family, "") if answer_prefix is None else answer_prefix
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True, **kwargs) + prefix


def answer_ids(tokenizer, prompt: str, words: tuple[str, ...]) -> list[int]:
    """Each word as one token, with a leading space when the prompt does not end in whitespace."""
    prefix = "" if prompt[-1].isspace() else " "
    ids = [tokenizer.encode(prefix + w, add_special_tokens=False) for w in words]
    if any(len(i) != 1 for i in ids):
        raise ValueError(f"answer words {words} are not single tokens: {ids}")
    return [i[0] for i in ids]


# ---- images: the family's stock processor, less its video processor (which needs torchvision) ----

@lru_cache(maxsize=4)
def image_processor_of(model_dir: str):
    """The checkpoint's own processor class, built without a video processor.

    Any processor whose __init__ takes a video processor cannot be built without torchvision; a
    subclass whose get_attributes() leaves it out builds and runs the stock image path unchanged.
    """
    name = json.loads((Path(model_dir) / "preprocessor_config.json").read_text())["processor_class"]
    base = getattr(transformers, name)
    attributes = [a for a in base.get_attributes() if a != "video_processor"]
    image_only = type(f"{name}ImageOnly", (base,), {"get_attributes": classmethod(lambda cls: attributes)})
    video_param = inspect.signature(base.__init__).parameters.get("video_processor")
    required = video_param is not None and video_param.default is inspect.Parameter.empty
    return image_only.from_pretrained(model_dir, **({"video_processor": None} if required else {}))


def _image_inputs(model_dir: Path, prompt: str, image: Image.Image) -> dict:
    processor = image_processor_of(str(model_dir))
    with warnings.catch_warnings():
        # Glm4vProcessor.create_mm_token_type_ids calls np.array on a tensor row (transformers 5.24)
        warnings.filterwarnings("ignore", "__array__ implementation doesn't accept a copy", DeprecationWarning)
        inputs = processor(images=[image], text=[prompt], return_tensors="pt")
    inputs.pop("batch_num_images", None)  # LLaVA-OneVision's bookkeeping, not a model input
    return dict(inputs)


def stock_inputs(model_dir: Path, frames: np.ndarray, media: str, question: str,
                 seconds: list[float] | None = None, duration: float | None = None,
                 system: str | None = None, template_kwargs: dict | None = None,
                 answer_prefix: str | None = None) -> tuple[dict, str]:
    """(model inputs, rendered prompt) for one item and one question (after system prompt `system`;
    template options and answer prefix as `render` takes them)."""
    model, tokenizer = load(str(model_dir))
    family = model.config.model_type
    prompt = render(tokenizer, media, question, system, family, template_kwargs, answer_prefix)
    if media == "image":
        if len(frames) != 1:
            raise ValueError("an image is one frame")
        return _image_inputs(model_dir, prompt, Image.fromarray(frames[0])), prompt
    if seconds is None:  # frames sampled at 2 fps, the stock processors' default rate
        seconds = [i / 2 for i in range(len(frames))]
    return VIDEO_BUILDERS[family](model_dir, tokenizer, prompt, frames, seconds, duration), prompt


def stock_answer(model_dir: Path, frames: np.ndarray, media: str, question: str,
                 seconds: list[float] | None = None, duration: float | None = None,
                 system: str | None = None, template_kwargs: dict | None = None,
                 answer_prefix: str | None = None) -> tuple[float, float]:
    """(p_yes, answer mass) for `question` about `frames` (uint8 T,H,W,3; T == 1 for an image).

    `seconds`: each frame's time in the video (default: 2 frames a second from 0); `duration`: the
    video's length, which SmolVLM writes into its prompt (default: the last frame's time);
    `system`: a system prompt (default: none); `template_kwargs`, `answer_prefix`: see `render`.
    """
    inputs, prompt = stock_inputs(model_dir, frames, media, question, seconds, duration, system,
                                  template_kwargs, answer_prefix)
    return p_yes_of(model_dir, inputs, prompt)


def p_yes_of(model_dir: Path, inputs: dict, prompt: str) -> float:
    """p_yes of the model's next token after `inputs` (built from the rendered `prompt`)."""
    model, tokenizer = load(str(model_dir))
    with torch.no_grad():
        logits = model(**inputs).logits[0, -1].float()
    yes_ids, no_ids = answer_ids(tokenizer, prompt, YES_WORDS), answer_ids(tokenizer, prompt, NO_WORDS)
    yes, no = torch.logsumexp(logits[yes_ids], 0), torch.logsumexp(logits[no_ids], 0)
    mass = torch.softmax(logits.double(), 0)[yes_ids + no_ids].sum()
    return torch.sigmoid(yes - no).item(), mass.item()


def stock_p_yes(model_dir: Path, frames: np.ndarray, media: str, question: str,
                seconds: list[float] | None = None, duration: float | None = None,
                system: str | None = None, template_kwargs: dict | None = None,
                answer_prefix: str | None = None) -> float:
    """p_yes of `stock_answer`."""
    return stock_answer(model_dir, frames, media, question, seconds, duration, system, template_kwargs,
                        answer_prefix)[0]


def case_forms(word: str) -> tuple[str, ...]:
    """A rating level's forms, as the issue pools them: as written, lower case, capitalised."""
    return tuple(dict.fromkeys([word, word.lower(), word.capitalize()]))


def stock_distribution(model_dir: Path, frames: np.ndarray, media: str, question: str,
                       words: list[tuple[str, ...]]) -> tuple[np.ndarray, float]:
    """(P(each group of words) under torch.softmax over the whole next-token logits, its sum) for
    `question` about `frames`: the stock forward of `stock_inputs`, float64 softmax."""
    inputs, prompt = stock_inputs(model_dir, frames, media, question)
    model, tokenizer = load(str(model_dir))
    with torch.no_grad():
        probs = torch.softmax(model(**inputs).logits[0, -1].double(), 0)
    masses = np.array([probs[answer_ids(tokenizer, prompt, group)].sum().item() for group in words])
    return masses, float(masses.sum())


def stock_absolute(model_dir: Path, frames: np.ndarray, media: str, question: str) -> float:
    """VQAScore's readout: P("Yes" or "yes") under the softmax over the whole vocabulary."""
    return float(stock_distribution(model_dir, frames, media, question, [YES_WORDS])[0][0])


def stock_rating(model_dir: Path, frames: np.ndarray, media: str, question: str, levels: list[str],
                 values: list[float]) -> tuple[float, np.ndarray, float]:
    """(expected value, level probabilities, mass on the levels): each level's whole-vocabulary
    probability summed over its case forms, renormalised over the levels."""
    masses, total = stock_distribution(model_dir, frames, media, question, [case_forms(w) for w in levels])
    probs = masses / total
    return float(probs @ np.asarray(values, np.float64)), probs, total
