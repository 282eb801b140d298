"""The frame size the model sees, per model family, as pure functions (`RESIZE_RULES`).

Each family module names its rule (`Family.resize_rule`, `actors/adapters/family.py`); on the
driver, `pipeline/model_family.py` resolves the model's rule and factor into `DecodeConfig`
before any work, and the decode stage applies exactly that rule (`actors/frame_decode.py`).
`smart_resize` (Qwen2-VL, Qwen2.5-VL, Qwen3-VL) and `smart_resize_small_up` (GLM-4.1V) give
the model's input size itself (`MODEL_SIZE_RULES`): the scorer marks such frames resized and
the adapter takes them as they are.
`fit_within` only caps the pixels, keeping the aspect ratio, for families whose own processor
resizes or tiles every frame again (InternVL, LLaVA-OneVision, Gemma 3, SmolVLM, and the
generic path): those take the frames as a source image, never marked resized (their family
modules read no `MediaInput.resized`). A source over the cap is scaled down first, so for
these families the stock processor is matched exactly up to `image_max_pixels` per image
(`video_max_pixels` per video frame).

The Qwen2-VL `smart_resize` rule:

The decode stage resizes every image and video frame to this size, once, from the source,
as the stock Qwen2-VL processor does. The rule is not idempotent at its edges (rounding the
short side up can push the aspect ratio past 200; the one-factor floor can leave a result
above `max_pixels`), so applying it a second time could change what the model sees. Frames
handed to an adapter directly, not marked resized, get the same rule there.
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


def fit_within(height: int, width: int, factor: int | None, min_pixels: int, max_pixels: int) -> tuple[int, int]:
    """(height, width) scaled down, aspect ratio kept, to at most `max_pixels`; never scaled up
    (`factor` and `min_pixels` are unused: the family's processor resizes again)."""
    if height < 1 or width < 1:
        raise ValueError(f"image sides must be >= 1 pixel, got {height}x{width}")
    if height * width <= max_pixels:
        return height, width
    scale = math.sqrt(max_pixels / (height * width))
    return max(1, math.floor(height * scale)), max(1, math.floor(width * scale))


def smart_resize_small_up(height: int, width: int, factor: int, min_pixels: int, max_pixels: int) -> tuple[int, int]:
    """GLM-4.1V's variant: a side shorter than `factor` first scales the frame up (aspect ratio
    kept, truncated to whole pixels), then `smart_resize` (with per-frame pixel bounds: the stock
    processor's bounds count both frames of a temporal patch, twice these)."""
    if height < factor or width < factor:
        scale = max(factor / height, factor / width)
        height, width = int(height * scale), int(width * scale)
    return smart_resize(height, width, factor, min_pixels, max_pixels)


RESIZE_RULES = {"smart_resize": smart_resize, "smart_resize_small_up": smart_resize_small_up, "fit_within": fit_within}
# Rules whose result is the model's input size (sides on a grid of `factor`): they need a factor.
MODEL_SIZE_RULES = frozenset({"smart_resize", "smart_resize_small_up"})
# What the decode stage applies where no model's rule was resolved (`DecodeConfig.resize_rule`
# None: a report's thumbnails, a stage used alone): the source, capped, which any family resizes.
UNRESOLVED_RULE = "fit_within"


def frames_are_final(applied_rule: str | None, family_rule: str) -> bool:
    """Whether frames the decode stage sized by `applied_rule` are the model's input as they are:
    only when that is the family's own rule and one that gives the model's size. Frames sized by
    another rule must never be taken as final (the family resizes them, or the wiring is wrong)."""
    return applied_rule == family_rule and family_rule in MODEL_SIZE_RULES


def check_rule(rule: str | None, factor: int | None) -> None:
    """Refuse a model-size rule without its factor (the driver resolves both together)."""
    if rule in MODEL_SIZE_RULES and factor is None:
        raise ValueError(f"decode.resize_rule {rule!r} needs a resize_factor (patch size x spatial merge)")
