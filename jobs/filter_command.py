"""`vrscore filter --scores DIR --where EXPR --out OUT`: keep the rows a training job should see.

The output is itself a scores output (OUT/scores/*.parquet with the same schema and
metadata, OUT/checklist.json), so it feeds `vrscore pairs/report/eval` as well as a
training job: its leading columns are the manifest's (id, uri, media_type, prompt, group,
kept columns) followed by the scores. OUT/filter.json holds the summary.
"""
from __future__ import annotations

import argparse
import functools
import json
from dataclasses import asdict, dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from pipeline.output_lease import check_free, output_lease
from pipeline.filter_expr import RowFilter, parse_filter
from pipeline.scores_input import (CHECKLIST_FILE, SCORES_DIR, ScoresInput, add_ray_arguments, add_storage_arguments,
                                   open_scores, refuse_existing_output, storage_from_args, write_empty_if_missing,
                                   write_text)
from pipeline.storage import arrow_filesystem, fsspec_filesystem, join
from schemas.checklist_set import checklists_to_json
from schemas.status import OK

KEPT = "kept"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--scores", required=True, help="output of `vrscore score` (DIR or DIR/scores; local path or URI)")
    p.add_argument("--where", help='condition on score, score_soft, dim_<name>, q.<question_id> (its p_yes), '
                   'm.<question_id> (its answer mass) or any column, e.g. "dim_quality >= 0.2 and '
                   'q.hands_correct >= 0.5 and m.hands_correct >= 0.5"; default: keep every ok row')
    p.add_argument("--errors", choices=("drop", "keep"), default="drop",
                   help="rows whose status is not ok have no scores for --where to judge: drop them (default) "
                   "or keep them all (to audit or rescore them)")
    p.add_argument("--out", required=True, help="output directory (local path or URI)")
    add_storage_arguments(p)
    add_ray_arguments(p)


@dataclass
class FilterSummary:
    scores: str
    where: str | None
    errors: str
    rows: int
    kept: int
    dropped: dict[str, int]  # reason -> rows

    def format(self) -> str:
        lines = [f"rows {self.rows}   kept {self.kept}   dropped {self.rows - self.kept}"]
        lines += [f"  {n:>8}  {reason}" for reason, n in sorted(self.dropped.items(), key=lambda kv: -kv[1])]
        return "\n".join(lines)


def drop_reasons(batch: pa.Table, row_filter: RowFilter | None, keep_errors: bool) -> np.ndarray:
    """Per row: None = kept, else why it was dropped (one reason per row)."""
    failed = np.asarray(pc.fill_null(pc.not_equal(batch["status"], OK), True), dtype=bool)
    reasons = row_filter.drop_reasons(batch) if row_filter else np.full(batch.num_rows, None, dtype=object)
    statuses = batch["status"].to_pylist()
    for i in np.flatnonzero(failed):
        reasons[i] = None if keep_errors else f"status {statuses[i]}"
    return reasons


def _kept_rows(batch: pa.Table, row_filter: RowFilter | None, keep_errors: bool) -> pa.Table:
    return batch.filter(pa.array([r is None for r in drop_reasons(batch, row_filter, keep_errors)]))


def _reason_counts(batch: pa.Table, row_filter: RowFilter | None, keep_errors: bool) -> pa.Table:
    reasons = [KEPT if r is None else r for r in drop_reasons(batch, row_filter, keep_errors)]
    counts = pc.value_counts(pa.array(reasons, type=pa.string())).to_pylist()
    return pa.table({"reason": [c["values"] for c in counts], "rows": [c["counts"] for c in counts]})


def run_filter(scores: ScoresInput, where: str | None, keep_errors: bool, out: str) -> FilterSummary:
    row_filter = parse_filter(where, scores.schema, scores.checklists_by_name) if where else None
    options = dict(row_filter=row_filter, keep_errors=keep_errors)
    fs, path = arrow_filesystem(join(out, SCORES_DIR), scores.storage)
    kept = scores.read().map_batches(functools.partial(_kept_rows, **options), batch_format="pyarrow")
    kept.write_parquet(path, filesystem=fs, schema=scores.schema)
    write_empty_if_missing(join(out, SCORES_DIR), scores.schema, scores.storage)
    write_text(join(out, CHECKLIST_FILE), checklists_to_json(scores.checklists), scores.storage)

    # Second, narrow pass for the summary: only the columns the condition reads.
    columns = sorted({"status", *(row_filter.columns if row_filter else [])})
    by_reason: dict[str, int] = {}
    # One small row per (batch, reason): summed here rather than by a cluster-wide groupby,
    # which costs a shuffle for a handful of numbers.
    counted = scores.read(columns).map_batches(functools.partial(_reason_counts, **options), batch_format="pyarrow")
    for r in counted.iter_rows():
        by_reason[r["reason"]] = by_reason.get(r["reason"], 0) + int(r["rows"])
    n_kept = by_reason.pop(KEPT, 0)
    return FilterSummary(scores=scores.data_uri, where=where, errors="keep" if keep_errors else "drop",
                         rows=n_kept + sum(by_reason.values()), kept=n_kept, dropped=by_reason)


def run(args: argparse.Namespace) -> int:
    from pipeline.ray_runtime import init_ray

    storage = storage_from_args(args)
    scores = open_scores(args.scores, storage)
    if args.where:  # a bad condition fails here, before Ray starts
        parse_filter(args.where, scores.schema, scores.checklists_by_name)
    out_fs = fsspec_filesystem(args.out, storage)
    fresh = functools.partial(refuse_existing_output, args.out, storage, [SCORES_DIR])
    check_free(out_fs, args.out)  # refused before Ray starts; again under the lease
    fresh()
    init_ray(args.ray_address, quiet=args.quiet)
    with output_lease(out_fs, args.out, fresh):  # one run at a time
        summary = run_filter(scores, args.where, args.errors == "keep", args.out)
        write_text(join(args.out, "filter.json"), json.dumps(asdict(summary), indent=2), storage)
    print(summary.format())
    print(f"kept rows: {join(args.out, SCORES_DIR)}/   summary: {join(args.out, 'filter.json')}")
    return 0
