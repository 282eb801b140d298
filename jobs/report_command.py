"""`vrscore report --scores DIR --out report.html`: one self-contained HTML file.

Two passes over the scores in the cluster (value ranges, then per-batch partial statistics
on shared histogram bins); the merged partials, thumbnails of the top/bottom items and the
page are made on the driver.
"""
from __future__ import annotations

import argparse
import functools
import json
from concurrent.futures import ThreadPoolExecutor

import pyarrow as pa

from pipeline.report_html import data_uri, render_report, thumbnail_jpeg
from pipeline.report_stats import ITEM_FIELDS, ReportData, batch_partial, histogram_edges, merge
from pipeline.scores_input import ScoresInput, add_ray_arguments, add_storage_arguments, open_scores, storage_from_args
from pipeline.storage import fsspec_filesystem, storage_options
from schemas.checklist import Checklist
from schemas.job_config import DecodeConfig
from schemas.user_error import UserError


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--scores", required=True, help="output of `vrscore score` (DIR or DIR/scores; local path or URI)")
    p.add_argument("--out", required=True, help="the HTML file to write (local path or URI)")
    p.add_argument("--top-k", type=int, default=6,
                   help="items shown at each end of every measure (each with a thumbnail; default 6)")
    p.add_argument("--bins", type=int, default=24, help="histogram bins per measure (default 24)")
    add_storage_arguments(p)
    add_ray_arguments(p)


def _partial_row(batch: pa.Table, edges: dict, checklists: dict[str, Checklist], k: int) -> pa.Table:
    # JSON, not pickle: a partial is a few KB of plain numbers and strings.
    return pa.table({"partial": [json.dumps(batch_partial(batch, edges, checklists, k))]})


def collect_report_data(scores: ScoresInput, k: int, bins: int) -> ReportData:
    from ray.data.aggregate import Max, Min

    measures = ["score", "score_soft", *scores.dimension_columns]
    ranges = scores.read(measures).aggregate(*(agg(c) for c in measures for agg in (Min, Max)))
    edges = {c: histogram_edges(ranges[f"min({c})"], ranges[f"max({c})"], bins) for c in measures}
    columns = list(dict.fromkeys([*ITEM_FIELDS, "checklist", "status", "error", "p_yes", "answers", *measures]))
    fn = functools.partial(_partial_row, edges=edges, checklists=scores.checklists_by_name, k=k)
    rows = scores.read(columns).map_batches(fn, batch_format="pyarrow").iter_rows()
    partials = [json.loads(r["partial"]) for r in rows]
    return merge(partials, edges, k)


def _thumbnail(item: dict, media_options: dict[str, dict], allowed_schemes: list[str], max_bytes: int) -> dict:
    from actors.media_io import read_media_bytes, uri_protocol

    try:
        data = read_media_bytes(item["uri"], allowed_schemes=allowed_schemes, max_bytes=max_bytes,
                                storage_options=media_options.get(uri_protocol(item["uri"])))
        return {"id": item["id"], "src": data_uri(thumbnail_jpeg(data, item["media_type"]))}
    except Exception as exc:  # noqa: BLE001 - a missing preview is shown as such, never fatal
        return {"id": item["id"], "src": f"{type(exc).__name__}: {exc}"[:300]}


def make_thumbnails(data: ReportData, scores: ScoresInput, threads: int = 8) -> dict[str, str]:
    """Item id -> JPEG data URI (or why there is none). At most a few hundred items: threads
    on the driver (reads and decoders release the GIL) rather than a cluster job."""
    items = {it["id"]: it for side in (data.top, data.bottom) for by_col in side.values()
             for lst in by_col.values() for it in lst}
    decode = DecodeConfig()
    fn = functools.partial(_thumbnail, media_options={p: storage_options(scores.storage, p) for p in ("s3", "s3a")},
                           allowed_schemes=decode.allowed_schemes, max_bytes=decode.max_bytes)
    with ThreadPoolExecutor(threads) as pool:
        return {r["id"]: r["src"] for r in pool.map(fn, items.values())}


def run(args: argparse.Namespace) -> int:
    from pipeline.ray_runtime import init_ray

    if args.top_k < 0 or args.bins < 1:
        raise UserError("--top-k must be >= 0 and --bins >= 1")
    storage = storage_from_args(args)
    scores = open_scores(args.scores, storage)
    init_ray(args.ray_address, quiet=args.quiet)
    data = collect_report_data(scores, args.top_k, args.bins)
    thumbs = make_thumbnails(data, scores)
    page = render_report(data, scores.checklists_by_name, thumbs, source=scores.data_uri, model=scores.model_id)
    with fsspec_filesystem(args.out, storage).open(args.out, "w", encoding="utf-8") as f:
        f.write(page)
    missing = sum(1 for src in thumbs.values() if not src.startswith("data:"))
    print(f"report: {args.out}  ({data.rows} rows, {len(thumbs)} thumbnails"
          + (f", {missing} without preview" if missing else "") + ")")
    return 0
