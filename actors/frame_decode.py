"""Bytes -> uint8 RGB frames at the size the model's resize rule gives (`DecodeConfig.resize_rule`,
`pipeline/resize_policy.py`). Runs inside the decode worker process.

Images (Pillow): EXIF orientation applied; 16-bit grey scaled to 8 bits; alpha composited
on white; palette, grey, CMYK converted to RGB. Animated GIF/WebP give their first frame
(a generated image is scored as the still a viewer sees first, not as a video).

Videos (decord, resized while decoding): the display rotation is read with PyAV, only to
compute the target size upright. decord 0.6.0 already applies the rotation itself and
takes width/height in the upright orientation (checked against PyAV's raw frames turned
by the display matrix, tests/test_media_decoder.py), so frames are not turned again here.
decord scales inside FFmpeg to the model's size; the sampled frames are read in order
(frames between decoded but not converted) or by seeking, whichever decodes fewer frames
(`actors.frame_sampling.decode_in_order`); both give the same frames.
"""
from __future__ import annotations

import io
import math
import re
from typing import NamedTuple

import av
import decord
import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from actors.media_io import MediaError
from actors.frame_sampling import decode_in_order, fixed_rate_indices, uniform_indices, visionreward_indices
from pipeline.resize_policy import RESIZE_RULES, UNRESOLVED_RULE
from schemas import status as st
from schemas.frames_spec import FramesSpec
from schemas.job_config import DecodeConfig

_SIXTEEN_BIT_MODES = {"I;16", "I;16L", "I;16B", "I;16N", "I"}
_ALPHA_MODES = {"RGBA", "LA", "PA", "RGBa", "La"}
# decord prefixes its errors with "[hh:mm:ss] /build/path/file.cc:123: " (once per re-throw).
_DECORD_PREFIX_RE = re.compile(r"\[\d\d:\d\d:\d\d\] \S+:\d+: ")


class DecodedMedia(NamedTuple):
    frames: np.ndarray  # (T, H, W, 3) uint8, C order
    fps: float  # rate of the sampled frames; NaN for images
    duration: float = math.nan  # the video's length in seconds (`video_duration`); NaN for images or unknown
    times: tuple[float, ...] = ()  # each frame's time in seconds: its index / the average rate; () for images


def _detail(exc: BaseException) -> str:
    if isinstance(exc, av.FFmpegError) and exc.strerror:
        return exc.strerror
    return _DECORD_PREFIX_RE.sub("", str(exc)).strip()[:300] or type(exc).__name__


def _target_size(height: int, width: int, cfg: DecodeConfig, media_type: str) -> tuple[int, int]:
    """The size the model's rule gives (`cfg.resize_rule`, resolved from the model's family)."""
    lo, hi = (cfg.image_min_pixels, cfg.image_max_pixels) if media_type == "image" else (
        cfg.video_min_pixels, cfg.video_max_pixels)
    rule = RESIZE_RULES[cfg.resize_rule or UNRESOLVED_RULE]
    try:
        return rule(height, width, cfg.resize_factor, lo, hi)
    except ValueError as exc:
        raise MediaError(st.DECODE_ERROR, f"cannot be resized for the model: {exc}") from None


def _check_source_pixels(width: int, height: int, cfg: DecodeConfig, what: str) -> None:
    if width * height > cfg.max_source_pixels:
        raise MediaError(st.TOO_LARGE, f"{what} is {width}x{height} = {width * height} pixels, over the limit "
                         f"of {cfg.max_source_pixels} (max_source_pixels); refused before decoding")


def _to_rgb8(img: Image.Image) -> Image.Image:
    if img.mode in _SIXTEEN_BIT_MODES:
        # PIL's own conversion clips 16-bit values at 255 (a white image); scale instead.
        # Mode "I" is assumed to hold 16-bit values, as 16-bit PNG/TIFF decoders produce.
        grey = np.clip(np.rint(np.asarray(img, dtype=np.float64) / 257.0), 0, 255).astype(np.uint8)
        return Image.fromarray(grey).convert("RGB")
    if img.mode in _ALPHA_MODES or "transparency" in img.info:
        rgba = img.convert("RGBA")
        return Image.alpha_composite(Image.new("RGBA", rgba.size, (255, 255, 255, 255)), rgba).convert("RGB")
    return img.convert("RGB")


def decode_image(data: bytes, cfg: DecodeConfig) -> DecodedMedia:
    """One (1, H, W, 3) frame at the size of the model's rule (bicubic)."""
    try:
        img = Image.open(io.BytesIO(data))
    except Image.DecompressionBombError as exc:
        raise MediaError(st.TOO_LARGE, f"image refused before decoding: {exc}") from None
    except UnidentifiedImageError:
        raise MediaError(st.DECODE_ERROR, "not a recognised image format (corrupt, or not an image)") from None
    except Exception as exc:  # noqa: BLE001 - a malformed header can raise anything
        raise MediaError(st.DECODE_ERROR, f"image header could not be read: {_detail(exc)}") from None
    _check_source_pixels(img.width, img.height, cfg, "image")
    try:
        rgb = _to_rgb8(ImageOps.exif_transpose(img))
    except Exception as exc:  # noqa: BLE001 - truncated or corrupt pixel data
        raise MediaError(st.DECODE_ERROR, f"image pixels could not be decoded: {_detail(exc)}") from None
    height, width = _target_size(rgb.height, rgb.width, cfg, "image")
    if rgb.size != (width, height):
        rgb = rgb.resize((width, height), Image.Resampling.BICUBIC)
    return DecodedMedia(np.asarray(rgb)[None], math.nan)


def _probe_video(data: bytes, cfg: DecodeConfig) -> tuple[int, int]:
    """(height, width) of the upright video; too_large is decided before any frame is decoded."""
    try:
        with av.open(io.BytesIO(data)) as container:
            if not container.streams.video:
                raise MediaError(st.DECODE_ERROR, "no video stream in the file")
            stream = container.streams.video[0]
            width, height = stream.codec_context.width, stream.codec_context.height
            _check_source_pixels(width, height, cfg, "video frame")
            # The display matrix is exposed per decoded frame only, so decode the first one.
            first = next(container.decode(stream), None)
    except MediaError:
        raise
    except Exception as exc:  # noqa: BLE001 - PyAV raises FFmpegError subclasses and EOFError
        raise MediaError(st.DECODE_ERROR, f"not a readable video: {_detail(exc)}") from None
    if first is None:
        raise MediaError(st.DECODE_ERROR, "the video stream has no decodable frames")
    quarter_turns = round(first.rotation / 90) % 2
    return (first.width, first.height) if quarter_turns else (first.height, first.width)


def video_duration(frame_count: int, average_fps: float) -> float:
    """The video's length in seconds as transformers' video readers report it to a processor
    (`VideoMetadata.duration` = total frames / average frame rate in `read_video_decord` and
    `read_video_pyav`, transformers/video_utils.py), which SmolVLM writes into its prompt; NaN
    when the container gives no frame rate."""
    return frame_count / average_fps if average_fps > 0 and frame_count > 0 else math.nan


def _read_frames(reader: decord.VideoReader, indices: np.ndarray) -> np.ndarray:
    """The frames at `indices` (any order, repeats allowed), by whichever of decoding in
    order or seeking decodes fewer frames (`decode_in_order`). In order, the frames
    between are decoded but skipped (`skip_frames`: not scaled or converted to RGB)."""
    keys = np.asarray(reader.get_key_indices(), dtype=np.int64)
    if not decode_in_order(keys, indices):
        return reader.get_batch(indices.tolist()).asnumpy()
    wanted = np.unique(indices)
    before = keys[keys <= wanted[0]]
    position = int(before[-1]) if before.size else 0
    if position > 0:
        reader.seek(position)  # a keyframe: the seek lands exactly there
    got = {}
    for index in wanted.tolist():
        if index > position:
            reader.skip_frames(index - position)
        got[index] = reader.next().asnumpy()
        position = index + 1
    return np.stack([got[i] for i in indices.tolist()])


def decode_video(data: bytes, cfg: DecodeConfig, spec: FramesSpec, threads: int = 1) -> DecodedMedia:
    """(T, H, W, 3) frames picked by `spec`, decoded by decord at the size of the model's rule
    with `threads` FFmpeg decoding threads (0 = one per core of the machine)."""
    height, width = _target_size(*_probe_video(data, cfg), cfg, "video")
    try:
        reader = decord.VideoReader(io.BytesIO(data), width=width, height=height, num_threads=threads)
        n_total = len(reader)
        if n_total < 1:
            raise MediaError(st.DECODE_ERROR, "the video has no frames")
        avg_fps = reader.get_avg_fps()
        starts = reader.get_frame_timestamp(np.arange(n_total))[:, 0]
        if spec.kind == "uniform":
            indices = uniform_indices(n_total, spec.n)
            # As Qwen2-VL's video utils: frames taken per second of the whole video.
            fps = len(indices) * avg_fps / n_total if avg_fps > 0 else math.nan
        elif spec.kind == "fps":
            if not avg_fps > 0:
                raise MediaError(st.DECODE_ERROR, "the video has no frame rate, so frames cannot be taken at "
                                 f"a fixed rate ({cfg.frames}); use 'uniform:N'")
            indices, fps = fixed_rate_indices(starts, n_total / avg_fps, spec.rate, spec.n)
        else:
            indices = visionreward_indices(starts, spec.n)
            fps = 1.0
        frames = _read_frames(reader, indices)
    except MediaError:
        raise
    except Exception as exc:  # noqa: BLE001 - decord raises DECORDError/RuntimeError on bad streams
        raise MediaError(st.DECODE_ERROR, f"video frames could not be decoded (corrupt or truncated "
                         f"stream): {_detail(exc)}") from None
    # The scorer takes frames of a model-size rule as they are: never pass on another size.
    if frames.shape[1:] != (height, width, 3):
        raise MediaError(st.DECODE_ERROR, f"decord returned frames of {frames.shape[1:]}, expected {(height, width, 3)}")
    # As transformers' video readers give a processor the frames' times (`VideoMetadata.timestamps`
    # = frames_indices / fps), which Qwen3-VL, SmolVLM and GLM-4.1V write into the prompt: on a
    # constant-rate video, each frame's start time; the start times where the rate is unknown.
    times = tuple(float(t) for t in (indices / avg_fps if avg_fps > 0 else starts[indices] - starts[0]))
    return DecodedMedia(np.ascontiguousarray(frames), fps, video_duration(n_total, avg_fps), times)
