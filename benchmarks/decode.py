"""Decode-stage throughput: MediaDecoder against a bare decord loop doing the same work.

Run by hand from the repository root: `python benchmarks/decode.py [--repeats 5]`.

All three variants decode the same files to the same frames ('uniform:8') at the same
output size, reading the bytes from local disk:
  bare decord   read bytes, decord.VideoReader(BytesIO, width, height), get_batch
  in-process    our decode logic called directly (adds the PyAV probe of size/rotation)
  MediaDecoder  the stage: the same logic in its child process (adds one socket round
                trip and one copy of the frames per row)
Files: synthetic H.264 clips (64 frames 256x256, 300 frames 640x360) and the real 1080p
video2dataset_test_video.mp4. Figures are medians over repeats of frames per second, the
variants interleaved (in rotating order) so machine drift hits all of them alike.
"""
from __future__ import annotations

import argparse
import io
import statistics
import tempfile
import time
from pathlib import Path

import av
import decord
import numpy as np

from actors.frame_decode import decode_video
from actors.media_decoder import MediaDecoder
from actors.synthetic_media import write_video
from pipeline.frame_sampling import parse_frames_spec, uniform_indices
from pipeline.resize_policy import smart_resize
from schemas.job_config import DecodeConfig

MEDIA = Path(__file__).resolve().parents[2] / "shared" / "data" / "media"
CFG = DecodeConfig(frames="uniform:8")
SPEC = parse_frames_spec(CFG.frames)


def target_size(path: Path) -> tuple[int, int]:
    with av.open(str(path)) as container:
        cc = container.streams.video[0].codec_context
        return smart_resize(cc.height, cc.width, CFG.resize_factor, CFG.video_min_pixels, CFG.video_max_pixels)


def bare_decord(paths: list[Path], sizes: dict[Path, tuple[int, int]]) -> int:
    n_frames = 0
    for path in paths:
        height, width = sizes[path]
        reader = decord.VideoReader(io.BytesIO(path.read_bytes()), width=width, height=height)
        n_frames += len(reader.get_batch(uniform_indices(len(reader), SPEC.n).tolist()).asnumpy())
    return n_frames


def in_process(paths: list[Path]) -> int:
    return sum(len(decode_video(path.read_bytes(), CFG, SPEC).frames) for path in paths)


def stage(decoder: MediaDecoder, paths: list[Path]) -> int:
    n = len(paths)
    batch = {"id": list(range(n)), "uri": [str(p) for p in paths], "media_type": ["video"] * n,
             "status": ["ok"] * n, "error": [None] * n}
    out = decoder({k: np.array(v, dtype=object) for k, v in batch.items()})
    assert list(out["status"]) == ["ok"] * n, list(out["error"])
    return sum(int(shape[0]) for shape in out["frames_shape"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        small = [write_video(Path(tmp) / f"s{k}.mp4", 64, (256, 256), 24, seed=k) for k in range(4)]
        small += [write_video(Path(tmp) / f"m{k}.mp4", 300, (640, 360), 30, seed=10 + k) for k in range(2)]
        sets = {"synthetic": small, "1080p": [MEDIA / "video2dataset_test_video.mp4"]}
        sizes = {path: target_size(path) for paths in sets.values() for path in paths}
        start = time.perf_counter()
        decoder = MediaDecoder(CFG.model_dump())
        startup_s = time.perf_counter() - start
        runs = {"bare decord": lambda p: bare_decord(p, sizes), "in-process": in_process,
                "MediaDecoder": lambda p: stage(decoder, p)}
        seconds: dict[tuple[str, str], list[float]] = {}
        frames: dict[str, int] = {}
        names = list(runs)
        for repeat in range(args.repeats):
            order = names[repeat % len(names):] + names[:repeat % len(names)]  # no variant always first
            for set_name, paths in sets.items():
                for run_name in order:
                    t0 = time.perf_counter()
                    frames[set_name] = runs[run_name](paths)
                    seconds.setdefault((set_name, run_name), []).append(time.perf_counter() - t0)
        decoder.close()
    median = {key: statistics.median(values) for key, values in seconds.items()}
    print(f"decode worker start-up: {startup_s:.2f} s (once per stage instance)")
    for (set_name, run_name), value in median.items():
        print(f"{set_name:9s} {run_name:12s}: {frames[set_name] / value:7.1f} frames/s")
    for set_name, paths in sets.items():
        cost_ms = 1000 * (median[(set_name, "MediaDecoder")] - median[(set_name, "in-process")]) / len(paths)
        print(f"{set_name:9s} child-process cost per video: {cost_ms:+.1f} ms")
    total = {run: sum(median[(set_name, run)] for set_name in sets) for run in runs}
    ratio = total["bare decord"] / total["MediaDecoder"]
    print(f"ratio MediaDecoder / bare decord, frames/s over all files: {ratio:.2f}")


if __name__ == "__main__":
    main()
