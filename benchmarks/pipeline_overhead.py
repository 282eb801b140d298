"""The whole Ray Data job (read, decode, score, write) against the bare scorer loop on already
decoded inputs: same model, same items, same batch size. Run by hand:

    python benchmarks/pipeline_overhead.py                 # bench-size model, 2 CPU cores
    python benchmarks/pipeline_overhead.py --preset tiny   # overhead-bound: a worst case

A job pays a fixed start-up (Ray Data planning, actor processes, imports, model load, the id
check) once, then streams. Both are measured: the job runs at two sizes (N and 4N items), the
difference gives its steady rate, and the rest of the small job's time is its fixed cost. The
last line is the steady ratio, pipeline / bare scorer (target: >= 0.8): the rate a job of
millions of items sees. On a CPU-only machine decode and scoring share the same cores, so the
pipeline also pays for decoding that the bare loop does not. Ray's own start-up is excluded
(it is paid once per cluster, not per job).
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


def decoded_batch(manifest: Path, decode: DecodeConfig, checklists: dict) -> dict[str, np.ndarray]:
    """Every row of `manifest` validated and decoded in this process, as the scorer receives them."""
    table = pq.read_table(manifest)
    batch = {c: np.array(table[c].to_pylist(), dtype=object) for c in table.column_names}
    batch = validate_rows(batch, {k: c.uses_prompt for k, c in checklists.items()})
    return MediaDecoder(decode.model_dump())(batch)


def bare_loop(cfg: JobConfig, manifest: Path) -> float:
    """Seconds for the scorer alone over already decoded batches."""
    checklists = resolve_checklists(cfg.checklist)
    decoded = decoded_batch(manifest, cfg.decode, checklists)
    scorer = ChecklistScorer(cfg.model.model_dump(), cfg.decode.model_dump(), checklists_to_json(checklists))
    bs = cfg.resources.batch_size
    n = len(decoded["id"])
    # One untimed call first: the job's first-call warm-up is in its fixed start-up too.
    scorer({k: v[:bs] for k, v in decoded.items()})
    t0 = time.perf_counter()
    for start in range(0, n, bs):
        scorer({k: v[start:start + bs] for k, v in decoded.items()})
    return time.perf_counter() - t0


def job_seconds(cfg: JobConfig, n: int) -> float:
    t0 = time.perf_counter()
    summary = run_score_job(cfg, quiet=True)
    assert summary.ok == n, summary.format()
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", default="bench", choices=["tiny", "bench"])
    ap.add_argument("--images", type=int, default=16, help="images in the small job (4x in the large one)")
    ap.add_argument("--videos", type=int, default=8, help="videos in the small job (4x in the large one)")
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    root = Path(tempfile.mkdtemp(prefix="vrscore-bench-"))
    model = build_demo_model(root / "model", preset=args.preset)
    sizes = {"small": (args.images, args.videos), "large": (4 * args.images, 4 * args.videos)}
    manifests = {k: make_manifest(root / k, *iv) for k, iv in sizes.items()}
    count = {k: sum(iv) for k, iv in sizes.items()}
    init_ray(quiet=True)

    def config(size: str, run: int) -> JobConfig:
        return JobConfig(manifest=str(manifests[size]), out=str(root / f"out-{size}-{run}"),
                         model=ModelConfig(model=str(model)),
                         decode=DecodeConfig(frames="uniform:8", video_max_pixels=128 * 28 * 28),
                         resources=ResourcesConfig(batch_size=8, decode_batch_size=4))

    bare, small, large = [], [], []
    for r in range(args.repeats):  # interleaved, so drifting machine load hits all three alike
        bare.append(bare_loop(config("large", r), manifests["large"]))
        small.append(job_seconds(config("small", r), count["small"]))
        large.append(job_seconds(config("large", r), count["large"]))
    t_bare, t_small, t_large = (statistics.median(x) for x in (bare, small, large))
    bare_rate = count["large"] / t_bare
    steady_rate = (count["large"] - count["small"]) / (t_large - t_small)
    fixed = t_small - count["small"] / steady_rate
    print("seconds per run (bare, small job, large job):",
          "; ".join(f"{b:.1f} {s:.1f} {l:.1f}" for b, s, l in zip(bare, small, large)))
    print(f"items: {count['small']} and {count['large']} (images and 8-frame videos, 2:1), "
          f"model preset {args.preset}, median of {args.repeats}")
    print(f"bare scorer loop (decoded inputs)     : {bare_rate:.2f} items/s")
    print(f"whole Ray Data job, {count['large']} items end to end: {count['large'] / t_large:.2f} items/s "
          f"(ratio {count['large'] / t_large / bare_rate:.2f})")
    print(f"job fixed start-up (paid once per job): {fixed:.1f} s")
    print(f"whole Ray Data job, steady rate       : {steady_rate:.2f} items/s")
    print(f"ratio pipeline / bare scorer (steady) : {steady_rate / bare_rate:.2f}")


if __name__ == "__main__":
    main()
