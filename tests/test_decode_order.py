"""Reading sampled frames in order vs seeking: the planner's choice, and the same frames either way."""
from __future__ import annotations

import io
from fractions import Fraction

import av
import decord
import numpy as np
import pytest

from actors import frame_decode
from actors.synthetic_media import make_video_frames
from actors.frame_sampling import SEEK_COST_FRAMES, decode_in_order, uniform_indices
from tests.paths import MEDIA


def _video(n_frames: int, gop: int, size=(96, 64)) -> bytes:
    buf = io.BytesIO()
    with av.open(buf, "w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=Fraction(24))
        stream.width, stream.height = size
        stream.pix_fmt = "yuv420p"
        stream.codec_context.gop_size = gop
        stream.options = {"sc_threshold": "0", "bf": "2"}  # fixed keyframe interval, B-frames
        for frame in make_video_frames(n_frames, size, seed=7):
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode())
    return buf.getvalue()


def test_one_keyframe_interval_reads_in_order():
    assert decode_in_order([0], [0, 17, 34, 51, 68, 85, 102, 119])


def test_sparse_frames_of_a_long_video_seek():
    keys = list(range(0, 3600, 250))
    assert not decode_in_order(keys, uniform_indices(3600, 8))
    assert decode_in_order(keys, uniform_indices(3600, 600))  # dense: every interval is decoded anyway


def test_the_rule_counts_decoded_frames():
    # keyframes every 100: frames 10 and 290 -> in order 291 frames; seeking (11 + s) + (91 + s)
    seeking = 11 + 91 + 2 * SEEK_COST_FRAMES
    assert decode_in_order(range(0, 300, 100), [10, 290]) == (291 <= seeking)
    assert not decode_in_order(range(0, 300, 100), [10, 290])


@pytest.fixture(scope="module")
def multi_gop() -> bytes:
    return _video(n_frames=60, gop=10)


@pytest.mark.parametrize("indices", [
    [0, 8, 17, 25, 34, 42, 51, 59],     # uniform:8 over 6 keyframe intervals: read in order
    [3, 3, 10, 22, 22, 59],             # repeats, as the visionreward rule may give
    [41, 5, 12],                        # any order
    [55],                               # one frame past several keyframes
])
@pytest.mark.parametrize("in_order", [True, False])
def test_in_order_and_seeking_give_the_same_frames(multi_gop, indices, in_order, monkeypatch):
    monkeypatch.setattr(frame_decode, "decode_in_order", lambda keys, idx: in_order)
    reader = decord.VideoReader(io.BytesIO(multi_gop), width=56, height=56, num_threads=1)
    assert list(reader.get_key_indices()) == list(range(0, 60, 10))
    want = reader.get_batch(indices).asnumpy()
    fresh = decord.VideoReader(io.BytesIO(multi_gop), width=56, height=56, num_threads=1)
    got = frame_decode._read_frames(fresh, np.array(indices))
    assert np.array_equal(got, want)
    # control: other frames differ, so equality above is not vacuous
    assert not np.array_equal(want, reader.get_batch([(i + 1) % 60 for i in indices]).asnumpy())


def test_real_video_in_order_matches_seeking():
    path = MEDIA / "curator_test_video.mp4"
    if not path.exists():
        pytest.skip(f"shared media not found: {path}")
    data = path.read_bytes()
    reader = decord.VideoReader(io.BytesIO(data), width=112, height=84, num_threads=1)
    indices = uniform_indices(len(reader), 16)
    want = reader.get_batch(indices.tolist()).asnumpy()
    assert decode_in_order(reader.get_key_indices(), indices)  # a short clip: the in-order path
    got = frame_decode._read_frames(decord.VideoReader(io.BytesIO(data), width=112, height=84, num_threads=1),
                                    indices)
    assert np.array_equal(got, want)
