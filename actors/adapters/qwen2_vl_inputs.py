"""Model inputs for the Qwen2-VL family, in numpy and PIL only.

No CPU build of torchvision exists for our torch, and without it transformers refuses to
load the Qwen2-VL video processor. So frames become `pixel_values(_videos)` + `*_grid_thw`
here, reproducing the stock processors step by step: smart_resize, bicubic resize (PIL,
as the PIL image processor; torchvision's antialiased bicubic used for stock videos
approximates the same filter), rescale in float64 then float32, CLIP normalisation,
temporal padding with the last frame, and the stock patch flattening order.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from pipeline.resize_policy import smart_resize  # the decoder's rule: frames arrive at its size


@dataclass(frozen=True)
class VisionSpec:
    """The vision preprocessing a checkpoint was trained with (its preprocessor_config.json)."""

    patch_size: int
    temporal_patch_size: int
    merge_size: int
    image_mean: tuple[float, float, float]
    image_std: tuple[float, float, float]
    rescale_factor: float = 1 / 255

    @classmethod
    def from_json(cls, path: str | Path) -> VisionSpec:
        cfg = json.loads(Path(path).read_text())
        return cls(
            patch_size=int(cfg["patch_size"]),
            temporal_patch_size=int(cfg["temporal_patch_size"]),
            merge_size=int(cfg["merge_size"]),
            image_mean=tuple(cfg["image_mean"]),
            image_std=tuple(cfg["image_std"]),
            rescale_factor=float(cfg.get("rescale_factor", 1 / 255)),
        )

    @property
    def factor(self) -> int:
        """Frame sides must be multiples of this (one merged token covers factor x factor pixels)."""
        return self.patch_size * self.merge_size


@dataclass(frozen=True, eq=False)
class VisualInput:
    """One image or video as the vision tower takes it."""

    pixel_values: np.ndarray  # float32 (grid_t * grid_h * grid_w, 3 * temporal_patch * patch * patch)
    grid_thw: tuple[int, int, int]
    num_tokens: int  # placeholder tokens in the prompt = patches / merge_size**2


def resize_frames(frames: np.ndarray, height: int, width: int) -> np.ndarray:
    """Bicubic resize of uint8 (T, H, W, 3) frames; frames already at that size are returned as is."""
    if frames.shape[1:3] == (height, width):
        return frames
    return np.stack([np.asarray(Image.fromarray(f).resize((width, height), Image.Resampling.BICUBIC)) for f in frames])


def patchify(frames: np.ndarray, spec: VisionSpec) -> tuple[np.ndarray, tuple[int, int, int]]:
    """Normalised float32 (T, H, W, C) frames -> flattened patches in the stock processors' order:
    rows (t, h-block, w-block, h-in-block, w-in-block), columns (channel, time, y, x)."""
    tp, p, m = spec.temporal_patch_size, spec.patch_size, spec.merge_size
    if pad := -frames.shape[0] % tp:  # a video's length must be a multiple of tp; repeat the last frame
        frames = np.concatenate([frames, np.repeat(frames[-1:], pad, axis=0)])
    t, h, w, c = frames.shape
    gt, gh, gw = t // tp, h // p, w // p
    patches = frames.reshape(gt, tp, gh // m, m, p, gw // m, m, p, c)
    patches = patches.transpose(0, 2, 5, 3, 6, 8, 1, 4, 7)
    return np.ascontiguousarray(patches).reshape(gt * gh * gw, c * tp * p * p), (gt, gh, gw)


def prepare_visual(frames: np.ndarray, spec: VisionSpec, min_pixels: int, max_pixels: int,
                   resize_factor: int | None = None, already_resized: bool = False,
                   resize_rule=smart_resize) -> VisualInput:
    """uint8 (T, H, W, 3) frames -> the vision tower's input. `resize_factor` (a multiple of
    patch x merge) rounds the sides; None = patch x merge. `already_resized` frames (the
    decode stage's output) are taken at their size, which must be on the factor's grid.
    `resize_rule`: a rule of `pipeline.resize_policy.RESIZE_RULES`."""
    factor = resize_factor or spec.factor
    if factor % spec.factor:
        raise ValueError(f"resize_factor {factor} is not a multiple of patch_size x merge_size = {spec.factor}")
    if already_resized:
        height, width = frames.shape[1:3]
        if height % factor or width % factor:
            raise ValueError(f"frames of {width}x{height} are marked resized but their sides are not "
                             f"multiples of the resize factor {factor}")
    else:
        height, width = resize_rule(frames.shape[1], frames.shape[2], factor, min_pixels, max_pixels)
    resized = resize_frames(frames, height, width)
    # float64 rescale then float32, as the stock processor does, so results match it bit for bit
    scaled = (resized.astype(np.float64) * spec.rescale_factor).astype(np.float32)
    normalized = (scaled - np.asarray(spec.image_mean, np.float32)) / np.asarray(spec.image_std, np.float32)
    pixel_values, grid = patchify(normalized, spec)
    return VisualInput(pixel_values, grid, pixel_values.shape[0] // spec.merge_size**2)
