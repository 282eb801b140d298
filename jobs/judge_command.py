"""`vrscore judge --manifest M [--pairs P] --model DIR --checklist C --out OUT [--schedule all|random:K]`."""
from __future__ import annotations

import argparse
import sys

from jobs.job_config_loading import build_job_config
from jobs.score_command import add_console_args, add_media_source_args
from pipeline.storage import add_storage_args, storage_flags


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--manifest", help="manifest of the items, any source `score` reads: Parquet of uris or of "
                   "media bytes (file or directory), or WebDataset shards; local path or URI")
    p.add_argument("--pairs", help="Parquet of pairs: columns a, b (ids of the manifest), optional id, prompt, group; "
                   "without it, pairs come from the manifest's 'group' column by --schedule")
    p.add_argument("--schedule", default="all", help="pairs per group without --pairs: 'all' (every pair) or "
                   "'random:K' (each item in K pairs, seeded); default all")
    p.add_argument("--seed", type=int, default=0, help="seed of --schedule random:K (default 0)")
    p.add_argument("--bt-l2", type=float, default=0.01, help="precision of the Bradley-Terry prior on the items' "
                   "log-strengths (OUT/items/; default 0.01)")
    p.add_argument("--checklist", action="append", help="a pairwise checklist (YAML/JSON with mode: pairwise)")
    p.add_argument("--model", help="transformers model id, local path, or fsspec URI of a saved checkpoint")
    p.add_argument("--out", help="output directory (local path or URI): pairs/, items/, plan/, job.json")
    p.add_argument("--config", help="job config YAML (any JobConfig field; flags and --set override it)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config field by dotted path, e.g. resources.batch_size=32")
    add_media_source_args(p)
    p.add_argument("--frames", help="video frame sampling: uniform:N, visionreward[:M] or fps:F[:MAX]")
    p.add_argument("--max-error-fraction", type=float, help="exit non-zero above this fraction of failed pairs")
    p.add_argument("--ray-address", help="join this Ray cluster (default: $RAY_ADDRESS, else a local Ray)")
    add_console_args(p)
    add_storage_args(p)


def run(args: argparse.Namespace) -> int:
    from jobs.judge_job import JudgeOptions, run_judge_job  # imports Ray; keep `--help` fast

    flags = {"manifest": args.manifest, "checklist": args.checklist, "model.model": args.model, "out": args.out,
             "media_column": args.media_column, "id_column": args.id_column, "prompt_field": args.prompt_field,
             "decode.frames": args.frames, "max_error_fraction": args.max_error_fraction, **storage_flags(args)}
    cfg = build_job_config(args.config, flags, args.set)
    opts = JudgeOptions(pairs=args.pairs, schedule=args.schedule, seed=args.seed, bt_l2=args.bt_l2)
    summary = run_judge_job(cfg, opts, ray_address=args.ray_address, quiet=args.quiet,
                            verbose=getattr(args, "verbose", False))
    print(summary.format())
    errors = summary.pairs - summary.ok
    if summary.pairs and errors / summary.pairs > cfg.max_error_fraction:
        print(f"vrscore judge: {errors}/{summary.pairs} pairs failed, above --max-error-fraction "
              f"{cfg.max_error_fraction:.1%}", file=sys.stderr)
        return 1
    return 0
