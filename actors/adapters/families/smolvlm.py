"""SmolVLM and Idefics3: a grid of square views plus a global view, 1D positions.

An image goes through the stock PIL image processor (split into `<row_i_col_j>` views when it is
larger than one view, then a global view), laid out as the processors write it. SmolVLM takes
video too: frames resized to the square view (the stock video processor resizes twice with
torchvision; once here), after an intro line that gives the frame count in words and the
duration, each frame behind `Frame from MM:SS:`. Frame times are the frames' own
(`MediaInput.times`, the stock processor's `VideoMetadata.timestamps`), else i / fps (fps unknown:
24, as transformers assumes). The duration is the video's, in whole seconds, where the decode stage
read it from the container (`MediaInput.duration`: frame count / average frame rate, what
transformers' video readers hand the stock processor as `VideoMetadata.duration`); the last
frame's whole second where it is unknown, as the stock processor falls back
(`processing_smolvlm.replace_video_token`: `int(metadata.duration) if metadata.duration is not
None else int(metadata.timestamps[-1])`).
Every view of a batch goes in `pixel_values`, padded with all-zero views the model drops.
"""
from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import numpy as np
import torch
from num2words import num2words
from transformers.models.idefics3.image_processing_pil_idefics3 import (
    Idefics3ImageProcessorPil,
)
from transformers.models.smolvlm.image_processing_pil_smolvlm import (
    SmolVLMImageProcessorPil,
)
from transformers.utils import cached_file

from actors.adapters.base import MediaInput
from actors.adapters.family import normalised_frames
from schemas.job_config import DecodeConfig

DEFAULT_VIDEO_FPS = 24.0  # what the stock processor assumes for frames without metadata


@dataclass(frozen=True, eq=False)
class SmolMedia:
    item: MediaInput
    pixel_values: np.ndarray  # (views or frames, 3, S, S)
    mask: np.ndarray  # (views or frames, S, S) bool
    rows: int
    cols: int


def _json(checkpoint: str, name: str) -> dict:
    path = cached_file(checkpoint, name, _raise_exceptions_for_missing_entries=False)
    return {} if path is None else json.loads(Path(path).read_text())


class SmolVLMFamily:
    """Family module of `smolvlm` and `idefics3` (see `actors/adapters/family.py`)."""

    resize_rule = "fit_within"  # the processor resizes and splits the source image itself
    position_rule = "1d"

    def __init__(self, checkpoint: str, config, tokenizer, decode: DecodeConfig):
        smol = config.model_type == "smolvlm"
        self.media_types = ("image", "video") if smol else ("image",)
        self.two_media = self.media_types  # tests/test_judge_families.py
        vision = config.vision_config
        self.seq = _json(checkpoint, "processor_config.json").get(
            "image_seq_len", (vision.image_size // vision.patch_size) ** 2 // config.scale_factor**2)
        self.image = tokenizer.convert_ids_to_tokens(config.image_token_id)
        self.fake = getattr(tokenizer, "fake_image_token", None) or "<fake_token_around_image>"
        self.glob = getattr(tokenizer, "global_image_token", None) or "<global-img>"
        self.video = getattr(tokenizer, "video_token", None) or "<video>"
        self.images = (SmolVLMImageProcessorPil if smol else Idefics3ImageProcessorPil).from_pretrained(checkpoint)
        video = _json(checkpoint, "video_preprocessor_config.json")
        self.frame_cfg = {k: video.get(k, getattr(self.images, k)) for k in
                          ("max_image_size", "image_mean", "image_std", "rescale_factor", "resample")}

    def _frames(self, frames: np.ndarray) -> np.ndarray:
        c = self.frame_cfg
        side = c["max_image_size"]["longest_edge"]
        return normalised_frames(frames, side, side, c)

    def prepare_media(self, item: MediaInput) -> SmolMedia:
        if item.media_type == "image":
            out = self.images(images=[[item.frames[0]]], return_row_col_info=True, return_tensors="np")
            return SmolMedia(item, out["pixel_values"][0].astype(np.float32),
                             out["pixel_attention_mask"][0].astype(bool), out["rows"][0][0], out["cols"][0][0])
        pixels = self._frames(item.frames)
        return SmolMedia(item, pixels, np.ones((len(pixels), *pixels.shape[2:]), bool), 0, 0)

    def media_content(self, media_type: str) -> dict:
        return {"type": media_type}

    def _view(self, tag: str) -> str:
        return f"{self.fake}{tag}{self.image * self.seq}"

    def media_layout(self, media: SmolMedia) -> tuple[str, str]:
        global_view = self._view(self.glob) + self.fake
        if media.item.media_type == "video":  # processing_smolvlm.replace_video_token
            n = len(media.pixel_values)
            seconds = media.item.seconds(DEFAULT_VIDEO_FPS)
            duration = int(media.item.duration if media.item.duration is not None else seconds[-1])
            text = (f"You are provided the following series of {num2words(n)} frames "
                    f"from a {timedelta(seconds=duration)} [H:MM:SS] video.\n")
            text += "".join(f"\nFrame from {int(s // 60):02d}:{int(s % 60):02d}:" + global_view for s in seconds)
            return self.video, text + "\n\n"
        if media.rows == 0 and media.cols == 0:  # get_image_prompt_string
            return self.image, global_view
        grid = "".join("".join(self._view(f"<row_{r + 1}_col_{c + 1}>") for c in range(media.cols)) + "\n"
                       for r in range(media.rows))
        return self.image, grid + "\n" + global_view

    def token_types(self, ids: torch.Tensor) -> dict[str, torch.Tensor]:
        return {}  # the model finds media by the image token id

    def media_kwargs(self, media: Sequence[SmolMedia], device: torch.device,
                     dtype: torch.dtype) -> dict[str, torch.Tensor]:
        most = max(len(m.pixel_values) for m in media)
        side = media[0].pixel_values.shape[-2:]
        pixels = np.zeros((len(media), most, 3, *side), np.float32)
        mask = np.zeros((len(media), most, *side), bool)
        for row, m in enumerate(media):
            pixels[row, :len(m.pixel_values)] = m.pixel_values
            mask[row, :len(m.mask)] = m.mask
        return {"pixel_values": torch.from_numpy(pixels).to(device, dtype),
                "pixel_attention_mask": torch.from_numpy(mask).to(device)}


FAMILY = SmolVLMFamily
