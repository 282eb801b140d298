"""MediaDecoder: good decodes, every bad-input kind, pass-through, timeout and crash isolation."""
from __future__ import annotations

import os
import signal
import threading
import time

import av
import decord
import fsspec
import numpy as np
import pytest
from PIL import Image

from actors import bad_media as bad
from actors.decode_worker import DecodeWorker
from actors.media_decoder import MediaDecoder
from actors.media_io import MediaError
from actors.synthetic_media import make_picture, make_video_frames, write_image, write_video
from pipeline.resize_policy import smart_resize
from schemas import status as st
from schemas.job_config import DecodeConfig
from schemas.scores import STAGE_COLUMNS, reserved_column
from tests.paths import MEDIA
from tests.test_media_io import s3_options  # noqa: F401 - fixture
from tests.fifo_helpers import unblock_fifo_later

CFG = DecodeConfig(resize_rule="smart_resize", resize_factor=28)  # Qwen2-VL's, as `vrscore score` resolves it
IMAGE_BOUNDS = (CFG.image_min_pixels, CFG.image_max_pixels)
VIDEO_BOUNDS = (CFG.video_min_pixels, CFG.video_max_pixels)


def real(name: str) -> str:
    if not MEDIA.exists():
        pytest.skip(f"shared media folder not found: {MEDIA}")
    return str(MEDIA / name)


def batch_of(uris, media_types, status=None, **extra) -> dict[str, np.ndarray]:
    n = len(uris)
    return {"id": np.arange(n), "uri": np.array([str(u) for u in uris], dtype=object),
            "media_type": np.array(media_types, dtype=object),
            "status": np.array(status or [st.OK] * n, dtype=object),
            "error": np.array([None] * n, dtype=object), **extra}


def frames(out, i) -> np.ndarray:
    return np.frombuffer(out["frames"][i], dtype=np.uint8).reshape(out["frames_shape"][i])


def decode_one(decoder, uri, media_type) -> np.ndarray:
    out = decoder(batch_of([uri], [media_type]))
    assert out["status"][0] == st.OK, out["error"][0]
    return frames(out, 0)


def close_to(a: np.ndarray, b: np.ndarray, tol: float) -> bool:
    return a.shape == b.shape and float(np.abs(a.astype(np.int16) - b).mean()) < tol


@pytest.fixture(scope="module")
def decoder():
    stage = MediaDecoder(CFG.model_dump())
    yield stage
    stage.close()


@pytest.fixture(scope="module")
def media(tmp_path_factory):
    d = tmp_path_factory.mktemp("media")
    write_image(d / "a.png", (300, 200), seed=1)
    write_image(d / "a.jpg", (300, 200), seed=1)
    write_image(d / "a.webp", (300, 200), seed=1)
    write_image(d / "grid.png", (112, 56), seed=2)
    write_video(d / "clip.mp4", n_frames=16, size=(128, 96), fps=8, seed=4)
    for rotation in (0, 90, 180, 270):
        write_video(d / f"rot{rotation}.mp4", n_frames=4, size=(96, 64), fps=4, seed=5, rotation=rotation)
    write_video(d / "one.mp4", n_frames=1, size=(64, 48), fps=8, seed=6)
    return d


def test_images_decode_at_the_model_size(decoder, media):
    uris = [media / "a.png", media / "a.jpg", media / "a.webp", real("imagereward_1.webp")]
    out = decoder(batch_of(uris, ["image"] * 4))
    assert out["status"].tolist() == [st.OK] * 4 and out["error"].tolist() == [None] * 4
    real_h, real_w = Image.open(uris[3]).size[::-1]
    for i, (h, w) in enumerate([(200, 300)] * 3 + [(real_h, real_w)]):
        assert out["frames_shape"][i].dtype == np.int32
        assert out["frames_shape"][i].tolist() == [1, *smart_resize(h, w, 28, *IMAGE_BOUNDS), 3]
        assert len(out["frames"][i]) == int(np.prod(out["frames_shape"][i]))
    for column in ("fps", "video_duration"):
        assert np.isnan(out[column]).all() and out[column].dtype == np.float64
    # PIL bicubic to the target size, nothing else.
    target = smart_resize(200, 300, 28, *IMAGE_BOUNDS)
    expected = np.asarray(Image.fromarray(make_picture((300, 200), 1)).resize(target[::-1], Image.Resampling.BICUBIC))
    assert np.array_equal(frames(out, 0)[0], expected)
    assert close_to(frames(out, 1)[0], expected, 3) and close_to(frames(out, 2)[0], expected, 3)


def test_the_columns_the_decoder_adds_are_reserved_from_manifests(decoder, media):
    # A kept manifest column of one of these names would be replaced on its way to the output.
    batch = batch_of([media / "a.png", media / "clip.mp4"], ["image", "video"])
    added = set(decoder(batch)) - set(batch)
    assert added and added <= set(STAGE_COLUMNS) and all(reserved_column(c) for c in added)


def test_image_on_the_grid_is_not_resized(decoder, media):
    assert np.array_equal(decode_one(decoder, media / "grid.png", "image")[0], make_picture((112, 56), 2))


@pytest.mark.parametrize(("mode", "suffix", "max_err"), [("L", "png", 0), ("I;16", "png", 0), ("I", "tif", 0),
                                                         ("CMYK", "jpg", 8), ("RGBA", "png", 0), ("LA", "png", 0),
                                                         ("P", "png", 0)])
def test_awkward_pixel_modes_become_rgb(decoder, tmp_path, mode, suffix, max_err):
    expected = bad.write_image_mode(tmp_path / f"m.{suffix}", mode)
    got = decode_one(decoder, tmp_path / f"m.{suffix}", "image")[0]
    assert got.shape == expected.shape and np.abs(got.astype(int) - expected).max() <= max_err


@pytest.mark.parametrize("fmt", ["GIF", "WEBP"])
def test_animated_images_give_their_first_frame(decoder, tmp_path, fmt):
    bad.write_animated(tmp_path / f"anim.{fmt.lower()}", fmt, [(200, 30, 30), (30, 30, 200), (30, 200, 30)])
    got = decode_one(decoder, tmp_path / f"anim.{fmt.lower()}", "image")
    assert got.shape[0] == 1 and np.abs(got[0].astype(int) - (200, 30, 30)).max() <= 2


def test_exif_orientation_is_applied(decoder, tmp_path):
    upright = bad.write_exif_rotated_jpeg(tmp_path / "exif.jpg")
    assert close_to(decode_one(decoder, tmp_path / "exif.jpg", "image")[0], upright, 4)


def test_video_uniform_frames(decoder, media):
    out = decoder(batch_of([media / "clip.mp4"], ["video"]))
    got = frames(out, 0)
    h, w = smart_resize(96, 128, 28, *VIDEO_BOUNDS)
    assert got.shape == (8, h, w, 3) and out["fps"][0] == pytest.approx(8 * 8 / 16)
    assert out["video_duration"][0] == 2.0  # 16 frames at 8 fps; the last one sampled is at 1.75 s
    # Frames 0, 2, 4, 6, 9, 11, 13, 15 of the sweep, in order.
    source = make_video_frames(16, (128, 96), seed=4)[[0, 2, 4, 6, 9, 11, 13, 15]]
    for k in range(8):
        resized = np.asarray(Image.fromarray(source[k]).resize((w, h), Image.Resampling.BILINEAR))
        assert close_to(got[k], resized, 6), k


# duration: frame count / average rate, as transformers' video readers report it (PyAV's stream
# frame counts and rates; the mkv's header has no frame count, its index 310 frames at 30 fps)
@pytest.mark.parametrize(("name", "t", "fps", "duration"), [("curator_test_video.mp4", 7, 2.0, 3.5),
                                                            ("decord_flipping_a_pancake.mkv", 8, 8 * 30 / 310, 310 / 30),
                                                            ("decord_unordered.mov", 4, 32.0, 0.125),
                                                            ("video2dataset_test_video.mp4", 8, 8 * 30 / 3678, 122.6)])
def test_real_videos(decoder, name, t, fps, duration):
    out = decoder(batch_of([real(name)], ["video"]))
    assert out["status"][0] == st.OK, out["error"][0]
    with av.open(real(name)) as container:
        cc = container.streams.video[0].codec_context
        h, w = smart_resize(cc.height, cc.width, 28, *VIDEO_BOUNDS)
    assert out["frames_shape"][0].tolist() == [t, h, w, 3] and out["fps"][0] == pytest.approx(fps, rel=1e-3)
    assert out["video_duration"][0] == pytest.approx(duration, rel=1e-9)


def test_one_frame_video(decoder, media):
    assert decode_one(decoder, media / "one.mp4", "video").shape[0] == 1


def test_rotated_videos_decode_upright(decoder, media):
    upright = decode_one(decoder, media / "rot0.mp4", "video")
    h, w = upright.shape[1:3]
    expected = np.asarray(Image.fromarray(make_video_frames(4, (96, 64), seed=5)[0]).resize((w, h)))
    assert close_to(upright[0], expected, 6)
    for rotation in (90, 180, 270):
        assert close_to(decode_one(decoder, media / f"rot{rotation}.mp4", "video"), upright, 4), rotation


@pytest.mark.parametrize("rotation", [0, 90, 180, 270])
def test_real_rotated_files_follow_their_display_matrix(decoder, rotation):
    path = real(f"decord_video_{rotation}.mov")
    got = decode_one(decoder, path, "video")[0]
    with av.open(path) as container:
        first = next(container.decode(video=0))
        turned = np.rot90(first.to_ndarray(format="rgb24"), k=round(first.rotation / 90) % 4)
    assert (got.shape[0] > got.shape[1]) == (rotation in (90, 270))  # the clip is landscape as stored
    expected = np.asarray(Image.fromarray(np.ascontiguousarray(turned)).resize(got.shape[1::-1]))
    assert close_to(got, expected, 6)


def test_visionreward_frames(media):
    stage = MediaDecoder(CFG.model_copy(update={"frames": "visionreward"}).model_dump())
    try:
        out = stage(batch_of([media / "clip.mp4"], ["video"]))
    finally:
        stage.close()
    got = frames(out, 0)
    # 16 frames at 8 fps: timestamps 0 .. 1.875 s, round(1.875) + 1 = 3 seconds -> frames 0, 8, 15.
    reader = decord.VideoReader(str(media / "clip.mp4"), width=got.shape[2], height=got.shape[1])
    assert np.array_equal(got, reader.get_batch([0, 8, 15]).asnumpy()) and out["fps"][0] == 1.0
    assert out["video_duration"][0] == 2.0


def test_every_bad_input_is_a_row_status(decoder, tmp_path, media):
    cases = [  # (uri, media_type, status, words the message must contain)
        (real("decord_corrupted.mp4"), "video", st.DECODE_ERROR, "corrupt"),
        (bad.write_truncated_mp4(tmp_path / "cut.mp4"), "video", st.DECODE_ERROR, "video"),
        (bad.write_text_file(tmp_path / "text.mp4"), "video", st.DECODE_ERROR, "not a readable video"),
        (bad.write_empty_file(tmp_path / "zero.mp4"), "video", st.EMPTY_FILE, "empty (0 bytes)"),
        (tmp_path / "absent.mp4", "video", st.MISSING_FILE, "no such file"),
        (bad.write_png_bomb(tmp_path / "bomb.png"), "image", st.TOO_LARGE, "decompression bomb"),
        (bad.write_png_bomb(tmp_path / "bomb2.png", (9000, 9000)), "image", st.TOO_LARGE, "max_source_pixels"),
        (bad.write_large_image(tmp_path / "large.png"), "image", st.TOO_LARGE, "10000x8000"),
        (write_image(tmp_path / "thin.png", (1000, 4)), "image", st.DECODE_ERROR, "aspect ratio 250.0"),
        (media / "clip.mp4", "image", st.DECODE_ERROR, "not a recognised image format"),
        (media / "a.png", "audio", st.UNSUPPORTED_MEDIA, "media_type"),
        ("ftp://host/clip.mp4", "video", st.INVALID_URI, "'ftp'"),
        (media / "a.png", "image", st.OK, ""),  # the worker survives all of the above
    ]
    out = decoder(batch_of([c[0] for c in cases], [c[1] for c in cases]))
    for i, (uri, _, status, words) in enumerate(cases):
        assert out["status"][i] == status, (uri, out["error"][i])
        if status != st.OK:
            assert words in out["error"][i], (uri, out["error"][i])
            assert out["frames"][i] == b"" and out["frames_shape"][i].size == 0 and np.isnan(out["fps"][i])
            assert np.isnan(out["video_duration"][i])


def test_video_frames_over_max_source_pixels(media):
    stage = MediaDecoder(CFG.model_copy(update={"max_source_pixels": 128 * 96 - 1}).model_dump())
    try:
        out = stage(batch_of([media / "clip.mp4"], ["video"]))
    finally:
        stage.close()
    assert out["status"][0] == st.TOO_LARGE and "128x96" in out["error"][0]


def test_rows_pass_through_in_order(decoder, media):
    uris = [media / "a.png", "", media / "clip.mp4", media / "x.bin"]
    batch = batch_of(uris, ["image", "image", "video", "video"],
                     status=[st.OK, st.INVALID_ROW, st.OK, st.UNSUPPORTED_MEDIA],
                     prompt=np.array(["p0", None, "p2", "p3"], dtype=object), group=np.array([7, 7, 8, 9]))
    batch["error"][1], batch["error"][3] = "empty uri", "unknown extension"
    before = {k: v.copy() for k, v in batch.items()}
    out = decoder(batch)
    assert out["status"].tolist() == [st.OK, st.INVALID_ROW, st.OK, st.UNSUPPORTED_MEDIA]
    assert out["error"].tolist() == [None, "empty uri", None, "unknown extension"]
    assert [s.tolist() for s in out["frames_shape"]][1::2] == [[], []]
    assert out["frames"][1] == b"" and out["frames_shape"][0][0] == 1 and out["frames_shape"][2][0] == 8
    for key in ("id", "uri", "media_type", "prompt", "group"):
        assert out[key].tolist() == before[key].tolist()
    assert all(np.array_equal(batch[k], before[k]) for k in ("status", "error"))  # input not mutated


def test_fixed_width_status_column_is_not_truncated(decoder, tmp_path):
    batch = batch_of([bad.write_empty_file(tmp_path / "z.mp4")], ["video"])
    batch["status"] = np.array(["ok"])  # dtype <U2, as a plain numpy conversion would give
    assert decoder(batch)["status"][0] == st.EMPTY_FILE


def test_empty_batch(decoder):
    out = decoder(batch_of([], []))
    assert all(len(out[k]) == 0 for k in ("frames", "frames_shape", "fps", "video_duration", "status"))


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs named pipes")
def test_hanging_read_times_out_and_the_next_row_decodes(tmp_path, media):
    os.mkfifo(tmp_path / "hang.mp4")  # opening it for reading blocks until a writer comes: forever
    stage = MediaDecoder(CFG.model_copy(update={"timeout_s": 0.5}).model_dump())
    safety = unblock_fifo_later(tmp_path / "hang.mp4", after_s=8)
    try:
        start = time.monotonic()
        out = stage(batch_of([tmp_path / "hang.mp4", media / "a.png"], ["video", "image"]))
        elapsed = time.monotonic() - start
    finally:
        safety.cancel()
        stage.close()
    assert out["status"].tolist() == [st.TIMEOUT, st.OK], out["error"]
    assert "longer than 0.5 s" in out["error"][0] and elapsed < 5


def test_decoder_crash_is_a_row_error(media):
    big = real("video2dataset_test_video.mp4")  # 1080p: its decode takes seconds, time to crash it
    worker = DecodeWorker(CFG.model_dump(), {})
    try:
        first_pid = worker.pid
        threading.Timer(0.3, os.kill, (first_pid, signal.SIGSEGV)).start()  # as decord does on some files
        with pytest.raises(MediaError) as info:
            worker.decode(big, "video", timeout_s=30)
        assert info.value.status == st.DECODE_ERROR and "SIGSEGV" in info.value.message
        assert worker.decode(str(media / "grid.png"), "image", timeout_s=10).shape == (1, 56, 112, 3)
        assert worker.pid != first_pid
    finally:
        worker.close()
    with pytest.raises(ProcessLookupError):
        os.kill(first_pid, 0)


def test_storage_options_must_be_keyed_by_protocol():
    with pytest.raises(ValueError, match="map a protocol"):
        MediaDecoder(CFG.model_dump(), {"client_kwargs": {"endpoint_url": "http://127.0.0.1:9"}})


def test_reads_s3_through_the_stage(media, s3_options):  # noqa: F811 - fixture
    fsspec.filesystem("s3", **s3_options).pipe("media/a.png", (media / "grid.png").read_bytes())
    stage = MediaDecoder(CFG.model_dump(), {"s3": s3_options})
    try:
        out = stage(batch_of(["s3://media/a.png", "s3://media/none.png"], ["image", "image"]))
    finally:
        stage.close()
    assert out["status"].tolist() == [st.OK, st.MISSING_FILE]
    assert np.array_equal(frames(out, 0)[0], make_picture((112, 56), 2))


@pytest.mark.parametrize("nice", [0, 10])
def test_decode_worker_runs_at_its_configured_niceness(media, nice):
    worker = DecodeWorker(CFG.model_copy(update={"worker_nice": nice}).model_dump(), {})
    try:
        assert worker.decode(str(media / "grid.png"), "image", timeout_s=10).shape == (1, 56, 112, 3)
        own = os.getpriority(os.PRIO_PROCESS, 0)
        assert os.getpriority(os.PRIO_PROCESS, worker.pid) == min(19, own + nice)
    finally:
        worker.close()
