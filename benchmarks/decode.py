"""Decode throughput per core: the decode stage against a bare decord loop and against the
bundled FFmpeg decoding the same file with nothing else done. All in one run, interleaved.

Run by hand from the repository root: `python benchmarks/decode.py [--repeats 3] [--clips 1]`.

Files: 5 s clips at 24 fps (120 frames) at 480p, 720p and 1080p, synthesised here with
PyAV (a slow pan over a picture, a bar sweeping across it), in H.264 and, when the
bundled FFmpeg has an encoder for it, HEVC; x264 defaults, x265's ultrafast preset (one
keyframe interval per clip either way, as generated clips usually have). Everything runs
pinned to one core (`--cpu`), the stage's child process and reader threads included, each
variant on one decoding thread:
  raw FFmpeg     PyAV's plain decode loop over every frame of the file, no conversion:
                 the limit on this machine
  bare decord    read bytes, decord.VideoReader(BytesIO, width, height), get_batch
  in-process     our decode logic called directly (actors/frame_decode.py: probe of size and
                 rotation, the in-order/seek choice, decord at the model's size)
  stage          MediaDecoder (threads=1): the same in its child process (bytes in and frames
                 back over a socket, the next file read while this one decodes)
Frames are 'uniform:8' at the default video size. Items/s is files per second; frames/s
is frames handed on (8 per item) for the stage and the bare loop, and frames decoded
(every frame) for raw FFmpeg. Figures are medians over repeats; the ratios come last.
"""
from __future__ import annotations

import argparse
import io
import os
import statistics
import tempfile
import time
from fractions import Fraction
from pathlib import Path

import av
import decord
import numpy as np

from actors.frame_decode import decode_video
from actors.frame_sampling import uniform_indices
from actors.media_decoder import MediaDecoder
from actors.synthetic_media import make_picture
from pipeline.resize_policy import smart_resize
from schemas.frames_spec import parse_frames_spec
from schemas.job_config import DecodeConfig

# worker_nice 0: the child at the benchmark's own priority (niceness is a policy for sharing
# cores with a CPU scorer, not a cost of decoding).
CFG = DecodeConfig(frames="uniform:8", worker_nice=0, resize_rule="smart_resize", resize_factor=28)  # Qwen2-VL's
SPEC = parse_frames_spec(CFG.frames)
SIZES = {"480p": (854, 480), "720p": (1280, 720), "1080p": (1920, 1080)}
FPS, SECONDS = 24, 5


def write_clip(path: Path, size: tuple[int, int], codec: str, seed: int) -> Path:
    width, height = size
    canvas = make_picture((width + width // 4, height), seed)
    with av.open(str(path), "w", format="mp4") as container:
        stream = container.add_stream(codec, rate=Fraction(FPS))
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        if codec == "libx265":
            # x265's default preset encodes 1080p at about 1 frame/s on 2 cores; ultrafast
            # keeps the run short (its streams lack SAO and use fewer B-frames: lighter to decode).
            stream.options = {"x265-params": "log-level=error", "preset": "ultrafast"}
        n = FPS * SECONDS
        for i in range(n):
            x = (width // 4) * i // (n - 1)
            frame = np.ascontiguousarray(canvas[:, x:x + width])
            bar = (width // 16) + (width - width // 8) * i // (n - 1)
            frame[height // 2:, bar - width // 32:bar] = (255, 255, 0)
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode())
    return path


def raw_ffmpeg(paths: list[Path]) -> int:
    decoded = 0
    for path in paths:
        with av.open(io.BytesIO(path.read_bytes())) as container:
            stream = container.streams.video[0]
            stream.codec_context.thread_count = 1
            decoded += sum(1 for _ in container.decode(stream))
    return decoded


def bare_decord(paths: list[Path]) -> int:
    out = 0
    for path in paths:
        with av.open(str(path)) as container:
            cc = container.streams.video[0].codec_context
            height, width = smart_resize(cc.height, cc.width, CFG.resize_factor, CFG.video_min_pixels,
                                         CFG.video_max_pixels)
        reader = decord.VideoReader(io.BytesIO(path.read_bytes()), width=width, height=height, num_threads=1)
        out += len(reader.get_batch(uniform_indices(len(reader), SPEC.n).tolist()).asnumpy())
    return out


def in_process(paths: list[Path]) -> int:
    return sum(len(decode_video(path.read_bytes(), CFG, SPEC, threads=1).frames) for path in paths)


def stage(decoder: MediaDecoder, paths: list[Path]) -> int:
    n = len(paths)
    batch = {"id": list(range(n)), "uri": [str(p) for p in paths], "media_type": ["video"] * n,
             "status": ["ok"] * n, "error": [None] * n}
    out = decoder({k: np.array(v, dtype=object) for k, v in batch.items()})
    assert list(out["status"]) == ["ok"] * n, list(out["error"])
    return sum(int(shape[0]) for shape in out["frames_shape"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--clips", type=int, default=1, help="clips per resolution and codec")
    parser.add_argument("--cpu", type=int, default=0, help="the one core everything runs on (the child inherits it)")
    args = parser.parse_args()
    os.sched_setaffinity(0, {args.cpu})  # per-core figures: the stage's child cannot borrow a second core
    codecs = [c for c in ("libx264", "libx265") if c in av.codecs_available]
    with tempfile.TemporaryDirectory() as tmp:
        sets = {f"{name} {codec[3:]}": [write_clip(Path(tmp) / f"{name}_{codec}_{k}.mp4", size, codec, seed=k)
                                        for k in range(args.clips)]
                for codec in codecs for name, size in SIZES.items()}
        decoder = MediaDecoder(CFG.model_dump(), threads=1)
        runs = {"raw FFmpeg": raw_ffmpeg, "bare decord": bare_decord, "in-process": in_process,
                "stage": lambda p: stage(decoder, p)}
        seconds: dict[tuple[str, str], list[float]] = {}
        frames: dict[tuple[str, str], int] = {}
        names = list(runs)
        for repeat in range(args.repeats):
            order = names[repeat % len(names):] + names[:repeat % len(names)]  # no variant always first
            for set_name, paths in sets.items():
                for run_name in order:
                    t0 = time.perf_counter()
                    frames[(set_name, run_name)] = runs[run_name](paths)
                    seconds.setdefault((set_name, run_name), []).append(time.perf_counter() - t0)
        decoder.close()
    median = {key: statistics.median(values) for key, values in seconds.items()}
    print(f"one thread each; {args.clips} clips of {SECONDS} s at {FPS} fps per set; median of {args.repeats}")
    print(f"{'set':12s} {'variant':12s} {'items/s':>8s} {'frames/s':>9s}")
    for (set_name, run_name), value in median.items():
        items = len(sets[set_name]) / value
        print(f"{set_name:12s} {run_name:12s} {items:8.2f} {frames[(set_name, run_name)] / value:9.1f}")
    print("ratios, items/s (>1: the stage is faster)")
    for set_name in sets:
        bare = median[(set_name, "bare decord")] / median[(set_name, "stage")]
        raw = median[(set_name, "raw FFmpeg")] / median[(set_name, "stage")]
        print(f"{set_name:12s} stage / bare decord {bare:5.2f}   stage / raw FFmpeg {raw:5.2f}")
    total = {run: sum(median[(s, run)] for s in sets) for run in runs}
    print(f"all sets     stage / bare decord {total['bare decord'] / total['stage']:5.2f}   "
          f"stage / raw FFmpeg {total['raw FFmpeg'] / total['stage']:5.2f}")


if __name__ == "__main__":
    main()
