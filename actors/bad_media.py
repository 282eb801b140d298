"""Bad and awkward media for tests: broken files, decompression bombs, unusual pixel modes.

Each writer documents what a correct decoder must make of its file; the awkward-mode
writers also return the RGB pixels the decoder should produce.
"""
from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np
from PIL import Image

from actors.synthetic_media import make_picture, write_video


def write_truncated_mp4(path: str | Path, keep_fraction: float = 0.8, **video_kwargs) -> Path:
    """An H.264 mp4 cut short: the index (at the front) is intact and promises frames whose
    bytes are missing, so the container opens but the last frames cannot be decoded."""
    path = write_video(path, **video_kwargs)
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep_fraction)])
    return path


def write_text_file(path: str | Path, text: str = "this is not a video, only text named like one\n") -> Path:
    """A text file (give it a media suffix such as .mp4 to fool extension checks)."""
    path = Path(path)
    path.write_text(text * 20)
    return path


def write_empty_file(path: str | Path) -> Path:
    """A zero-byte file."""
    path = Path(path)
    path.write_bytes(b"")
    return path


def _png_chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


def write_png_bomb(path: str | Path, size: tuple[int, int] = (100_000, 100_000)) -> Path:
    """A PNG of a few hundred bytes that declares `size` = (w, h) 1-bit pixels. Only the
    first rows of pixel data are present: a decoder must refuse it from the header alone."""
    width, height = size
    row = b"\x00" + b"\x00" * ((width + 7) // 8)  # filter byte + packed 1-bit pixels
    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)  # 1-bit greyscale
    data = b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", header)
    data += _png_chunk(b"IDAT", zlib.compress(row * 4)) + _png_chunk(b"IEND", b"")
    path = Path(path)
    path.write_bytes(data)
    return path


def write_large_image(path: str | Path, size: tuple[int, int] = (10_000, 8_000)) -> Path:
    """A real, fully decodable 1-bit PNG with many pixels (80 Mpx by default, over the default
    `max_source_pixels` of 64 Mpx but under PIL's own bomb limit) in a file of about 10 KB."""
    path = Path(path)
    Image.new("1", size).save(path, "PNG")
    return path


def write_image_mode(path: str | Path, mode: str, size: tuple[int, int] = (112, 56)) -> np.ndarray:
    """Write a picture in pixel `mode` and return the (h, w, 3) RGB a decoder should give.

    'L': grey ramp. 'I;16' (PNG) and 'I' (TIFF): a ramp over the full 16-bit range, which
    must be scaled to 8 bits (clipping at 255 would give white). 'CMYK' (JPEG): cyan,
    magenta, yellow and black quarters. 'RGBA', 'LA': left half opaque, right quarter fully
    transparent (-> white), the quarter between half transparent (-> blended with white).
    'P': palette PNG whose palette entry 0 is transparent (-> white).
    """
    width, height = size
    ramp = np.tile(np.linspace(0, 1, width), (height, 1))
    picture = make_picture(size, seed=3)
    if mode == "L":
        grey = np.rint(ramp * 255).astype(np.uint8)
        img, expected = Image.fromarray(grey), np.repeat(grey[..., None], 3, axis=2)
    elif mode in ("I;16", "I"):
        value = np.rint(ramp * 65535)
        img = Image.fromarray(value.astype(np.uint16 if mode == "I;16" else np.int32))
        expected = np.repeat(np.rint(value / 257).astype(np.uint8)[..., None], 3, axis=2)
    elif mode == "CMYK":
        inks = np.zeros((height, width, 4), np.uint8)
        quarters = [(0, 0, 0), (0, 1, 1), (1, 0, 2), (1, 1, 3)]  # (row half, col half, ink)
        rgb = [(0, 255, 255), (255, 0, 255), (255, 255, 0), (0, 0, 0)]
        expected = np.zeros((height, width, 3), np.uint8)
        for (r, c, ink), colour in zip(quarters, rgb):
            rows, cols = slice(r * height // 2, (r + 1) * height // 2), slice(c * width // 2, (c + 1) * width // 2)
            inks[rows, cols, ink] = 255
            expected[rows, cols] = colour
        img = Image.fromarray(inks, "CMYK")
    elif mode in ("RGBA", "LA"):
        alpha = np.full((height, width), 255, np.uint8)
        alpha[:, width // 2:] = 128
        alpha[:, 3 * width // 4:] = 0
        colour = picture if mode == "RGBA" else np.repeat(picture[..., :1], 3, axis=2)
        a = alpha[..., None] / 255.0
        expected = np.rint(colour * a + 255 * (1 - a)).astype(np.uint8)
        img = Image.fromarray(np.dstack([colour if mode == "RGBA" else colour[..., :1], alpha]), mode)
    elif mode == "P":
        index = (ramp * 3).astype(np.uint8)  # palette entries 0..3 across the width
        palette = [(0, 0, 0), (255, 0, 0), (0, 255, 0), (0, 0, 255)]
        img = Image.fromarray(index, "P")
        img.putpalette([v for colour in palette for v in colour])
        img.info["transparency"] = 0
        expected = np.array([(255, 255, 255)] + palette[1:], np.uint8)[index]
    else:
        raise ValueError(f"unsupported mode {mode!r}")
    fmt = {"I": "TIFF", "CMYK": "JPEG"}.get(mode, "PNG")
    img.save(path, fmt, **({"quality": 100} if fmt == "JPEG" else {}))
    return expected


def write_animated(
    path: str | Path, fmt: str, colours: list[tuple[int, int, int]], size: tuple[int, int] = (112, 56)
) -> Path:
    """An animated GIF or WebP (`fmt`) of flat frames of `colours`, in order."""
    frames = [Image.new("RGB", size, colour) for colour in colours]
    extra = {"lossless": True} if fmt == "WEBP" else {}
    frames[0].save(path, fmt, save_all=True, append_images=frames[1:], duration=100, loop=0, **extra)
    return Path(path)


def write_exif_rotated_jpeg(path: str | Path, size: tuple[int, int] = (112, 56), seed: int = 0) -> np.ndarray:
    """A JPEG stored on its side with EXIF orientation 6 ('turn 90 degrees clockwise to
    view'); returns the upright (h, w, 3) picture of `size` = (w, h) a viewer shows."""
    upright = make_picture(size, seed)
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation
    Image.fromarray(np.ascontiguousarray(np.rot90(upright, k=1))).save(path, "JPEG", quality=95, exif=exif)
    return upright
