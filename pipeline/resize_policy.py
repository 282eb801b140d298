"""The frame size the model sees: the Qwen2-VL `smart_resize` rule as a pure function.

The decode stage resizes every image and video frame to this size, and the model adapter
applies the same rule, so the processor of a Qwen2-VL-family model finds sides that are
already multiples of its patch grid and pixel counts within its bounds, and never resizes
again (which would cost a second interpolation on the scorer's critical path).
"""
from __future__ import annotations

import math

# Beyond this, the model's patch grid degenerates to a line; the stock processor refuses too.
MAX_ASPECT_RATIO = 200


def smart_resize(height: int, width: int, factor: int, min_pixels: int, max_pixels: int) -> tuple[int, int]:
    """(height, width) closest to the input with both sides multiples of `factor` and
    height * width within [min_pixels, max_pixels], aspect ratio kept as far as possible.

    Same arithmetic as transformers' `Qwen2VLImageProcessor` (round each side to the nearest
    multiple; if over `max_pixels`, scale down by the square root of the excess and floor;
    if under `min_pixels`, scale up and ceil). Raises ValueError for an aspect ratio over
    200 or a side below 1 pixel.
    """
    if height < 1 or width < 1:
        raise ValueError(f"image sides must be >= 1 pixel, got {height}x{width}")
    if max(height, width) / min(height, width) > MAX_ASPECT_RATIO:
        raise ValueError(
            f"aspect ratio {max(height, width) / min(height, width):.1f} of a {width}x{height} "
            f"frame is over {MAX_ASPECT_RATIO}"
        )
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
