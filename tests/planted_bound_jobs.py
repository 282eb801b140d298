"""Two planted score jobs on a local Ray of 8 logical CPUs, run as its own process by
tests/test_bound_stage_jobs.py (the test session's Ray has 4). Prints one JSON line per job:
its stats.json run entry, its summary text and the ids written.

- decode-bound: the tiny demo model on many 1080p frames (the shared 2-minute 1080p video,
  one row per block so the decode pool can grow), scored at a tiny size.
- score-bound: the 33.6M-parameter `bench` model on tiny images (decoding is trivial).
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq


def main(tmp: Path, video: str) -> None:
    from actors.demo_model import build_demo_model
    from actors.synthetic_media import write_image
    from jobs.score_job import run_score_job
    from pipeline.ray_runtime import init_ray
    from schemas.job_config import DecodeConfig, JobConfig, ModelConfig, ResourcesConfig

    init_ray(num_cpus=8, quiet=True)
    one_row_blocks = ResourcesConfig(batch_size=1, decode_batch_size=1, rows_per_file=1)
    jobs = {
        "decode": ([{"id": f"v{k}", "uri": video, "prompt": "a fox"} for k in range(6)],
                   build_demo_model(tmp / "tiny", preset="tiny"),
                   DecodeConfig(frames="uniform:8", video_min_pixels=56 * 56, video_max_pixels=56 * 56)),
        "score": ([{"id": f"i{k}", "uri": str(write_image(tmp / f"i{k}.png", (56, 56), seed=k)), "prompt": "a fox"}
                   for k in range(4)],
                  build_demo_model(tmp / "bench", preset="bench"),
                  DecodeConfig(image_min_pixels=56 * 56, image_max_pixels=56 * 56)),
    }
    for name, (rows, model, decode) in jobs.items():
        pq.write_table(pa.Table.from_pylist(rows), tmp / f"{name}.parquet")
        cfg = JobConfig(manifest=str(tmp / f"{name}.parquet"), out=str(tmp / f"out_{name}"),
                        model=ModelConfig(model=str(model)), decode=decode, resources=one_row_blocks)
        summary = run_score_job(cfg, quiet=True)
        ids = pq.read_table(tmp / f"out_{name}" / "scores", columns=["id"])["id"].to_pylist()
        stats = json.loads((tmp / f"out_{name}" / "stats.json").read_text())
        print(json.dumps({"job": name, "stats": stats, "summary": summary.format(), "ids": ids,
                          "manifest_ids": [r["id"] for r in rows]}), flush=True)


if __name__ == "__main__":
    main(Path(sys.argv[1]), sys.argv[2])
