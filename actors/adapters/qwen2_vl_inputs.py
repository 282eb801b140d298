"""Model inputs for the Qwen2-VL family, in numpy and PIL only.

No CPU build of torchvision exists for our torch, and without it transformers refuses to
load the Qwen2-VL video processor. So frames become `pixel_values(_videos)` + `*_grid_thw`
here, reproducing the stock processors step by step: smart_resize, bicubic resize (PIL,
as the PIL image processor; torchvision's antialiased bicubic used for stock videos
approximates the same filter), rescale in float64 then float32, CLIP normalisation,
temporal padding with the last frame, and the stock patch flattening order.

Also here, because they are pure: the longest common token prefix of an item's prompts
and the packing of items into forwards under a token budget.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image


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


def smart_resize(height: int, width: int, factor: int, min_pixels: int, max_pixels: int) -> tuple[int, int]:
    """Qwen2-VL's target size: sides multiples of `factor`, area within [min_pixels, max_pixels],
    aspect ratio kept as well as possible (same arithmetic as transformers' smart_resize)."""
    if max(height, width) / min(height, width) > 200:
        raise ValueError(f"absolute aspect ratio must be smaller than 200, got {max(height, width) / min(height, width)}")
    h_bar = round(height / factor) * factor
    w_bar = round(width / factor) * factor
    if h_bar * w_bar > max_pixels:
        beta = math.sqrt((height * width) / max_pixels)
        h_bar = max(factor, math.floor(height / beta / factor) * factor)
        w_bar = max(factor, math.floor(width / beta / factor) * factor)
    elif h_bar * w_bar < min_pixels:
        beta = math.sqrt(min_pixels / (height * width))
        h_bar = math.ceil(height * beta / factor) * factor
        w_bar = math.ceil(width * beta / factor) * factor
    return h_bar, w_bar


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
                   resize_factor: int | None = None) -> VisualInput:
    """uint8 (T, H, W, 3) frames -> the vision tower's input. `resize_factor` (a multiple of
    patch x merge) rounds the sides; None = patch x merge."""
    factor = resize_factor or spec.factor
    if factor % spec.factor:
        raise ValueError(f"resize_factor {factor} is not a multiple of patch_size x merge_size = {spec.factor}")
    height, width = smart_resize(frames.shape[1], frames.shape[2], factor, min_pixels, max_pixels)
    resized = resize_frames(frames, height, width)
    # float64 rescale then float32, as the stock processor does, so results match it bit for bit
    scaled = (resized.astype(np.float64) * spec.rescale_factor).astype(np.float32)
    normalized = (scaled - np.asarray(spec.image_mean, np.float32)) / np.asarray(spec.image_std, np.float32)
    pixel_values, grid = patchify(normalized, spec)
    return VisualInput(pixel_values, grid, pixel_values.shape[0] // spec.merge_size**2)


def expand_placeholder(ids: np.ndarray, placeholder_id: int, count: int) -> np.ndarray:
    """Replace the single media placeholder token in `ids` by `count` copies (one per visual token)."""
    where = np.flatnonzero(ids == placeholder_id)
    if len(where) != 1:
        raise ValueError(f"expected exactly one media placeholder token in the prompt, found {len(where)}")
    i = int(where[0])
    return np.concatenate([ids[:i], np.full(count, placeholder_id, ids.dtype), ids[i + 1:]])


def common_prefix_length(sequences: list[np.ndarray]) -> int:
    """Length of the longest token prefix shared by all sequences, at most the shortest length - 1
    so that every sequence keeps at least one token (its answer position) in its suffix."""
    limit = min(len(s) for s in sequences) - 1
    first = sequences[0][:limit]
    n = limit
    for s in sequences[1:]:
        differ = np.flatnonzero(s[:n] != first[:n])
        if len(differ):
            n = int(differ[0])
    return n


# A suffix chunk may hold at most this many padded token slots per real suffix token; beyond it
# a second, shorter chunk costs less than computing the padding (the bench preset's video
# checklist: 29 questions of 12-44 tokens, a third of the slots padding in one chunk).
MAX_SUFFIX_PADDING = 1.5


@dataclass(frozen=True)
class Forward:
    """One prefix forward over `items` (their prefixes right-padded into one batch), then one
    suffix forward per chunk of (item, question) rows against the expanded prefix cache."""

    items: list[int]
    row_chunks: list[list[tuple[int, int]]]


def _cost(prefix_lens: list[int], suffix_lens: list[list[int]]) -> int:
    """Tokens held by a group: padded prefixes + every question row over padded prefix + suffix."""
    p = max(prefix_lens)
    s = max(max(q) for q in suffix_lens)
    rows = sum(len(q) for q in suffix_lens)
    return len(prefix_lens) * p + rows * (p + s)


def pack_forwards(prefix_lens: list[int], suffix_lens: list[list[int]], token_budget: int) -> list[Forward]:
    """Greedily group consecutive items while a group's cost stays within `token_budget`.

    An item over the budget on its own forms its own group, its questions split into chunks that
    each fit (at least one question per chunk). Items without questions are left out.
    """
    todo = [i for i in range(len(prefix_lens)) if suffix_lens[i]]
    groups: list[list[int]] = []
    for i in todo:
        candidate = (groups[-1] if groups else []) + [i]
        if groups and _cost([prefix_lens[j] for j in candidate], [suffix_lens[j] for j in candidate]) <= token_budget:
            groups[-1] = candidate
        else:
            groups.append([i])

    forwards = []
    for group in groups:
        p = max(prefix_lens[i] for i in group)
        held = len(group) * p
        # shortest suffixes first, so that rows of similar length share a chunk and pad little
        rows = sorted(((i, q) for i in group for q in range(len(suffix_lens[i]))), key=lambda r: suffix_lens[r[0]][r[1]])
        chunks: list[list[tuple[int, int]]] = []
        chunk: list[tuple[int, int]] = []
        tokens = 0
        for i, q in rows:
            s = suffix_lens[i][q]  # the longest in the chunk so far: rows are sorted
            over_budget = held + (len(chunk) + 1) * (p + s) > token_budget
            too_padded = (len(chunk) + 1) * s > MAX_SUFFIX_PADDING * (tokens + s)
            if chunk and (over_budget or too_padded):
                chunks.append(chunk)
                chunk, tokens = [], 0
            chunk.append((i, q))
            tokens += s
        chunks.append(chunk)
        forwards.append(Forward(group, chunks))
    return forwards
