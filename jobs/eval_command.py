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

from pipeline.answer_mass import low_mass_warning, mass_lines, table_mass_means
from pipeline.judge_input import is_judge_output
from pipeline.preference_metrics import PreferenceMetrics, preference_metrics, score_differences
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
- a Parquet of pairs: group, a_id, b_id, preference (integers: 1 = humans prefer a, -1 = b,
  0 = tie);
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
    p.add_argument("--scores", required=True,
                   help="output of `vrscore score` (DIR or DIR/scores) or of `vrscore judge` (DIR or DIR/pairs: its "
                   "pairs matched with the human pairs, in either order); local path or URI")
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
    """Judged pairs as integer indices: no Python object per pair (nor per item, past the
    JSON parser), so a million pairs cost a few numpy arrays and two Arrow string arrays."""

    keys: pa.Array  # string: every judged item once (an item in some pair)
    a: np.ndarray  # (P,) int64 index into keys
    b: np.ndarray
    h: np.ndarray  # (P,) +1 a preferred, -1 b preferred, 0 tie
    group: np.ndarray  # (P,) int64 group code, numbered in order of first appearance
    group_names: pa.Array  # string: code -> group

    def to_lists(self) -> tuple[list, list, list, list]:
        """(group, a, b, h) as Python lists, one entry per pair: for tests and small data."""
        return (self.group_names.take(self.group).to_pylist(), self.keys.take(self.a).to_pylist(),
                self.keys.take(self.b).to_pylist(), self.h.tolist())


def pairs_within_runs(sizes: np.ndarray, ranks: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Every pair (i < j) within each run of consecutive rows (run k has sizes[k] rows), run
    by run in `ranking_pairs`' order: (row_a, row_b, run, h), h = sign(rank_b - rank_a)."""
    sizes = np.asarray(sizes, dtype=np.int64)
    run = np.repeat(np.arange(len(sizes)), sizes)
    position = np.arange(len(run)) - np.repeat(np.cumsum(sizes) - sizes, sizes)
    later = sizes[run] - position - 1  # pairs each row opens with the rows after it in its run
    row_a = np.repeat(np.arange(len(run)), later)
    row_b = row_a + 1 + np.arange(len(row_a)) - np.repeat(np.cumsum(later) - later, later)
    return row_a, row_b, run[row_a], np.sign(ranks[row_b] - ranks[row_a]).astype(np.int64)


def first_seen_codes(values: pa.Array) -> tuple[np.ndarray, pa.Array]:
    """(codes in order of first appearance, distinct values); a null is a value of its own."""
    encoded = pc.dictionary_encode(values, null_encoding="encode")
    if isinstance(encoded, pa.ChunkedArray):
        encoded = encoded.combine_chunks() if encoded.num_chunks else pa.array([], pa.string()).dictionary_encode()
    return encoded.indices.to_numpy(zero_copy_only=False).astype(np.int64), encoded.dictionary


def _from_runs(item_keys: pa.Array, ranks: np.ndarray, run_groups: pa.Array, sizes: np.ndarray) -> HumanPairs:
    row_a, row_b, run, h = pairs_within_runs(sizes, ranks)
    item_code, item_names = first_seen_codes(item_keys)
    used, ab = np.unique(np.concatenate([item_code[row_a], item_code[row_b]]), return_inverse=True)
    run_code, run_names = first_seen_codes(run_groups)
    # Runs' codes follow first appearance and pairs follow runs, so the sorted distinct codes
    # of the pairs keep that order: the same numbering as encoding each pair's group.
    group_used, group = np.unique(run_code[run], return_inverse=True)
    return HumanPairs(item_names.take(pa.array(used, pa.int64())), ab[: len(h)], ab[len(h):], h,
                      group.astype(np.int64), run_names.take(pa.array(group_used, pa.int64())))


def _from_json(items: list[dict]) -> HumanPairs:
    for it in items:
        if len(it["generations"]) != len(it["ranking"]):
            raise UserError(f"group {str(it['id'])!r}: {len(it['generations'])} items but {len(it['ranking'])} ranks")
    keys = pa.array([f"{it['id']}/{gen}" for it in items for gen in it["generations"]], type=pa.string())
    ranks = np.array([r for it in items for r in it["ranking"]], dtype=np.float64)
    sizes = np.array([len(it["generations"]) for it in items], dtype=np.int64)
    return _from_runs(keys, ranks, pa.array([str(it["id"]) for it in items], type=pa.string()), sizes)


PREFERENCE_CODES = "1 (humans prefer a), -1 (b), 0 (tie)"


def _from_pairs(table: pa.Table, uri: str) -> HumanPairs:
    kind = table.schema.field("preference").type
    # By type, not by value: a boolean column passes a value check (True == 1, False == 0)
    # and would turn every False into a human tie.
    if not pa.types.is_integer(kind):
        raise UserError(f"{uri}: column 'preference' has type {kind}; it must hold integers: {PREFERENCE_CODES}")
    h = table["preference"].to_numpy(zero_copy_only=False)
    if not np.isin(h, [-1, 0, 1]).all():
        raise UserError(f"{uri}: preference must be {PREFERENCE_CODES}, every pair one of them")
    a, b = (pc.cast(table[c], pa.string()).combine_chunks() for c in ("a_id", "b_id"))
    codes, keys = first_seen_codes(pa.concat_arrays([a, b]))
    group, group_names = first_seen_codes(pc.cast(table["group"], pa.string()).combine_chunks())
    return HumanPairs(keys, codes[: len(h)], codes[len(h):], h.astype(np.int64), group, group_names)


def load_judgments(uri: str, storage: StorageConfig) -> HumanPairs:
    pairs = _load_judgments(uri, storage)
    # Arrow's allocator keeps what reading and encoding freed; numpy (the fit, the figures)
    # allocates elsewhere, so memory kept here would only add to the driver's peak.
    pa.default_memory_pool().release_unused()
    return pairs


def _load_judgments(uri: str, storage: StorageConfig) -> HumanPairs:
    if uri.lower().endswith(".json"):
        with fsspec_filesystem(uri, storage).open(uri, "rb") as f:
            return _from_json(json.load(f))
    fs, path = arrow_filesystem(uri, storage)
    table = pq.read_table(path, filesystem=fs)
    names = set(table.column_names)
    _refuse_non_text_keys(uri, table)
    if {"group", "a_id", "b_id", "preference"} <= names:
        return _from_pairs(table, uri)
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
    if table["rank"].null_count:
        raise UserError(f"{table['rank'].null_count} ranking rows have no rank; every ranked item needs one")
    group = pc.cast(table["group"], pa.string())
    table = table.set_column(table.schema.get_field_index("group"), "group", group).sort_by("group")
    code, names = first_seen_codes(table["group"].combine_chunks())  # sorted: each group is one run
    sizes = np.bincount(code, minlength=len(names)) if len(code) else np.zeros(0, dtype=np.int64)
    ranks = pc.cast(table["rank"], pa.float64()).to_numpy(zero_copy_only=False)
    return _from_runs(pc.cast(table["id"], pa.string()).combine_chunks(), ranks, names, sizes)


def judged_rows(batch: pa.Table, key_column: str, keys: pa.Array) -> pa.Table:
    """The rows of a scores batch whose key (as text) is judged: the filter of the join."""
    return batch.filter(pc.is_in(pc.cast(batch[key_column], pa.string()), value_set=keys))


def collect_judged_rows(scores: ScoresInput, key_column: str, keys: pa.Array, columns: list[str]) -> pa.Table:
    """The judged rows (key as text, then `columns`), joined on Ray Data so that only they
    reach the driver, as Arrow batches; refuses a key found twice."""
    names = list(dict.fromkeys([key_column, *columns]))
    ds = scores.read(names).map_batches(
        functools.partial(judged_rows, key_column=key_column, keys=pc.drop_null(keys)), batch_format="pyarrow")
    batches = list(ds.iter_batches(batch_format="pyarrow", batch_size=None))
    table = (pa.concat_tables(batches) if batches else pa.schema([scores.schema.field(c) for c in names]).empty_table())
    table = table.set_column(0, key_column, pc.cast(table[key_column], pa.string()))
    counts = pc.value_counts(table[key_column])
    twice = counts.filter(pc.greater(counts.field("counts"), 1))
    if len(twice):
        raise UserError(f"key {twice[0]['values'].as_py()!r} appears twice in the scores' {key_column!r} column; "
                         "keys must be unique")
    pa.default_memory_pool().release_unused()  # as in load_judgments
    return table


def item_rows(keys: pa.Array, table: pa.Table, key_column: str) -> np.ndarray:
    """Row of `table` holding each key, -1 where none does."""
    rows = pc.index_in(keys, value_set=table[key_column].combine_chunks())
    return pc.fill_null(rows, -1).to_numpy(zero_copy_only=False).astype(np.int64)


def item_values(rows: np.ndarray, table: pa.Table, measure: str) -> np.ndarray:
    """`measure` of each judged item (rows from `item_rows`); NaN where missing, failed or null."""
    ok = np.asarray(pc.fill_null(pc.equal(table["status"], OK), False), dtype=bool)
    v = pc.fill_null(pc.cast(table[measure], pa.float64()), np.nan).to_numpy(zero_copy_only=False)
    v = np.where(ok, v, np.nan)
    return np.where(rows >= 0, v[np.maximum(rows, 0)] if len(v) else np.nan, np.nan)


def evaluate(pairs: HumanPairs, table: pa.Table, key_column: str, measures: list[str]) -> dict[str, PreferenceMetrics]:
    """Figures per measure over the judged rows `table`; a measure no judged pair has scores
    for (a video-only dimension in an image benchmark) is left out."""
    rows = item_rows(pairs.keys, table, key_column)
    out = {}
    for measure in measures:
        v = item_values(rows, table, measure)
        m = score_differences(v[pairs.a], v[pairs.b])
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
    pairs = load_judgments(args.judgments, storage)
    if not len(pairs.h):
        raise UserError(f"{args.judgments}: no judged pairs (every group has fewer than two items)")
    if is_judge_output(args.scores, storage):
        from jobs.judged_eval_command import run_judged_eval

        return run_judged_eval(args, storage, pairs)
    scores = open_scores(args.scores, storage)
    measures = ["score", "score_soft", *scores.dimension_columns, *scores.z_columns]
    init_ray(args.ray_address, quiet=args.quiet)
    scores.require_columns([args.key_column], "--key-column")
    mass = ["checklist", "answer_mass"] if "answer_mass" in scores.schema.names else []  # older outputs have none
    table = collect_judged_rows(scores, args.key_column, pairs.keys, list(dict.fromkeys(["status", *measures, *mass])))
    if not table.num_rows:
        raise UserError(f"none of the {len(pairs.keys)} judged items is in the scores' {args.key_column!r} column "
                         f"(judged keys look like {pc.min(pairs.keys).as_py()!r}); see `vrscore eval --help` for "
                         "the join")
    results = evaluate(pairs, table, args.key_column, measures)
    rows = item_rows(pairs.keys, table, args.key_column)
    scored = np.asarray(pc.and_(pc.fill_null(pc.equal(table["status"], OK), False), pc.is_valid(table["score"])))
    ok = int(np.sum((rows >= 0) & scored[np.maximum(rows, 0)])) if len(scored) else 0
    print(f"{len(pairs.h)} judged pairs over {len(pairs.keys)} items; {table.num_rows} items found in the scores "
          f"(by {args.key_column!r}), {ok} scored ok")
    print(format_table(results))
    # the judged items' answer mass: figures from p_yes read where the model does not answer mean little
    answer_mass = table_mass_means(table, scores.checklists_by_name)
    for line in mass_lines(answer_mass) + [low_mass_warning(answer_mass) or ""]:
        if line:
            print(line)
    if args.json_out:
        report = {"scores": scores.data_uri, "judgments": args.judgments, "key_column": args.key_column,
                  "items_judged": len(pairs.keys), "items_found": table.num_rows, "items_scored": ok,
                  "measures": {k: v.to_dict() for k, v in results.items()}, "answer_mass": answer_mass}
        with fsspec_filesystem(args.json_out, storage).open(args.json_out, "w") as f:
            json.dump(report, f, indent=2)
    return 0
