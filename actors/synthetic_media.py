"""Deterministic synthetic media written with real codecs, for the demo, tests and benchmarks.

Pictures have structure (a gradient, shapes, an off-centre marker that shows orientation)
rather than flat colours, so resizing, rotation and codec errors are visible in the pixels.
The same seed always gives the same pixels before encoding.
"""
from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np
from PIL import Image, ImageDraw

_FORMATS = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".webp": "WEBP"}


def make_picture(size: tuple[int, int], seed: int = 0) -> np.ndarray:
    """(h, w, 3) uint8 picture for `size` = (w, h): a two-colour gradient, a few random
    shapes, and a white marker in the top-left quarter (so turns and flips are detectable)."""
    width, height = size
    rng = np.random.default_rng(seed)
    c0, c1 = rng.integers(0, 256, size=(2, 3))
    t = (np.linspace(0, 1, width)[None, :, None] + np.linspace(0, 1, height)[:, None, None]) / 2
    img = Image.fromarray((c0 * (1 - t) + c1 * t).astype(np.uint8))
    draw = ImageDraw.Draw(img)
    for _ in range(6):
        x0, x1 = sorted(rng.integers(0, width, 2))
        y0, y1 = sorted(rng.integers(0, height, 2))
        colour = tuple(int(c) for c in rng.integers(0, 256, 3))
        (draw.ellipse if rng.random() < 0.5 else draw.rectangle)((x0, y0, x1, y1), fill=colour)
    draw.rectangle((width // 8, height // 8, width // 4, height // 4), fill=(255, 255, 255))
    return np.asarray(img).copy()


def write_image(path: str | Path, size: tuple[int, int] = (256, 256), seed: int = 0, fmt: str | None = None) -> Path:
    """Write `make_picture(size, seed)` as PNG, JPEG or WebP (`fmt`, else from the suffix)."""
    path = Path(path)
    fmt = fmt or _FORMATS.get(path.suffix.lower())
    if fmt not in ("PNG", "JPEG", "WEBP"):
        raise ValueError(f"fmt must be PNG, JPEG or WEBP (or given by the suffix), got {fmt!r} for {path.name}")
    Image.fromarray(make_picture(size, seed)).save(path, fmt, **({"quality": 95} if fmt != "PNG" else {}))
    return path


def make_video_frames(n_frames: int, size: tuple[int, int], seed: int = 0) -> np.ndarray:
    """(n_frames, h, w, 3) uint8: `make_picture` with a bright bar sweeping left to right."""
    width, height = size
    base = make_picture(size, seed)
    frames = np.repeat(base[None], n_frames, axis=0)
    bar = max(2, width // 16)
    for i in range(n_frames):
        x = int((width - bar) * i / max(n_frames - 1, 1))
        frames[i, height // 2:, x:x + bar] = (255, 255, 0)
    return frames


def write_video(
    path: str | Path,
    n_frames: int = 16,
    size: tuple[int, int] = (128, 96),
    fps: float = 8.0,
    seed: int = 0,
    rotation: int = 0,
) -> Path:
    """Write `make_video_frames(n_frames, size, seed)` as H.264 (yuv420p) mp4 with the index
    at the front ('faststart', as web videos are). `size` = (w, h), both even.

    `rotation` (a multiple of 90, counter-clockwise, FFmpeg's display-matrix convention)
    stores the frames turned the other way and records the rotation in the container, so a
    player that honours the metadata shows exactly `make_video_frames(...)`.
    """
    width, height = size
    if width % 2 or height % 2:
        raise ValueError(f"yuv420p needs even sides, got {width}x{height}")
    if rotation % 90:
        raise ValueError(f"rotation must be a multiple of 90, got {rotation}")
    path = Path(path)
    stored = np.rot90(make_video_frames(n_frames, size, seed), k=-(rotation // 90), axes=(1, 2))
    with av.open(str(path), "w", format="mp4", options={"movflags": "faststart"}) as container:
        stream = container.add_stream("libx264", rate=Fraction(fps).limit_denominator(1001))
        stream.height, stream.width = stored.shape[1:3]
        stream.pix_fmt = "yuv420p"
        if rotation % 360:
            stream.set_display_rotation(rotation)
        for frame in stored:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")))
        container.mux(stream.encode())
    return path
