"""`vrscore eval --scores DIR --judgments FILE [--key-column COL] [--json OUT.json]`:
agreement of the scores with human pairwise preferences (see JUDGMENTS_HELP for inputs
and the join, pipeline/preference_metrics.py for the figures)."""
from __future__ import annotations

import argparse
import functools
import json
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from pipeline.preference_metrics import (
    PreferenceMetrics,
    preference_metrics,
    ranking_pairs,
    score_differences,
)
from pipeline.scores_input import (
    ScoresInput,
    add_ray_arguments,
    add_storage_arguments,
    open_scores,
    storage_from_args,
)
from pipeline.storage import arrow_filesystem, fsspec_filesystem
from schemas.job_config import StorageConfig
from schemas.status import OK
from schemas.user_error import UserError

JUDGMENTS_HELP = """\
Human judgments (--judgments), any of:
- the ImageReward test format, a JSON list of {id, prompt, generations, ranking}: every
  pair of one prompt's generations is judged, lower rank preferred, equal ranks a tie.
  The key of a generation is "<id>/<generation path>", e.g.
  "005658-0040/part-005658/images/0040/45b0de4d-....webp";
- a Parquet of pairs: group, a_id, b_id, preference (1 = humans prefer a, -1 = b, 0 = tie);
- a Parquet of rankings: group, id, rank (lower is better, equal ranks tie); every pair
  within a group is judged.
Join: a judged key matches the scored row whose --key-column (default id) equals it. Give
the manifest ids in that form, or keep a column holding it (`vrscore score --keep-columns
ir_key`) and pass --key-column ir_key. Only the judged rows reach the driver. A judged
item that is missing or failed leaves its pairs unscored: they count as wrong in acc(IR),
whose denominator is fixed by the human data as in ImageReward's test script, and are
left out of acc(-ties) and tau*.
"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.formatter_class = argparse.RawDescriptionHelpFormatter
    p.epilog = JUDGMENTS_HELP
    p.add_argument("--scores", required=True, help="output of `vrscore score` (DIR or DIR/scores; local path or URI)")
    p.add_argument("--judgments", required=True,
                   help="human judgments: ImageReward test JSON, or Parquet of pairs (group, a_id, b_id, "
                   "preference) or rankings (group, id, rank)")
    p.add_argument("--key-column", default="id",
                   help="scores column holding the keys the judgments name (default: id)")
    p.add_argument("--json", dest="json_out", metavar="FILE", help="also write the figures as JSON to FILE")
    add_storage_arguments(p)
    add_ray_arguments(p)


@dataclass(frozen=True)
class HumanPairs:
    group: list[str]
    a: list[str]  # keys
    b: list[str]
    h: np.ndarray  # +1 a preferred, -1 b preferred, 0 tie


def _from_rankings(groups: list[str], keys: list[list[str]], ranks: list[list[float]]) -> HumanPairs:
    g, a, b, h = [], [], [], []
    for group, k, r in zip(groups, keys, ranks):
        if len(k) != len(r):
            raise UserError(f"group {group!r}: {len(k)} items but {len(r)} ranks")
        i, j, hh = ranking_pairs(np.asarray(r, dtype=np.float64))
        g += [group] * len(i)
        a += [k[x] for x in i]
        b += [k[x] for x in j]
        h.append(hh)
    return HumanPairs(g, a, b, np.concatenate(h) if h else np.zeros(0, dtype=np.int64))


def load_judgments(uri: str, storage: StorageConfig) -> HumanPairs:
    if uri.lower().endswith(".json"):
        with fsspec_filesystem(uri, storage).open(uri, "rb") as f:
            items = json.load(f)
        return _from_rankings([str(it["id"]) for it in items],
                              [[f"{it['id']}/{gen}" for gen in it["generations"]] for it in items],
                              [it["ranking"] for it in items])
    fs, path = arrow_filesystem(uri, storage)
    table = pq.read_table(path, filesystem=fs)
    names = set(table.column_names)
    _refuse_non_text_keys(uri, table)
    if {"group", "a_id", "b_id", "preference"} <= names:
        h = table["preference"].to_numpy(zero_copy_only=False)
        if not np.isin(h, [-1, 0, 1]).all():
            raise UserError(f"{uri}: preference must be 1 (a preferred), -1 (b preferred) or 0 (tie)")
        group, a, b = (table[c].cast(pa.string()).to_pylist() for c in ("group", "a_id", "b_id"))
        return HumanPairs(group, a, b, h.astype(np.int64))
    if {"group", "id", "rank"} <= names:
        return _ranking_groups(table)
    raise UserError(f"{uri}: expected ImageReward JSON, or Parquet with columns group, a_id, b_id, preference "
                     f"(pairs) or group, id, rank (rankings); found {', '.join(table.column_names)}")


def _refuse_non_text_keys(uri: str, table: pa.Table) -> None:
    """Groups and ids are compared as text: refuse a column Arrow cannot cast to a string
    (struct, list, map) with a user error, not Arrow's ArrowNotImplementedError."""
    for name in ("group", "id", "a_id", "b_id"):
        if name not in table.column_names:
            continue
        try:
            pc.cast(table[name].slice(0, 0), pa.string())  # Arrow decides by type: no values needed
        except pa.ArrowNotImplementedError:
            raise UserError(f"{uri}: column {name!r} has type {table.schema.field(name).type}, which cannot be "
                            "read as text; use strings or numbers") from None


def _ranking_groups(table: pa.Table) -> HumanPairs:
    """Pairs within each group of a rankings table. Groups are keyed by their string form
    and cut where that key changes after sorting on it, so the key, the sort and the cut
    agree for any type (sorting integers and cutting on strings merged 2 and 10)."""
    if table["group"].null_count:
        raise UserError(f"{table['group'].null_count} ranking rows have no group; every ranked item needs one")
    group = pc.cast(table["group"], pa.string())
    table = table.set_column(table.schema.get_field_index("group"), "group", group).sort_by("group")
    keys = np.array(table["group"].to_pylist(), dtype=object)
    starts = np.flatnonzero(np.r_[True, keys[1:] != keys[:-1]]) if len(keys) else np.zeros(0, dtype=np.int64)
    bounds = [*starts[1:], table.num_rows]
    ids, ranks = table["id"].cast(pa.string()).to_pylist(), table["rank"].to_pylist()
    return _from_rankings([keys[s] for s in starts], [ids[s:e] for s, e in zip(starts, bounds)],
                          [ranks[s:e] for s, e in zip(starts, bounds)])


def _judged_rows(batch: pa.Table, key_column: str, keys: pa.Array) -> pa.Table:
    return batch.filter(pc.is_in(pc.cast(batch[key_column], pa.string()), value_set=keys))


def scored_items(scores: ScoresInput, key_column: str, keys: list[str], measures: list[str]) -> dict[str, dict]:
    """key -> {measure: value or None} for the judged keys found in the scores."""
    scores.require_columns([key_column], "--key-column")
    wanted = pa.array(sorted(set(keys)), type=pa.string())
    ds = scores.read(list(dict.fromkeys([key_column, "status", *measures])))
    ds = ds.map_batches(functools.partial(_judged_rows, key_column=key_column, keys=wanted), batch_format="pyarrow")
    found: dict[str, dict] = {}
    for row in ds.iter_rows():
        key = str(row[key_column])
        if key in found:
            raise UserError(f"key {key!r} appears twice in the scores' {key_column!r} column; keys must be unique")
        ok = row["status"] == OK
        found[key] = {m: row[m] if ok else None for m in measures}
    return found


def _values(items: dict[str, dict], keys: list[str], measure: str) -> np.ndarray:
    values = [items.get(k, {}).get(measure) for k in keys]
    return np.array([np.nan if v is None else v for v in values], dtype=np.float64)


def evaluate(pairs: HumanPairs, items: dict[str, dict], measures: list[str]) -> dict[str, PreferenceMetrics]:
    """Figures per measure; a measure no judged pair has scores for (a video-only dimension
    in an image benchmark) is left out."""
    out = {}
    for measure in measures:
        m = score_differences(_values(items, pairs.a, measure), _values(items, pairs.b, measure))
        if not np.isnan(m).all():
            out[measure] = preference_metrics(pairs.h, m)
    return out


def format_table(results: dict[str, PreferenceMetrics]) -> str:
    def pct(x: float | None) -> str:
        return "-" if x is None else f"{100 * x:.2f}"

    head = (f"{'measure':<22} {'pairs':>7} {'h-ties':>7} {'scored':>7} {'acc(IR)':>8} {'acc(-ties)':>10} "
            f"{'tau*':>7} {'eps*':>8}")
    lines = [head, "-" * len(head)]
    for name, r in results.items():
        eps = "-" if r.eps_star is None else f"{r.eps_star:.4g}"
        lines.append(f"{name:<22} {r.pairs:>7} {r.human_ties:>7} {r.scored:>7} {pct(r.accuracy_imagereward):>8} "
                     f"{pct(r.accuracy_ties_dropped):>10} {pct(r.tau_star):>7} {eps:>8}")
    lines.append("acc(IR): ImageReward rule (human ties skipped; model ties and unscored pairs wrong). "
                 "acc(-ties): C/(C+D) over scored pairs. tau*: tie-calibrated accuracy at threshold eps*.")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    from pipeline.ray_runtime import init_ray

    storage = storage_from_args(args)
    scores = open_scores(args.scores, storage)
    pairs = load_judgments(args.judgments, storage)
    if not len(pairs.h):
        raise UserError(f"{args.judgments}: no judged pairs (every group has fewer than two items)")
    measures = ["score", "score_soft", *scores.dimension_columns]
    init_ray(args.ray_address, quiet=args.quiet)
    items = scored_items(scores, args.key_column, pairs.a + pairs.b, measures)
    judged = set(pairs.a) | set(pairs.b)
    if not items:
        raise UserError(f"none of the {len(judged)} judged items is in the scores' {args.key_column!r} column "
                         f"(judged keys look like {min(judged)!r}); see `vrscore eval --help` for the join")
    results = evaluate(pairs, items, measures)
    ok = sum(1 for k in judged if items.get(k, {}).get("score") is not None)
    print(f"{len(pairs.h)} judged pairs over {len(judged)} items; {len(items)} items found in the scores "
          f"(by {args.key_column!r}), {ok} scored ok")
    print(format_table(results))
    if args.json_out:
        report = {"scores": scores.data_uri, "judgments": args.judgments, "key_column": args.key_column,
                  "items_judged": len(judged), "items_found": len(items), "items_scored": ok,
                  "measures": {k: v.to_dict() for k, v in results.items()}}
        with fsspec_filesystem(args.json_out, storage).open(args.json_out, "w") as f:
            json.dump(report, f, indent=2)
    return 0
