"""Frame-sampling and resize rules, against hand-computed expectations."""
from __future__ import annotations

import numpy as np
import pytest

from actors.frame_sampling import uniform_indices, visionreward_indices
from pipeline.resize_policy import smart_resize
from schemas.frames_spec import FramesSpec, parse_frames_spec
from schemas.job_config import DecodeConfig


@pytest.mark.parametrize(
    ("spec", "expected"),
    [("uniform:8", FramesSpec("uniform", 8)), ("uniform:1", FramesSpec("uniform", 1)),
     ("visionreward", FramesSpec("visionreward", 24)), ("visionreward:6", FramesSpec("visionreward", 6))],
)
def test_parse_frames_spec(spec, expected):
    assert parse_frames_spec(spec) == expected
    DecodeConfig(frames=spec)  # the config accepts every spec the parser does


@pytest.mark.parametrize("spec", ["uniform", "uniform:", "uniform:0", "uniform:-2", "uniform:x", "visionreward:",
                                  "visionreward:0", "fps:0", ""])
def test_parse_frames_spec_rejects(spec):
    with pytest.raises(ValueError, match="uniform:N"):
        parse_frames_spec(spec)


@pytest.mark.parametrize(
    ("n_total", "n", "expected"),
    [
        (10, 4, [0, 3, 6, 9]),  # linspace(0, 9, 4) is exact
        (100, 8, [0, 14, 28, 42, 57, 71, 85, 99]),  # 14.14, 28.29, 42.43, 56.57, 70.71, 84.86
        (6, 3, [0, 2, 5]),  # 2.5 rounds half to even, as torch.round in Qwen2-VL's utils
        (5, 8, [0, 1, 2, 3, 4]),  # shorter than asked: every frame once
        (8, 8, list(range(8))),
        (1, 8, [0]),
        (7, 1, [0]),
    ],
)
def test_uniform_indices(n_total, n, expected):
    assert uniform_indices(n_total, n).tolist() == expected


def test_uniform_indices_long_video_stays_in_range():
    idx = uniform_indices(3678, 8)
    assert idx[0] == 0 and idx[-1] == 3677
    assert np.all(np.diff(idx) > 0)


@pytest.mark.parametrize(("n_total", "n"), [(0, 8), (10, 0)])
def test_uniform_indices_rejects(n_total, n):
    with pytest.raises(ValueError):
        uniform_indices(n_total, n)


@pytest.mark.parametrize(
    ("timestamps", "max_frames", "expected"),
    [
        # 2 fps for 3 s: round(2.5) = 2 (half to even), so seconds 0..2 only.
        ([0.0, 0.5, 1.0, 1.5, 2.0, 2.5], 24, [0, 2, 4]),
        # 30 fps for 1 s: max 0.967 rounds to 1; second 1 is nearest the last frame.
        ([i / 30 for i in range(30)], 24, [0, 29]),
        # Second 1 is 0.5 from both 0.5 and 1.5: the first wins, as list.index(min(...)).
        ([0.0, 0.5, 1.5], 24, [0, 1, 2]),
        # A gap: frame 2 is nearest to seconds 2 and 3, and is taken twice, as upstream.
        ([0.0, 0.1, 3.0], 24, [0, 1, 2, 2]),
        # Out-of-order timestamps give indices in second order, not index order.
        ([0.0, 2.0, 1.0, 3.0], 24, [0, 2, 1, 3]),
        # 10 fps for 60 s: 61 seconds, capped at max_frames.
        ([i / 10 for i in range(600)], 24, [10 * s for s in range(24)]),
        ([i / 10 for i in range(600)], 3, [0, 10, 20]),
        ([0.0], 24, [0]),  # a one-frame video
    ],
)
def test_visionreward_indices(timestamps, max_frames, expected):
    assert visionreward_indices(timestamps, max_frames).tolist() == expected


def _upstream_chat(timestamps: list, max_frames: int) -> list[int]:
    # The VisionReward inference script's 'chat' loop, restated: nearest timestamp per second.
    picked = []
    for second in range(round(max(timestamps)) + 1):
        nearest = min(timestamps, key=lambda x: abs(x - second))
        picked.append(timestamps.index(nearest))
        if len(picked) >= max_frames:
            break
    return picked


@pytest.mark.parametrize("fps", [23.976, 24.0, 25.0, 29.97, 30.0, 7.5, 0.8])
def test_visionreward_indices_match_upstream_on_decord_float32_timestamps(fps):
    # decord returns float32 start times; upstream compares them in float32.
    rng = np.random.default_rng(int(fps * 1000))
    for n_frames in (1, 17, 300):
        start = np.float32(rng.uniform(0, 0.05))
        ts = (start + np.arange(n_frames, dtype=np.float32) / np.float32(fps)).astype(np.float32)
        assert visionreward_indices(ts, 24).tolist() == _upstream_chat(list(ts), 24)


def test_visionreward_indices_rejects_empty():
    with pytest.raises(ValueError):
        visionreward_indices([], 24)


@pytest.mark.parametrize(
    ("size", "bounds", "expected"),
    [
        ((56, 112), (3136, 802816), (56, 112)),  # already on the grid
        ((100, 150), (3136, 1_000_000), (112, 140)),  # nearest multiples: 3.57 -> 4, 5.36 -> 5
        ((1000, 1000), (3136, 200_000), (420, 420)),  # 1008^2 too many: 1000 / sqrt(5) = 447.2 -> floor to 420
        ((10, 20), (3136, 200_000), (56, 84)),  # too few: x sqrt(3136 / 200) = 39.6, 79.2 -> ceil to 56, 84
        ((1, 200), (3136, 1_000_000), (28, 812)),  # aspect ratio exactly 200 is allowed
    ],
)
def test_smart_resize(size, bounds, expected):
    assert smart_resize(*size, 28, *bounds) == expected


@pytest.mark.parametrize("size", [(1, 201), (300, 1), (0, 10)])
def test_smart_resize_rejects(size):
    with pytest.raises(ValueError):
        smart_resize(*size, 28, 3136, 1_000_000)


def test_smart_resize_matches_transformers():
    reference = pytest.importorskip("transformers.models.qwen2_vl.image_processing_pil_qwen2_vl").smart_resize
    cfg = DecodeConfig()
    rng = np.random.default_rng(0)
    sizes = [(1080, 1920), (720, 1280), (320, 568), (180, 320), (4000, 3000), (28, 28)]
    sizes += [tuple(int(v) for v in rng.integers(20, 5000, 2)) for _ in range(300)]
    for h, w in sizes:
        for lo, hi in ((cfg.image_min_pixels, cfg.image_max_pixels), (cfg.video_min_pixels, cfg.video_max_pixels)):
            assert smart_resize(h, w, 28, lo, hi) == reference(h, w, 28, lo, hi), (h, w, lo, hi)
