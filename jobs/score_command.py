"""`vrscore score --manifest M --checklist C --model MODEL --out DIR [...]`."""
from __future__ import annotations

import argparse
import sys

from jobs.job_config_loading import build_job_config
from pipeline.storage import add_storage_args, storage_flags


def add_console_args(p: argparse.ArgumentParser) -> None:
    """The console options of a scoring run (`score` and `demo`)."""
    p.add_argument("--quiet", action="store_true", help="no progress bars and no job line")
    p.add_argument("--progress-interval", type=float, default=10.0, metavar="SECONDS",
                   help="print the job line (rows done of total, rows/s, errors by status, time left) every "
                   "SECONDS (default 10); in a terminal it appears beside Ray Data's progress bars")
    p.add_argument("--verbose", action="store_true", default=argparse.SUPPRESS,
                   help="also show Ray's INFO logs and the workers' output (otherwise in Ray's log directory)")


def add_media_source_args(p: argparse.ArgumentParser) -> None:
    """Where a manifest that holds the media keeps it (`score` and `judge` read the same manifests)."""
    p.add_argument("--media-column", help="manifest column holding the media bytes (binary, or a {bytes, path} "
                   "struct); default: 'image' or 'video' when there is no 'uri' column")
    p.add_argument("--id-column", help="manifest column of the item ids when it is not 'id' (manifests holding "
                   "the media; without one, ids are '<file>#<row>')")
    p.add_argument("--prompt-field", help="WebDataset shards: the json member's field holding the prompt "
                   "(default: the txt member)")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--manifest", help="Parquet manifest (file or directory; local path or URI)")
    p.add_argument("--checklist", action="append",
                   help="'default', a YAML/JSON checklist, or a VisionReward *_qa.txt; repeat for one per media kind; "
                   "a checklist addition (a file with `adds_to`, or 'visionreward-alignment') adds questions to one")
    p.add_argument("--weights", action="append", help="VisionReward weight file for each *_qa.txt checklist, in order")
    p.add_argument("--dimensions", help="VisionReward dimensions.json (question text -> dimension)")
    p.add_argument("--model", help="transformers model id, local path, or fsspec URI of a saved checkpoint "
                   "(s3://bucket/ckpt/: downloaded once per node into model.cache_dir)")
    p.add_argument("--out", help="output directory (local path or URI)")
    p.add_argument("--config", help="job config YAML (any JobConfig field; flags and --set override it)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config field by dotted path, e.g. resources.batch_size=32")
    add_media_source_args(p)
    p.add_argument("--keep-columns", help="comma-separated manifest columns to carry into the output")
    p.add_argument("--alignment-column", help="manifest column with an external alignment probability")
    p.add_argument("--frames", help="video frame sampling: uniform:N, visionreward[:M] or fps:F[:MAX]")
    p.add_argument("--max-error-fraction", type=float, help="exit non-zero above this fraction of failed rows")
    p.add_argument("--trust-remote-code", action="store_true", default=None,
                   help="allow the model repo to run its own code (off by default)")
    p.add_argument("--ray-address", help="join this Ray cluster (default: $RAY_ADDRESS, else a local Ray)")
    add_console_args(p)
    add_storage_args(p)


def flags_of(args: argparse.Namespace) -> dict:
    """Command-line flags as dotted JobConfig keys (None = not given)."""
    return {
        "manifest": args.manifest,
        "checklist": args.checklist,
        "weights": args.weights,
        "dimensions": args.dimensions,
        "model.model": args.model,
        "out": args.out,
        "keep_columns": [c.strip() for c in args.keep_columns.split(",") if c.strip()] if args.keep_columns else None,
        "alignment_column": args.alignment_column,
        "media_column": args.media_column,
        "id_column": args.id_column,
        "prompt_field": args.prompt_field,
        "decode.frames": args.frames,
        "max_error_fraction": args.max_error_fraction,
        "model.trust_remote_code": args.trust_remote_code,
        **storage_flags(args),
    }


def run(args: argparse.Namespace) -> int:
    from jobs.score_job import run_score_job  # imports Ray; keep `--help` fast

    cfg = build_job_config(args.config, flags_of(args), args.set)
    summary = run_score_job(cfg, ray_address=args.ray_address, quiet=args.quiet,
                            progress_interval=args.progress_interval, verbose=getattr(args, "verbose", False))
    print(summary.format())
    fraction = summary.errors / summary.rows if summary.rows else 0.0
    if fraction > cfg.max_error_fraction:
        print(f"vrscore score: {summary.errors}/{summary.rows} rows failed ({fraction:.1%}), above "
              f"--max-error-fraction {cfg.max_error_fraction:.1%}", file=sys.stderr)
        return 1
    return 0
