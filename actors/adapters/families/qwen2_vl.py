"""Qwen2-VL and Qwen2.5-VL: smart_resize frames, patches with M-RoPE positions from the model's
`get_rope_index`, one `<|image_pad|>` / `<|video_pad|>` per merged patch.

Pixels are prepared in numpy (`actors/adapters/qwen2_vl_inputs.py`), reproducing the stock
image and video processors, since the stock video processor needs torchvision.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from transformers.utils import cached_file

from actors.adapters.base import MediaInput
from actors.adapters.qwen2_vl_inputs import VisionSpec, VisualInput, prepare_visual
from schemas.job_config import DecodeConfig

# transformers assumes this rate for frames given without metadata (VideoMetadata.sampled_fps).
DEFAULT_VIDEO_FPS = 24.0
MEDIA_TYPE_IDS = {"image": 1, "video": 2}  # mm_token_type_ids: 0 text, 1 image, 2 video


@dataclass(frozen=True, eq=False)
class QwenMedia:
    item: MediaInput
    visual: VisualInput


class Qwen2VLFamily:
    """Family module of `qwen2_vl` and `qwen2_5_vl` (see `actors/adapters/family.py`)."""

    # media kinds of which one prompt may show two (a pairwise question: tests/test_judge_families.py)
    two_media = ("image", "video")
    media_types = ("image", "video")
    resize_rule = "smart_resize"
    position_rule = "mrope"

    def __init__(self, checkpoint: str, config, tokenizer, decode: DecodeConfig):
        self.decode = decode
        self.spec = VisionSpec.from_json(cached_file(checkpoint, "preprocessor_config.json"))
        # None: the model's own grid (prepare_visual's default); `vrscore score` resolves it on the driver
        if decode.resize_factor is not None and decode.resize_factor % self.spec.factor:
            raise ValueError(f"DecodeConfig.resize_factor={decode.resize_factor} must be a multiple of "
                             f"patch_size x merge_size = {self.spec.factor} for {checkpoint}")
        self.token_ids = {"image": config.image_token_id, "video": config.video_token_id}
        self.placeholders = {kind: tokenizer.convert_ids_to_tokens(i) for kind, i in self.token_ids.items()}
        # Qwen2.5-VL spaces video frames in time (second_per_grid_ts); Qwen2-VL does not.
        self.timed_video = config.model_type == "qwen2_5_vl"

    def prepare_media(self, item: MediaInput) -> QwenMedia:
        d = self.decode
        bounds = (d.image_min_pixels, d.image_max_pixels) if item.media_type == "image" else (
            d.video_min_pixels, d.video_max_pixels)
        return QwenMedia(item, prepare_visual(item.frames, self.spec, *bounds, d.resize_factor,
                                              already_resized=item.resized))

    def media_content(self, media_type: str) -> dict:
        return {"type": media_type}

    def media_layout(self, media: QwenMedia) -> tuple[str, str]:
        placeholder = self.placeholders[media.item.media_type]
        return placeholder, placeholder * media.visual.num_tokens

    def token_types(self, ids: torch.Tensor) -> dict[str, torch.Tensor]:
        types = torch.zeros_like(ids)
        for kind, token_id in self.token_ids.items():
            types[ids == token_id] = MEDIA_TYPE_IDS[kind]
        return {"mm_token_type_ids": types}

    def media_kwargs(self, media: Sequence[QwenMedia], device: torch.device, dtype: torch.dtype) -> dict[str, torch.Tensor]:
        kwargs: dict[str, torch.Tensor] = {}
        for kind, pixels_key, grid_key in (("image", "pixel_values", "image_grid_thw"),
                                           ("video", "pixel_values_videos", "video_grid_thw")):
            chosen = [m for m in media if m.item.media_type == kind]
            if not chosen:
                continue
            pixels = np.concatenate([m.visual.pixel_values for m in chosen])
            kwargs[pixels_key] = torch.from_numpy(pixels).to(device, dtype)
            kwargs[grid_key] = torch.tensor([m.visual.grid_thw for m in chosen], device=device)
            if kind == "video" and self.timed_video:
                seconds = [self.spec.temporal_patch_size / (m.item.fps or DEFAULT_VIDEO_FPS) for m in chosen]
                kwargs["second_per_grid_ts"] = torch.tensor(seconds, device=device)
        return kwargs

    def batch_key(self, media: QwenMedia) -> str:
        return "any"  # images and videos of any size share a forward


FAMILY = Qwen2VLFamily
