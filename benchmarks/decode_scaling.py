"""Does the decode pool grow to the node? One decode-heavy job (the tiny demo model on many
frames of a 2-minute 1080p video) run twice on a local Ray of 8 logical CPUs: with the pool
pinned at one actor (`resources.decode_actors=[1,1]`) and at its default (autoscaling up to
the CPUs the scorer and the read/write tasks leave). Run by hand:

    python benchmarks/decode_scaling.py                       # 10 rows, uniform:16 frames
    python benchmarks/decode_scaling.py --rows 6 --frames uniform:4   # a quick look

Per run it prints the decode parallelism (decode task-seconds per wall-clock second of the
decode stage, from OUT/stats.json: how many actors were decoding at once), the largest pool
reached, and rows/s over the whole job; then the ratios, default / pinned. The parallelism
is the headline: it is what the node's cores turn into speed. On a machine with fewer
physical cores than logical CPUs (2 cores under 8 logical CPUs), the decoders share those
cores, so the wall-clock gain is capped by the cores, not by the pool.
"""
from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from actors.demo_model import build_demo_model
from jobs.score_job import run_score_job
from pipeline.ray_runtime import init_ray
from schemas.job_config import DecodeConfig, JobConfig, ModelConfig, ResourcesConfig

VIDEO = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "media" / "video2dataset_test_video.mp4"
SETTINGS = {"pinned at 1": (1, 1), "default": None}


def run(root: Path, name: str, manifest: Path, model: Path, frames: str, actors: tuple[int, int] | None) -> dict:
    cfg = JobConfig(manifest=str(manifest), out=str(root / f"out-{name.replace(' ', '-')}"),
                    model=ModelConfig(model=str(model)),
                    decode=DecodeConfig(frames=frames, video_max_pixels=50176),
                    resources=ResourcesConfig(decode_actors=actors))
    summary = run_score_job(cfg, quiet=True)
    rows = summary.rows
    assert summary.ok == rows, summary.format()
    decode = summary.run["stages"]["decode"]
    return {"parallelism": decode["parallelism"], "actors": summary.run["decode_actors_max"],
            "bound": summary.run["bound_stage"], "seconds": summary.run["seconds"],
            "rows_per_s": rows / summary.run["seconds"], "rows": rows}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=10, help="rows of the 1080p video in the manifest")
    ap.add_argument("--frames", default="uniform:16", help="decode.frames")
    ap.add_argument("--cpus", type=int, default=8, help="logical CPUs of the local Ray")
    ap.add_argument("--video", type=Path, default=VIDEO)
    args = ap.parse_args()
    if not args.video.exists():
        raise SystemExit(f"video not found: {args.video} (pass --video)")
    root = Path(tempfile.mkdtemp(prefix="vrscore-decode-scaling-"))
    model = build_demo_model(root / "model", preset="tiny")
    manifest = root / "manifest.parquet"
    pq.write_table(pa.Table.from_pylist([{"id": f"v{k}", "uri": str(args.video), "prompt": "a fox"}
                                         for k in range(args.rows)]), manifest)
    init_ray(num_cpus=args.cpus, quiet=True)
    results = {name: run(root, name, manifest, model, args.frames, actors) for name, actors in SETTINGS.items()}
    print(f"{args.rows} rows of {args.video.name}, decode.frames={args.frames}, tiny model, "
          f"{args.cpus} logical CPUs")
    for name, r in results.items():
        print(f"{name:<12} decode parallelism {r['parallelism']:5.2f}   decode actors (max) {r['actors']}   "
              f"{r['rows_per_s']:.3f} rows/s ({r['seconds']:.1f} s)   bound: {r['bound']}")
    one, default = results["pinned at 1"], results["default"]
    print(f"ratio default / pinned: parallelism {default['parallelism'] / one['parallelism']:.2f}x, "
          f"rows/s {default['rows_per_s'] / one['rows_per_s']:.2f}x")


if __name__ == "__main__":
    main()
