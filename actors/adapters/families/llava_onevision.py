"""LLaVA-OneVision (llava-hf checkpoints): AnyRes image tiles, pooled video frames, 1D positions.

An image goes through the stock PIL image processor (a base tile plus the AnyRes grid chosen from
`image_grid_pinpoints`); its `<image>` count follows LlavaOnevisionProcessor: the base tile's
tokens, plus the grid's features with the padding cut off and one newline per row, shrunk when
over `anyres_max_N` tiles. A video is its frames resized to the tile, each 2x2-pooled by the model,
plus one newline: T * ceil(sqrt(tokens) / 2)^2 + 1 `<video>` tokens.

Videos of different frame counts cannot share one forward (the model stacks the videos of a
batch), so `media_kwargs` refuses them; equal counts (uniform:N sampling) batch fine.
"""
from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from transformers.image_processing_utils import select_best_resolution
from transformers.models.llava_onevision.image_processing_pil_llava_onevision import (
    LlavaOnevisionImageProcessorPil,
)
from transformers.utils import cached_file

from actors.adapters.base import MediaInput
from actors.adapters.family import normalised_frames
from schemas.job_config import DecodeConfig


@dataclass(frozen=True, eq=False)
class OneVisionMedia:
    item: MediaInput
    pixel_values: np.ndarray  # image: (tiles, 3, S, S); video: (frames, 3, S, S)
    num_tokens: int


def _json(checkpoint: str, name: str) -> dict:
    path = cached_file(checkpoint, name, _raise_exceptions_for_missing_entries=False)
    return {} if path is None else json.loads(Path(path).read_text())


def unpadded_features(height: int, width: int, patches: int, scale_h: int, scale_w: int,
                      max_tiles: int) -> tuple[int, int]:
    """(features, newlines) of the AnyRes grid: LlavaOnevisionProcessor._get_unpadded_features."""
    current_h, current_w = patches * scale_h, patches * scale_w
    if width / height > current_w / current_h:
        new_h = int(round(height * (current_w / width), 7))
        current_h -= (current_h - new_h) // 2 * 2
    else:
        new_w = int(round(width * (current_h / height), 7))
        current_w -= (current_w - new_w) // 2 * 2
    features, newlines = current_h * current_w, current_h
    ratio = math.sqrt(current_h * current_w / (max_tiles * patches**2))
    if ratio > 1.1:
        features, newlines = int(current_h // ratio) * int(current_w // ratio), int(current_h // ratio)
    return features, newlines


class LlavaOnevisionFamily:
    """Family module of `llava_onevision` (see `actors/adapters/family.py`)."""

    # media kinds of which one prompt may show two (a pairwise question: tests/test_judge_families.py)
    two_media = ("image", "video")
    media_types = ("image", "video")
    resize_rule = "fit_within"  # the processor tiles the source image itself
    position_rule = "1d"

    def __init__(self, checkpoint: str, config, tokenizer, decode: DecodeConfig):
        processor = _json(checkpoint, "processor_config.json")
        self.strategy = processor.get("vision_feature_select_strategy", config.vision_feature_select_strategy)
        self.aspect = processor.get("vision_aspect_ratio", config.vision_aspect_ratio)
        tile, patch = config.vision_config.image_size, config.vision_config.patch_size
        self.base_tokens = processor.get("num_image_tokens", (tile // patch) ** 2)
        self.images = LlavaOnevisionImageProcessorPil.from_pretrained(checkpoint)
        video = _json(checkpoint, "video_preprocessor_config.json")
        self.video = {k: video.get(k, getattr(self.images, k)) for k in
                      ("size", "image_mean", "image_std", "rescale_factor", "resample")}
        self.placeholders = {"image": tokenizer.convert_ids_to_tokens(config.image_token_index),
                             "video": tokenizer.convert_ids_to_tokens(config.video_token_index)}

    def _image_tokens(self, height: int, width: int, tile: int) -> int:
        """LlavaOnevisionProcessor._get_number_of_features for one image alone in its sample."""
        best_h, best_w = select_best_resolution([height, width], self.images.image_grid_pinpoints)
        patches = int(math.sqrt(self.base_tokens))
        features, newlines = unpadded_features(height, width, patches, best_h // tile, best_w // tile,
                                               int(self.aspect.removeprefix("anyres_max_")))
        return features + newlines + self.base_tokens - (self.strategy == "default")

    def _video_frames(self, frames: np.ndarray) -> np.ndarray:
        v = self.video
        return normalised_frames(frames, v["size"]["height"], v["size"]["width"], v)

    def prepare_media(self, item: MediaInput) -> OneVisionMedia:
        if item.media_type == "image":
            out = self.images(images=[item.frames[0]], return_tensors="np")
            pixels = out["pixel_values"][0].astype(np.float32)
            return OneVisionMedia(item, pixels, self._image_tokens(*item.frames.shape[1:3], pixels.shape[-1]))
        pooled = math.ceil(int(math.sqrt(self.base_tokens)) / 2)
        return OneVisionMedia(item, self._video_frames(item.frames), len(item.frames) * pooled**2 + 1)

    def media_content(self, media_type: str) -> dict:
        return {"type": media_type}

    def media_layout(self, media: OneVisionMedia) -> tuple[str, str]:
        placeholder = self.placeholders[media.item.media_type]
        return placeholder, placeholder * media.num_tokens

    def token_types(self, ids: torch.Tensor) -> dict[str, torch.Tensor]:
        return {}  # the model finds media by the placeholder ids

    def media_kwargs(self, media: Sequence[OneVisionMedia], device: torch.device,
                     dtype: torch.dtype) -> dict[str, torch.Tensor]:
        kwargs: dict[str, torch.Tensor] = {}
        images = [m for m in media if m.item.media_type == "image"]
        if images:  # padded to the most tiles; image_sizes tells the model how many are real
            most = max(len(m.pixel_values) for m in images)
            pixels = np.zeros((len(images), most, *images[0].pixel_values.shape[1:]), np.float32)
            for row, m in enumerate(images):
                pixels[row, :len(m.pixel_values)] = m.pixel_values
            kwargs["pixel_values"] = torch.from_numpy(pixels).to(device, dtype)
            kwargs["image_sizes"] = torch.tensor([m.item.frames.shape[1:3] for m in images], device=device)
            kwargs["batch_num_images"] = torch.ones(len(images), dtype=torch.long, device=device)
        videos = [m for m in media if m.item.media_type == "video"]
        if videos:
            counts = {len(m.pixel_values) for m in videos}
            if len(counts) > 1:
                raise ValueError(f"LLaVA-OneVision videos of different frame counts {sorted(counts)} cannot share "
                                 "a forward; sample a fixed number of frames (decode.frames 'uniform:N') or score "
                                 "them in separate batches")
            pixels = np.stack([m.pixel_values for m in videos])
            kwargs["pixel_values_videos"] = torch.from_numpy(pixels).to(device, dtype)
        return kwargs


FAMILY = LlavaOnevisionFamily
