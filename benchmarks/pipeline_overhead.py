"""The whole Ray Data job (read, decode, score, write) against the bare scorer loop on already
decoded inputs: same model, same items, same batch size. Run by hand:

    python benchmarks/pipeline_overhead.py                 # bench-size model, 2 CPU cores
    python benchmarks/pipeline_overhead.py --preset tiny   # overhead-bound: a worst case

Prints items/s of each and the ratio pipeline / bare last (target: >= 0.8). On a CPU-only
machine decode and scoring share the same cores, so the pipeline also pays for decoding that
the bare loop does not; on a GPU machine decode overlaps scoring. Ray's start-up is excluded
(it is paid once per cluster, not per job); the job's own planning, id check and writing are in.
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from actors.checklist_scorer import ChecklistScorer
from actors.demo_model import build_demo_model
from actors.media_decoder import MediaDecoder
from actors.synthetic_media import write_image, write_video
from jobs.score_job import run_score_job
from pipeline.ray_runtime import init_ray
from pipeline.score_pipeline import validate_rows
from schemas.checklist_set import checklists_to_json, resolve_checklists
from schemas.job_config import DecodeConfig, JobConfig, ModelConfig, ResourcesConfig


def make_manifest(root: Path, n_images: int, n_videos: int) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    rows = []
    for k in range(n_images):
        path = write_image(root / f"img{k}.png", size=(448, 336), seed=k)
        rows.append({"id": f"img{k}", "uri": str(path), "prompt": "a lighthouse at dusk"})
    for k in range(n_videos):
        path = write_video(root / f"vid{k}.mp4", n_frames=48, size=(320, 240), fps=12, seed=k)
        rows.append({"id": f"vid{k}", "uri": str(path), "prompt": "a lighthouse at dusk"})
    manifest = root / "manifest.parquet"
    pq.write_table(pa.Table.from_pylist(rows), manifest)
    return manifest


def bare_loop(cfg: JobConfig, manifest: Path) -> float:
    """Seconds for the scorer alone over already decoded batches."""
    checklists = resolve_checklists(cfg.checklist)
    table = pq.read_table(manifest)
    batch = {c: np.array(table[c].to_pylist(), dtype=object) for c in table.column_names}
    batch = validate_rows(batch, {k: c.uses_prompt for k, c in checklists.items()})
    decoded = MediaDecoder(cfg.decode.model_dump())(batch)
    scorer = ChecklistScorer(cfg.model.model_dump(), cfg.decode.model_dump(), checklists_to_json(checklists))
    bs = cfg.resources.batch_size
    n = len(batch["id"])
    t0 = time.perf_counter()
    for start in range(0, n, bs):
        scorer({k: v[start:start + bs] for k, v in decoded.items()})
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", default="bench", choices=["tiny", "bench"])
    ap.add_argument("--images", type=int, default=16)
    ap.add_argument("--videos", type=int, default=8)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    root = Path(tempfile.mkdtemp(prefix="vrscore-bench-"))
    model = build_demo_model(root / "model", preset=args.preset)
    manifest = make_manifest(root / "media", args.images, args.videos)
    n = args.images + args.videos
    init_ray(quiet=True)
    bare, piped = [], []
    for r in range(args.repeats):
        cfg = JobConfig(manifest=str(manifest), out=str(root / f"out{r}"), model=ModelConfig(model=str(model)),
                        decode=DecodeConfig(frames="uniform:8", video_max_pixels=128 * 28 * 28),
                        resources=ResourcesConfig(batch_size=8, decode_batch_size=4))
        bare.append(bare_loop(cfg, manifest))
        t0 = time.perf_counter()
        summary = run_score_job(cfg, quiet=True)
        piped.append(time.perf_counter() - t0)
        assert summary.ok == n, summary.format()
    bare_rate, pipe_rate = n / statistics.median(bare), n / statistics.median(piped)
    print(f"items: {n} ({args.images} images, {args.videos} videos of 8 frames), model preset {args.preset}")
    print(f"bare scorer loop (decoded inputs): {bare_rate:.2f} items/s")
    print(f"whole Ray Data job               : {pipe_rate:.2f} items/s")
    print(f"ratio pipeline / bare scorer     : {pipe_rate / bare_rate:.2f}")


if __name__ == "__main__":
    main()
