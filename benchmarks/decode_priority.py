"""How much a decoder sharing the cores slows a CPU scorer, at equal priority and at the
decode stage's default niceness (`decode.worker_nice`). Run by hand:

    python benchmarks/decode_priority.py

The scorer scores one batch of decoded items (8 images, 4 videos) in this process, three
ways, interleaved per repeat: alone; beside a process that decodes videos with decord
without pause at niceness 0; the same at `DecodeConfig().worker_nice`. A continuous decoder
is the worst case: in a job, decoding comes in bursts. Prints the median seconds of each
and, last, the slowdown ratios.
"""
from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


from actors.checklist_scorer import ChecklistScorer
from actors.demo_model import build_demo_model
from pipeline_overhead import decoded_batch, make_manifest  # this folder is on sys.path when run as a script
from schemas.checklist_set import checklists_to_json, resolve_checklists
from schemas.job_config import DecodeConfig, ModelConfig

# The competitor: decord decoding the same videos in a loop, at a given niceness.
DECODE_LOOP = """
import os, sys, decord
os.nice(int(sys.argv[1]))
while True:
    for path in sys.argv[2:]:
        decord.VideoReader(path, width=224, height=168).get_batch(list(range(0, 48, 6))).asnumpy()
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", default="bench", choices=["tiny", "bench"])
    ap.add_argument("--repeats", type=int, default=4)
    args = ap.parse_args()
    root = Path(tempfile.mkdtemp(prefix="vrscore-bench-"))
    model = build_demo_model(root / "model", preset=args.preset)
    manifest = make_manifest(root / "media", n_images=8, n_videos=4)
    decode = DecodeConfig(frames="uniform:8", video_max_pixels=128 * 28 * 28)
    checklists = resolve_checklists(["default"])
    decoded = decoded_batch(manifest, decode, checklists)
    scorer = ChecklistScorer(ModelConfig(model=str(model)).model_dump(), decode.model_dump(),
                             checklists_to_json(checklists))
    scorer(decoded)  # warm-up
    videos = [uri for uri, kind in zip(decoded["uri"], decoded["media_type"]) if kind == "video"]

    def seconds(nice: int | None) -> float:
        rival = None if nice is None else subprocess.Popen([sys.executable, "-c", DECODE_LOOP, str(nice), *videos])
        try:
            time.sleep(0 if rival is None else 1.0)  # let the rival reach its loop
            start = time.perf_counter()
            scorer(decoded)
            return time.perf_counter() - start
        finally:
            if rival is not None:
                rival.kill()
                rival.wait()

    nice = DecodeConfig().worker_nice
    runs: dict[str, list[float]] = {"alone": [], "decoder at nice 0": [], f"decoder at nice {nice}": []}
    for _ in range(args.repeats):  # interleaved, so drifting machine speed hits all three alike
        for label, level in zip(runs, (None, 0, nice)):
            runs[label].append(seconds(level))
    median = {label: statistics.median(v) for label, v in runs.items()}
    for label, value in median.items():
        print(f"scorer, {label:<20}: {value:.2f} s (median of {args.repeats})")
    print(f"slowdown beside a decoder: nice 0 {median['decoder at nice 0'] / median['alone']:.2f}x, "
          f"nice {nice} {median[f'decoder at nice {nice}'] / median['alone']:.2f}x")


if __name__ == "__main__":
    main()
