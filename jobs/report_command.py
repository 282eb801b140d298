"""`vrscore report --scores DIR --out report.html`: one self-contained HTML file.

Two passes over the scores in the cluster (value ranges, then per-batch partial statistics
on shared histogram bins), then the top/bottom items' thumbnails, decoded in the cluster by
the decode stage under the report's own limits (which the scoring job's may narrow, never
widen); the driver merges the partials and writes the page.
"""
from __future__ import annotations

import argparse
import functools
import json

import pyarrow as pa

from pipeline.judge_input import is_judge_output, open_judged
from pipeline.report_html import render_report
from pipeline.report_judge import judge_partial, merge_judge, question_means, render_judge_report
from pipeline.report_stats import (
    ITEM_FIELDS,
    ReportData,
    batch_partial,
    histogram_edges,
    merge,
)
from pipeline.report_source import check_source
from pipeline.report_thumbnails import make_thumbnails as make_item_thumbnails
from pipeline.report_thumbnails import report_decode_config, scores_job_record, thumbnail_decode_config
from pipeline.scores_input import (
    ScoresInput,
    add_ray_arguments,
    add_storage_arguments,
    open_scores,
    storage_from_args,
)
from pipeline.storage import fsspec_filesystem
from schemas.checklist import Checklist
from schemas.job_config import DecodeConfig
from schemas.user_error import UserError


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--scores", required=True,
                   help="output of `vrscore score` (DIR or DIR/scores) or of `vrscore judge` (DIR: its position bias "
                   "and consistency per question); local path or URI")
    p.add_argument("--out", required=True, help="the HTML file to write (local path or URI)")
    p.add_argument("--top-k", type=int, default=6,
                   help="items shown at each end of every measure (each with a thumbnail; default 6)")
    p.add_argument("--bins", type=int, default=24, help="histogram bins per measure (default 24)")
    p.add_argument("--media-root", action="append", default=[], metavar="DIR",
                   help="show thumbnails of local files under DIR (repeatable); by default the report reads no "
                        "local file, since a scores file from elsewhere could name any file of this machine")
    p.add_argument("--thumbnail-timeout", type=float, default=30.0,
                   help="seconds per thumbnail's read + decode, at most the job's decode.timeout_s (default 30)")
    p.add_argument("--thumbnail-schemes", default=",".join(DecodeConfig().allowed_schemes), metavar="LIST",
                   help="URI schemes thumbnails may be read from, comma-separated (default: %(default)s); "
                        "the scores' own decode.allowed_schemes can only narrow this list, never widen it")
    add_storage_arguments(p)
    add_ray_arguments(p)


def _partial_row(batch: pa.Table, edges: dict, checklists: dict[str, Checklist], k: int) -> pa.Table:
    # JSON, not pickle: a partial is a few KB of plain numbers and strings.
    return pa.table({"partial": [json.dumps(batch_partial(batch, edges, checklists, k))]})


def collect_report_data(scores: ScoresInput, k: int, bins: int) -> ReportData:
    from ray.data.aggregate import Max, Min

    measures = ["score", "score_soft", *scores.dimension_columns, *scores.z_columns]
    ranges = scores.read(measures).aggregate(*(agg(c) for c in measures for agg in (Min, Max)))
    edges = {c: histogram_edges(ranges[f"min({c})"], ranges[f"max({c})"], bins) for c in measures}
    # older outputs have no answer_mass; only checklists with rating questions write level_probs
    mass = [c for c in ("answer_mass", "level_probs") if c in scores.schema.names]
    columns = list(dict.fromkeys([*ITEM_FIELDS, "checklist", "status", "error", "p_yes", *mass, "answers", *measures]))
    fn = functools.partial(_partial_row, edges=edges, checklists=scores.checklists_by_name, k=k)
    rows = scores.read(columns).map_batches(fn, batch_format="pyarrow").iter_rows()
    partials = [json.loads(r["partial"]) for r in rows]
    return merge(partials, edges, k)


def make_thumbnails(data: ReportData, scores: ScoresInput, media_roots: list[str], own: DecodeConfig) -> dict[str, str]:
    """Item id -> JPEG data URI (or why there is none), decoded in the cluster by the decode
    stage with the report's limits `own`, narrowed by the scoring job's
    (`pipeline/report_thumbnails.py`); media that was inside the manifest is read back from it
    when it is unchanged (`pipeline/report_source.py`)."""
    items = {it["id"]: it for side in (data.top, data.bottom) for by_col in side.values()
             for lst in by_col.values() for it in lst}
    decode = thumbnail_decode_config(scores.schema.metadata, own)
    check = check_source(scores_job_record(scores.schema.metadata), scores.storage, media_roots, own.allowed_schemes)
    if check.holds_media and check.source is None:
        print(f"report: no thumbnails: {check.refused}")
    elif check.refused and any(it["uri"] is None for it in items.values()):
        print(f"report: {check.refused}")
    return make_item_thumbnails(list(items.values()), decode, scores.storage, media_roots, check)


def _judge_partial_row(batch: pa.Table, weights: list[float]) -> pa.Table:
    return pa.table({"partial": [json.dumps(judge_partial(batch, weights))]})


def run_judge_report(args: argparse.Namespace, storage) -> int:
    """The report of a `vrscore judge` output: position bias and consistency (pipeline/report_judge.py)."""
    from pipeline.ray_runtime import init_ray

    judged = open_judged(args.scores, storage)
    init_ray(args.ray_address, quiet=args.quiet)
    fn = functools.partial(_judge_partial_row, weights=judged.weights)
    rows = judged.read(["status", "error", "p_a", "position_bias", "consistent"]).map_batches(
        fn, batch_format="pyarrow").iter_rows()
    data = merge_judge([json.loads(r["partial"]) for r in rows], len(judged.weights))
    page = render_judge_report(data, judged.checklist, source=judged.data_uri, model=judged.model_id)
    with fsspec_filesystem(args.out, storage).open(args.out, "w", encoding="utf-8") as f:
        f.write(page)
    means = question_means(data)
    print(f"report: {args.out}  ({sum(data['counts'].values())} pairs, {data['ok']} ok)")
    for q, bias, consistent in zip(judged.checklist.questions, means["bias"], means["consistent"]):
        if bias is not None:
            print(f"  {q.id:<24} position bias {bias:+.4f}  consistent {100 * consistent:.1f}%")
    return 0


def run(args: argparse.Namespace) -> int:
    from pipeline.ray_runtime import init_ray

    if args.top_k < 0 or args.bins < 1 or args.thumbnail_timeout <= 0:
        raise UserError("--top-k must be >= 0, --bins >= 1 and --thumbnail-timeout > 0")
    schemes = [s.strip().lower() for s in args.thumbnail_schemes.split(",") if s.strip()]
    own = report_decode_config(args.thumbnail_timeout, schemes)
    storage = storage_from_args(args)
    if is_judge_output(args.scores, storage):
        return run_judge_report(args, storage)
    scores = open_scores(args.scores, storage)
    init_ray(args.ray_address, quiet=args.quiet)
    data = collect_report_data(scores, args.top_k, args.bins)
    thumbs = make_thumbnails(data, scores, args.media_root, own)
    page = render_report(data, scores.checklists_by_name, thumbs, source=scores.data_uri, model=scores.model_id)
    with fsspec_filesystem(args.out, storage).open(args.out, "w", encoding="utf-8") as f:
        f.write(page)
    missing = sum(1 for src in thumbs.values() if not src.startswith("data:"))
    local = sum(1 for src in thumbs.values() if "outside --media-root" in src)
    print(f"report: {args.out}  ({data.rows} rows, {len(thumbs)} thumbnails"
          + (f", {missing} without preview" if missing else "")
          + (f"; {local} local files not read: pass --media-root DIR to show them" if local else "") + ")")
    return 0
