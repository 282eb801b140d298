"""What a model family module supplies to the checklist engine (`actors/adapters/engine.py`).

The engine does everything that is the same for every vision-language model: loading, the
yes/no answer tokens, the chat template and prompt encoding (question text kept as data), the
reference path, the longest common prefix of an item's prompts, the prefix forward, the packed
suffix forward under a block-diagonal mask, the yes/no rows of the LM head (with
`final_logit_softcapping`), token-budget packing and p_yes pooling. A family module, one small
file in `actors/adapters/families/`, supplies only what differs between families:

- `media_types`: the media kinds the family takes ("image", "video").
- `resize_rule`: the name of the rule in `pipeline.resize_policy.RESIZE_RULES` the decode stage
  applies, so that frames arrive at the size the family's processor expects.
- `prepare_media(item)`: the media tensors of one item from its decoded frames (numpy arrays,
  any object the family likes), following the stock processor of the family.
- `media_content(media_type)`: the content entry the chat template gets for the media, usually
  `{"type": "image"}` / `{"type": "video"}`.
- `media_layout(media)`: (placeholder, expansion): the text the chat template renders for the
  media (e.g. `<|image_pad|>`) and the text the stock processor puts in its place: N copies of
  the image token, timestamps, frame markers, tiles. The engine replaces the template's single
  placeholder (never text inside the question or system prompt) with it. The placeholder may be
  a tuple of texts, in order of preference: the first the template renders is replaced (Qwen3-VL
  replaces the template's whole `<|vision_start|><|video_pad|><|vision_end|>`, or a bare
  `<|video_pad|>` where a template writes only that).
- `token_types(ids)`: extra model inputs that depend on the token ids, such as
  `{"mm_token_type_ids": ...}` or Gemma 3's `{"token_type_ids": ...}`, for a (rows, length) batch.
- `media_kwargs(media, device, dtype)`: several items' prepared media batched into the keyword
  arguments of one forward, in item order (the order the model consumes them).
- `batch_key(media)` (optional): items whose keys differ never share a forward (GLM-4.1V's model
  cannot take images and videos together); without it, any mix of items shares forwards.
- `position_rule`: "1d" (positions 0..n-1, the suffix continues at the prefix length) or
  "mrope" (the model's own `get_rope_index` on the prefix; the suffix continues at its maximum
  + 1). Text-only suffixes take plain 2D position ids either way.

A family is constructed as `Family(checkpoint, config, tokenizer, decode)`: `checkpoint` is the
model id or path (to read its preprocessor config), `config` the transformers config, `decode`
the `DecodeConfig`. It should check its settings there, before the weights load. Families are
registered by `config.model_type` in `actors/adapters/families/__init__.py`.
"""
from __future__ import annotations

from collections.abc import Hashable, Sequence
from typing import Any, Literal, Protocol

import numpy as np
import torch

from actors.adapters.base import MediaInput

PositionRule = Literal["1d", "mrope"]


class Family(Protocol):
    """One model family's inputs; see the module docstring."""

    media_types: tuple[str, ...]
    resize_rule: str
    position_rule: PositionRule

    def prepare_media(self, item: MediaInput) -> Any: ...

    def media_content(self, media_type: str) -> dict: ...

    def media_layout(self, media: Any) -> tuple[str | tuple[str, ...], str]: ...

    def token_types(self, ids: torch.Tensor) -> dict[str, torch.Tensor]: ...

    def media_kwargs(self, media: Sequence[Any], device: torch.device, dtype: torch.dtype) -> dict[str, torch.Tensor]: ...

    def batch_key(self, media: Any) -> Hashable: ...


def as_tensor(array: np.ndarray, device: torch.device, dtype: torch.dtype | None = None) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(array)).to(device=device, dtype=dtype)


def normalised_frames(frames: np.ndarray, height: int, width: int, cfg: dict) -> np.ndarray:
    """(T, 3, height, width) float32 frames as a stock image processor makes them: resized with
    its resample filter where the size differs, rescaled, normalised by its mean and std."""
    from PIL import Image

    if frames.shape[1:3] != (height, width):
        frames = np.stack([np.asarray(Image.fromarray(f).resize((width, height), cfg["resample"])) for f in frames])
    x = frames.astype(np.float32) * np.float32(cfg["rescale_factor"])
    x = (x - np.asarray(cfg["image_mean"], np.float32)) / np.asarray(cfg["image_std"], np.float32)
    return x.transpose(0, 3, 1, 2)
