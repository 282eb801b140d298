"""`DecodeConfig.frames`: which video frames the model sees, as a parsed rule.

The rule is configuration (it is checked when a job config is built and recorded in job.json);
the index functions that apply it to a video live with the decode stage (actors/frame_sampling.py).
"""
from __future__ import annotations

import math
import re
from typing import Literal, NamedTuple

# The VisionReward inference script samples at most this many one-per-second frames.
VISIONREWARD_MAX_FRAMES = 24

FRAMES_RULES = "'uniform:N', 'visionreward[:M]' or 'fps:F[:MAX]' (N, M, MAX >= 1 whole numbers, F > 0)"
_COUNT = r"[1-9][0-9]*"
_RATE = r"(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)"
_FPS_RE = re.compile(rf"^fps:({_RATE})(?::({_COUNT}))?$")


class FramesSpec(NamedTuple):
    """A parsed `DecodeConfig.frames`.

    uniform:      `n` frames spread over the whole video.
    visionreward: one frame per second from the start, at most `n`.
    fps:          frames `1 / rate` seconds apart from the start; with a cap `n` (None = none)
                  a clip longer than n / rate seconds gets n frames spread evenly instead.
    """

    kind: Literal["uniform", "visionreward", "fps"]
    n: int | None
    rate: float | None = None


def parse_frames_spec(spec: str) -> FramesSpec:
    """Parse 'uniform:N', 'visionreward', 'visionreward:M', 'fps:F' or 'fps:F:MAX'; ValueError otherwise."""
    kind, sep, count = spec.partition(":")
    if kind == "visionreward" and not sep:
        return FramesSpec("visionreward", VISIONREWARD_MAX_FRAMES)
    if kind in ("uniform", "visionreward") and re.fullmatch(_COUNT, count):
        return FramesSpec(kind, int(count))  # type: ignore[arg-type]
    match = _FPS_RE.match(spec)
    if match:
        rate = float(match.group(1))
        if rate > 0 and math.isfinite(rate):
            return FramesSpec("fps", int(match.group(2)) if match.group(2) else None, rate)
    raise ValueError(f"frames must be {FRAMES_RULES}, got {spec!r}")
