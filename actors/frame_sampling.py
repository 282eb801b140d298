"""Which video frames to decode: pure functions over frame counts and timestamps.

`DecodeConfig.frames` names a strategy; `schemas.frames_spec.parse_frames_spec` turns it into
a `FramesSpec`, and the index functions turn a video's length (or its frame timestamps) into
the frame indices to decode. Nothing here opens a file, so the rules test without media.
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from schemas.frames_spec import VISIONREWARD_MAX_FRAMES

def uniform_indices(n_total: int, n: int) -> np.ndarray:
    """`n` frame indices spread evenly over a video of `n_total` frames, first and last
    frame included (the Qwen2-VL sampling rule: linspace, rounded half to even).

    A video with at most `n` frames gives every frame once, so the result never repeats
    an index and never leaves [0, n_total).
    """
    if n_total < 1 or n < 1:
        raise ValueError(f"need n_total >= 1 and n >= 1, got n_total={n_total}, n={n}")
    if n_total <= n:
        return np.arange(n_total, dtype=np.int64)
    return np.linspace(0, n_total - 1, n).round().astype(np.int64)


def visionreward_indices(timestamps: Sequence[float], max_frames: int = VISIONREWARD_MAX_FRAMES) -> np.ndarray:
    """The VisionReward 'chat' strategy: for each whole second s in
    range(round(max(timestamps)) + 1), the first frame whose timestamp is closest to s,
    stopping after `max_frames`. Indices may repeat, as upstream: a frame that is the
    nearest to two seconds (a gap in the timestamps) is taken twice.

    `timestamps` are frame start times in seconds (decord's `get_frame_timestamp(...)[:, 0]`).
    Distances are computed in the dtype of the timestamps, as upstream does on decord's
    float32 values, so ties break identically.
    """
    ts = np.asarray(timestamps)
    if ts.ndim != 1 or ts.size == 0:
        raise ValueError("timestamps must be a non-empty 1-D sequence")
    if max_frames < 1:
        raise ValueError(f"max_frames must be >= 1, got {max_frames}")
    if not np.issubdtype(ts.dtype, np.floating):
        ts = ts.astype(np.float64)
    # Python's round() on the max, as upstream: half to even (2.5 -> 2).
    max_second = round(float(ts.max())) + 1
    seconds = range(min(max_second, max_frames))
    # np.argmin returns the first minimum, as list.index(min(...)) does.
    return np.array([int(np.argmin(np.abs(ts - ts.dtype.type(s)))) for s in seconds], dtype=np.int64)


# A sample time matches a frame that starts this close after it (timestamps are float32).
_TIME_TOLERANCE_S = 1e-4


def fixed_rate_indices(starts: Sequence[float], duration: float, rate: float,
                       max_frames: int | None = None) -> tuple[np.ndarray, float]:
    """The 'fps:F[:MAX]' rule: (frame indices, the rate they were taken at).

    Sample times are `starts[0] + k / r` for every k with k / r inside the clip's `duration`
    (seconds), and each takes the frame on screen at that time (the last one starting at or
    before it), so a 3 s clip at fps:2 gives 6 frames, 0.5 s apart. The rate r is `rate`, but
    never faster than the video's own frames (`len(starts) / duration`: no frame is shown
    twice), and with `max_frames` a clip that would need more frames gets `max_frames` of them
    spread evenly at r = max_frames / duration. `starts` are frame start times in seconds.
    """
    ts = np.asarray(starts, dtype=np.float64)
    if ts.ndim != 1 or ts.size == 0:
        raise ValueError("starts must be a non-empty 1-D sequence")
    if not (rate > 0 and math.isfinite(rate)) or not (duration > 0 and math.isfinite(duration)):
        raise ValueError(f"need rate > 0 and duration > 0, got rate={rate}, duration={duration}")
    if max_frames is not None and max_frames < 1:
        raise ValueError(f"max_frames must be >= 1, got {max_frames}")
    r = min(rate, ts.size / duration)
    # 1e-9: a product that is a whole number in exact arithmetic must not round up to one more frame.
    count = max(1, math.ceil(duration * r - 1e-9))
    if max_frames is not None and count > max_frames:
        r, count = max_frames / duration, max_frames
    times = ts[0] + np.arange(count) / r
    indices = np.searchsorted(ts, times + _TIME_TOLERANCE_S, side="right") - 1
    return np.clip(indices, 0, ts.size - 1).astype(np.int64), float(r)


# A seek flushes the decoder and restarts at a keyframe; its fixed cost, in frames decoded,
# is about this many (measured with decord on H.264: a seek that lands on the frame it
# wants costs as much as decoding a few frames).
SEEK_COST_FRAMES = 4


def decode_in_order(key_indices: Sequence[int], indices: Sequence[int]) -> bool:
    """True when decoding straight through, from the keyframe before the first wanted frame
    to the last one, decodes no more frames than seeking to the keyframe before each group
    of wanted frames (a group: those sharing a keyframe, decoded in one pass).

    Dense samples (several per keyframe interval, or a video that is one interval, as most
    short generated clips are) read in order; sparse samples of a long video seek.
    """
    wanted = np.unique(np.asarray(indices, dtype=np.int64))
    keys = np.unique(np.asarray(key_indices, dtype=np.int64))
    if wanted.size == 0:
        return True
    if keys.size == 0 or keys[0] > wanted[0]:
        keys = np.concatenate([[0], keys])
    key_of = keys[np.searchsorted(keys, wanted, side="right") - 1]  # keyframe at or before each frame
    in_order = int(wanted[-1] - key_of[0] + 1)
    seeking = 0
    for key in np.unique(key_of):
        seeking += int(wanted[key_of == key].max() - key + 1) + SEEK_COST_FRAMES
    return in_order <= seeking
