"""Gemma 3 (images only): one fixed-size view, soft tokens seen bidirectionally, 1D positions.

An image goes through the stock PIL image processor (and its Pan-and-Scan crops when the
checkpoint turns them on); Gemma3Processor writes each view as `\\n\\n<start_of_image>` +
`mm_tokens_per_image` soft tokens + `<end_of_image>\\n\\n` in place of the template's
`<start_of_image>`. `token_type_ids` (1 on soft tokens) are required: the model lets the tokens of
one image attend to each other both ways, and without them it silently attends causally.
Sliding-window layers are the engine's (masks per layer type on true positions).
"""
from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from transformers.models.gemma3.image_processing_pil_gemma3 import (
    Gemma3ImageProcessorPil,
)
from transformers.utils import cached_file

from actors.adapters.base import MediaInput
from schemas.job_config import DecodeConfig


@dataclass(frozen=True, eq=False)
class Gemma3Media:
    item: MediaInput
    pixel_values: np.ndarray  # (1 + crops, 3, S, S)
    num_crops: int


class Gemma3Family:
    """Family module of `gemma3` (see `actors/adapters/family.py`)."""

    # media kinds of which one prompt may show two (a pairwise question: tests/test_judge_families.py)
    two_media = ("image",)
    media_types = ("image",)
    resize_rule = "fit_within"  # the processor resizes to its square itself
    position_rule = "1d"

    def __init__(self, checkpoint: str, config, tokenizer, decode: DecodeConfig):
        path = cached_file(checkpoint, "processor_config.json", _raise_exceptions_for_missing_entries=False)
        seq = json.loads(Path(path).read_text()).get("image_seq_length") if path else None
        self.seq = seq or config.mm_tokens_per_image
        if self.seq != config.mm_tokens_per_image:
            raise ValueError(f"{checkpoint}: processor image_seq_length {self.seq} != the model's "
                             f"mm_tokens_per_image {config.mm_tokens_per_image}")
        self.boi = tokenizer.convert_ids_to_tokens(config.boi_token_index)
        self.eoi = tokenizer.convert_ids_to_tokens(config.eoi_token_index)
        self.soft = tokenizer.convert_ids_to_tokens(config.image_token_index)
        self.soft_id = config.image_token_index
        self.images = Gemma3ImageProcessorPil.from_pretrained(checkpoint)

    def prepare_media(self, item: MediaInput) -> Gemma3Media:
        out = self.images(images=[item.frames[0]], return_tensors="np")
        return Gemma3Media(item, out["pixel_values"].astype(np.float32), int(np.ravel(out["num_crops"])[0]))

    def media_content(self, media_type: str) -> dict:
        return {"type": media_type}

    def media_layout(self, media: Gemma3Media) -> tuple[str, str]:
        full = f"\n\n{self.boi}{self.soft * self.seq}{self.eoi}\n\n"  # processing_gemma3.full_image_sequence
        if not media.num_crops:
            return self.boi, full
        return self.boi, (f"Here is the original image {full} and here are some crops to help you see better "
                          + " ".join([full] * media.num_crops))

    def token_types(self, ids: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"token_type_ids": (ids == self.soft_id).long()}

    def media_kwargs(self, media: Sequence[Gemma3Media], device: torch.device,
                     dtype: torch.dtype) -> dict[str, torch.Tensor]:
        pixels = np.concatenate([m.pixel_values for m in media])
        return {"pixel_values": torch.from_numpy(pixels).to(device, dtype)}


FAMILY = Gemma3Family
