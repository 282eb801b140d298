"""InternVL (transformers-native `-hf` checkpoints): square tiles, `<IMG_CONTEXT>` tokens, 1D positions.

An image goes through the stock PIL image processor with `crop_to_patches=True`, as
InternVLProcessor asks: a grid of tiles chosen by aspect ratio plus a thumbnail, each
`image_seq_length` context tokens, all between one `<img>` and `</img>`. A video is one tile per
frame (frames resized to the tile, as the stock video processor does), each on a `FrameK: ` line
with its own `<img>`..`</img>`. The language model sees tiles and frames alike in `pixel_values`.
"""
from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from transformers.models.got_ocr2.image_processing_pil_got_ocr2 import (
    GotOcr2ImageProcessorPil,
)
from transformers.utils import cached_file

from actors.adapters.base import MediaInput
from schemas.job_config import DecodeConfig


@dataclass(frozen=True, eq=False)
class InternVLMedia:
    item: MediaInput
    pixel_values: np.ndarray  # (tiles or frames, 3, tile, tile) float32


def _json(checkpoint: str, name: str) -> dict | None:
    path = cached_file(checkpoint, name, _raise_exceptions_for_missing_entries=False)
    return None if path is None else json.loads(Path(path).read_text())


class InternVLFamily:
    """Family module of `internvl` (see `actors/adapters/family.py`)."""

    # media kinds of which one prompt may show two (a pairwise question: tests/test_judge_families.py)
    two_media = ("image", "video")
    media_types = ("image", "video")
    resize_rule = "fit_within"  # the processor tiles the source image itself
    position_rule = "1d"

    def __init__(self, checkpoint: str, config, tokenizer, decode: DecodeConfig):
        processor = _json(checkpoint, "processor_config.json") or {}
        self.seq_length = processor.get("image_seq_length", config.image_seq_length)
        if self.seq_length != config.image_seq_length:
            raise ValueError(f"{checkpoint}: processor image_seq_length {self.seq_length} != model's "
                             f"{config.image_seq_length}")
        names = ("start_image_token", "end_image_token", "context_image_token", "video_token")
        missing = [n for n in names if getattr(tokenizer, n, None) is None]
        if missing:
            raise ValueError(f"{checkpoint}: the tokenizer names no {missing} (InternVL's processor reads them)")
        self.start, self.end, self.context, self.video = (getattr(tokenizer, n) for n in names)
        self.images = GotOcr2ImageProcessorPil.from_pretrained(checkpoint)
        # the video processor's settings (its own file when the checkpoint has one), on the PIL path
        video = _json(checkpoint, "video_preprocessor_config.json") or {}
        keys = ("size", "image_mean", "image_std", "resample", "rescale_factor")
        self.frames = GotOcr2ImageProcessorPil(**{**{k: getattr(self.images, k) for k in keys},
                                                  **{k: video[k] for k in keys if k in video}})

    def prepare_media(self, item: MediaInput) -> InternVLMedia:
        if item.media_type == "image":
            out = self.images(images=[item.frames[0]], crop_to_patches=True, return_tensors="np")
        else:
            out = self.frames(images=list(item.frames), crop_to_patches=False, return_tensors="np")
        return InternVLMedia(item, out["pixel_values"].astype(np.float32))

    def media_content(self, media_type: str) -> dict:
        return {"type": media_type}

    def media_layout(self, media: InternVLMedia) -> tuple[str, str]:
        n = len(media.pixel_values)
        if media.item.media_type == "image":  # processing_internvl.replace_image_token
            return self.context, f"{self.start}{self.context * self.seq_length * n}{self.end}"
        tile = f"{self.start}{self.context * self.seq_length}{self.end}"  # replace_video_token
        return self.video, "\n".join(f"Frame{i + 1}: {tile}" for i in range(n))

    def token_types(self, ids: torch.Tensor) -> dict[str, torch.Tensor]:
        return {}  # InternVL finds its media by the context token id alone

    def media_kwargs(self, media: Sequence[InternVLMedia], device: torch.device,
                     dtype: torch.dtype) -> dict[str, torch.Tensor]:
        pixels = np.concatenate([m.pixel_values for m in media])
        return {"pixel_values": torch.from_numpy(pixels).to(device, dtype)}


FAMILY = InternVLFamily
