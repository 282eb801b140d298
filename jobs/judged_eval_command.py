"""`vrscore eval --scores OUT --judgments FILE` on the output of `vrscore judge`: the judged
pairs (and the Bradley-Terry strengths of OUT/items/) against human preferences. Only the
judged pairs and items the humans also judged reach the driver (pipeline/judged_eval.py)."""
from __future__ import annotations

import argparse
import functools
import json

import numpy as np
import pyarrow as pa

from pipeline.judge_input import JudgeInput, open_judged
from pipeline.judged_eval import (
    judged_items,
    judged_rows,
    match_pairs,
    oriented,
    pair_measures,
    strength_differences,
    three_way_accuracy,
)
from pipeline.parquet_reader import read_parquet
from pipeline.preference_metrics import PreferenceMetrics, preference_metrics
from pipeline.storage import arrow_filesystem, fsspec_filesystem
from schemas.job_config import StorageConfig
from schemas.user_error import UserError


def _collect(ds, keys: pa.Array, schema: pa.Schema) -> pa.Table:
    ds = ds.map_batches(functools.partial(judged_rows, keys=keys), batch_format="pyarrow")
    batches = list(ds.iter_batches(batch_format="pyarrow", batch_size=None))
    return pa.concat_tables(batches) if batches else schema.empty_table()


def _items(judged: JudgeInput, keys: pa.Array) -> pa.Table | None:
    """The fitted items humans judged (OUT/items/), None when the output has none."""
    fs = fsspec_filesystem(judged.items_uri, judged.storage)
    if not fs.isdir(judged.items_uri) or not fs.find(judged.items_uri):
        return None
    arrow_fs, path = arrow_filesystem(judged.items_uri, judged.storage)
    ds = read_parquet(path, arrow_fs, ["id", "group", "log_strength"])
    keep = functools.partial(judged_items, keys=keys)
    batches = list(ds.map_batches(keep, batch_format="pyarrow").iter_batches(batch_format="pyarrow", batch_size=None))
    return pa.concat_tables(batches) if batches else None


def evaluate_judged(human, judged_table: pa.Table, items: pa.Table | None, judged: JudgeInput) -> tuple[dict, float | None]:
    """Figures per measure, and GenAI-Bench's accuracy with ties from the judge's own tie
    answer (None without tie words)."""
    a, b = human.keys.take(pa.array(human.a)), human.keys.take(pa.array(human.b))
    row, sign = match_pairs(a, b, judged_table)
    values = pair_measures(judged_table, judged.weights, judged.dimension_columns)
    results: dict[str, PreferenceMetrics] = {}
    for name in ["p_a", "pair_score", *judged.dimension_columns]:
        results[name] = preference_metrics(human.h, oriented(values[name], row, sign))
    if items is not None:
        m = strength_differences(a, b, items)
        if not np.isnan(m).all():
            results["log_strength"] = preference_metrics(human.h, m)
    ties = None
    if "p_tie" in values:
        y = oriented(values["y"], row, np.ones_like(sign))
        y = np.where(sign > 0, y, 1 - y)
        ties = three_way_accuracy(human.h, y, oriented(values["p_tie"], row, np.ones_like(sign)))
    return results, ties


def run_judged_eval(args: argparse.Namespace, storage: StorageConfig, human) -> int:
    from jobs.eval_command import format_table
    from pipeline.ray_runtime import init_ray

    if args.key_column != "id":
        raise UserError("--key-column: a judge output's pairs name items by their manifest id; the judgments' keys "
                        "must be those ids")
    judged = open_judged(args.scores, storage)
    init_ray(args.ray_address, quiet=args.quiet)
    keys = pa.compute.drop_null(human.keys)
    columns = ["a", "b", "status", "p_a", "pair_score", *judged.dimension_columns,
               *(["p_tie"] if "p_tie" in judged.schema.names else [])]
    table = _collect(judged.read(columns), keys, pa.schema([judged.schema.field(c) for c in columns]))
    items = _items(judged, keys)
    if not table.num_rows and items is None:
        raise UserError(f"none of the {len(human.h)} human pairs was judged (judged ids look like the manifest's; "
                        f"human keys look like {pa.compute.min(keys).as_py()!r})")
    results, ties = evaluate_judged(human, table, items, judged)
    judged_pairs = results["p_a"].scored
    print(f"{len(human.h)} human pairs over {len(human.keys)} items; {judged_pairs} judged ok in {judged.data_uri}")
    print(format_table(results))
    if ties is not None:
        print(f"acc(ties, judge's tie word): {100 * ties:.2f}  (GenAI-Bench: every pair counts, the judge's "
              "answer A, B or tie against the humans')")
    if args.json_out:
        report = {"scores": judged.data_uri, "judgments": args.judgments, "human_pairs": len(human.h),
                  "judged_ok": judged_pairs, "measures": {k: v.to_dict() for k, v in results.items()},
                  "accuracy_with_ties_judge_tie_word": ties}
        with fsspec_filesystem(args.json_out, storage).open(args.json_out, "w") as f:
            json.dump(report, f, indent=2)
    return 0
