"""`vrscore demo`: synthetic media + a tiny random model, scored end to end on a local Ray.

Everything is made here, offline: real codecs (PNG, JPEG, WebP, H.264 mp4), a manifest with
prompts and groups, a random-weight Qwen2-VL model saved and loaded back like a real one.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from jobs.demo_model_command import RANDOM_WEIGHTS_WARNING
from jobs.score_command import add_console_args

PROMPTS = {
    "p_lighthouse": "a lighthouse on a cliff at sunset, oil painting",
    "p_city": "a busy city street at night in the rain",
}


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", default="vrscore-demo", help="demo folder (media, model, manifest, output)")
    add_console_args(p)
    p.add_argument("--ray-address", help="join this Ray cluster instead of starting a local one")


def write_demo_media(media_dir: Path) -> list[dict]:
    """Two prompts, each with images and videos; returns manifest rows."""
    from actors.synthetic_media import write_image, write_video

    media_dir.mkdir(parents=True, exist_ok=True)
    rows = []
    for g, (group, prompt) in enumerate(PROMPTS.items()):
        for k, fmt in enumerate(("png", "jpeg", "webp")):
            path = media_dir / f"{group}_img{k}.{'jpg' if fmt == 'jpeg' else fmt}"
            write_image(path, size=(320 + 32 * k, 240), seed=10 * g + k)
            rows.append({"id": f"{group}/img{k}", "uri": str(path), "prompt": prompt, "group": group})
        for k in range(2):
            path = media_dir / f"{group}_vid{k}.mp4"
            write_video(path, n_frames=24 + 12 * k, size=(256, 192), fps=12, seed=100 + 10 * g + k)
            rows.append({"id": f"{group}/vid{k}", "uri": str(path), "prompt": prompt, "group": group})
    return rows


def run(args: argparse.Namespace) -> int:
    from actors.demo_model import build_demo_model
    from jobs.score_job import run_score_job
    from schemas.job_config import JobConfig, ModelConfig

    root = Path(args.out).resolve()
    out = root / "output"
    if out.exists():
        raise FileExistsError(f"{out} exists from an earlier demo; remove it or pass --out elsewhere")
    print(RANDOM_WEIGHTS_WARNING)
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # a one-shard "Writing model shards" bar says nothing
    model_dir = build_demo_model(root / "model", preset="tiny")
    rows = write_demo_media(root / "media")
    manifest = root / "manifest.parquet"
    pq.write_table(pa.Table.from_pylist(rows), manifest)
    print(f"wrote {len(rows)} media files and {manifest}; model in {model_dir}")

    cfg = JobConfig(manifest=str(manifest), out=str(out), model=ModelConfig(model=str(model_dir)))
    summary = run_score_job(cfg, ray_address=args.ray_address, quiet=args.quiet,
                            progress_interval=args.progress_interval, verbose=getattr(args, "verbose", False))
    print(summary.format())
    print(RANDOM_WEIGHTS_WARNING)
    return 0 if summary.errors == 0 else 1
