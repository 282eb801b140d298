"""`vrscore pairs --scores DIR --strategy dominance|margin|all --margin X --out OUT`; on the
output of `vrscore judge`, `vrscore pairs --scores OUT --min-margin X` (jobs/judged_pairs_command.py).

Groups are formed in the cluster (`groupby(...).map_groups`); nothing but counts comes
back to the driver. Outputs: OUT/pairs/*.parquet (schemas/pairs.py), on request
OUT/diffusion-dpo/*.jsonl and OUT/videodpo/*.jsonl (one JSON record per line and pair), and
OUT/pairs.json (options and counts).
"""
from __future__ import annotations

import argparse
import functools
import json
from collections.abc import Callable

import pyarrow as pa
import pyarrow.compute as pc

from pipeline.judge_input import is_judge_output
from pipeline.output_lease import check_free, output_lease
from pipeline.pair_mining import MAX_PAIRS_PER_GROUP, STRATEGIES, mine_pairs
from pipeline.scores_input import (
    ScoresInput,
    add_ray_arguments,
    add_storage_arguments,
    open_scores,
    refuse_existing_output,
    storage_from_args,
    write_empty_if_missing,
    write_text,
)
from pipeline.storage import arrow_filesystem, fsspec_filesystem, join
from schemas.checklist import dimension_column
from schemas.pairs import DPO_FORMATS, gap_column, pairs_schema
from schemas.status import OK
from schemas.user_error import UserError

PAIRS_DIR = "pairs"
FORMATS = ("parquet", *DPO_FORMATS)
ROWS_PER_FILE = 250_000  # pairs are small rows: fewer, larger files than one per shuffle partition
ROWS_PER_PARTITION = 250_000  # each shuffle partition is one task's worth of groups


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--scores", required=True,
                   help="output of `vrscore score` (DIR or DIR/scores) or of `vrscore judge` (DIR or DIR/pairs: "
                   "then each judged pair is a candidate, see --min-margin); local path or URI")
    p.add_argument("--out", required=True, help="output directory (local path or URI)")
    p.add_argument("--strategy", choices=STRATEGIES,
                   help="dominance: chosen >= rejected on every dimension and > on one (VisionReward); "
                   "margin: best vs worst of each group; all: every pair over the margin (default: dominance)")
    p.add_argument("--margin", type=float,
                   help="minimum gap of the total score between chosen and rejected (default 0)")
    p.add_argument("--min-margin", type=float,
                   help="judge outputs only: keep a judged pair when both orders agree on every weighted question "
                   "and |2 p_a - 1| >= this, p_a its questions' mean weighted by |weight| (default 0)")
    p.add_argument("--manifest",
                   help="judge outputs only: the manifest whose uri and media_type columns the DPO records name "
                   "(default: the judge job's manifest)")
    p.add_argument("--score-column", choices=("score", "score_soft", "z_score"),
                   help="total used for the margin and written as chosen/rejected_score: 'score' (hard "
                   "answers, coarse), 'score_soft' (p_yes, finer) or 'z_score' (the score in standard deviations "
                   "of a reference set, `rescore --normalize-from`: a margin that means the same for any model)")
    p.add_argument("--dimensions",
                   help="comma-separated dimensions the dominance rule compares (names or dim_ columns; "
                   "default: all)")
    p.add_argument("--pairs-per-group", type=int,
                   help="keep at most this many pairs per group, largest total gap first (dominance, all; "
                   f"0 = no cap below the hard cap of {MAX_PAIRS_PER_GROUP:,} per group that bounds a worker's "
                   "memory; margin gives at most one)")
    p.add_argument("--seed", type=int, default=0, help="seed for breaking ties (best/worst, the cap)")
    p.add_argument("--group-by", default="group",
                   help="column whose equal values form a group (default 'group': the manifest's group, "
                   "else the prompt)")
    p.add_argument("--partitions", type=int,
                   help=f"shuffle partitions for grouping (default: one per {ROWS_PER_PARTITION:,} rows, at most 200)")
    p.add_argument("--format", default="parquet",
                   help=f"comma-separated outputs among {', '.join(FORMATS)} (parquet is always written)")
    add_storage_arguments(p)
    add_ray_arguments(p)


def resolve_dimensions(scores: ScoresInput, spec: str | None) -> list[str]:
    if not spec:
        return scores.dimension_columns
    cols = []
    for name in (s.strip() for s in spec.split(",") if s.strip()):
        col = name if name.startswith("dim_") else dimension_column(name)
        if col not in scores.dimension_columns:
            raise UserError(f"--dimensions: unknown dimension {name!r} (known: {', '.join(scores.dimension_columns)})")
        cols.append(col)
    return cols


def _ok_rows(batch: pa.Table, group_by: str, score_column: str) -> pa.Table:
    """Drop what can never be paired before the shuffle, so it moves less data."""
    keep = pc.and_(pc.and_(pc.equal(batch["status"], OK), pc.is_valid(batch[score_column])),
                   pc.is_valid(batch[group_by]))
    return batch.filter(pc.fill_null(keep, False))


def dpo_datasink(path: str, fmt: str, **kwargs):
    """A Ray datasink writing pairs as JSON Lines records of a DPO trainer's format.
    (Ray's write_json goes through pandas, which escapes every '/' of the uris.) Built
    here so that `vrscore --help` does not import Ray; workers get it by value."""
    from ray.data.datasource import BlockBasedFileDatasink

    class DpoJsonLinesDatasink(BlockBasedFileDatasink):
        def write_block_to_file(self, block, file) -> None:
            rows = block.to_arrow().to_pylist()
            file.write("".join(json.dumps(DPO_FORMATS[fmt](r), ensure_ascii=False) + "\n" for r in rows).encode())

    return DpoJsonLinesDatasink(path, file_format="jsonl", **kwargs)


def run_pairs(scores: ScoresInput, out: str, options: dict, formats: list[str], partitions: int | None = None) -> dict:
    """Write the pairs; returns the summary (options and counts)."""
    from ray.data.aggregate import Mean

    # Ray's default partition count suits big data; on small inputs it means hundreds of
    # near-empty tasks and files. Scale it with the input instead.
    partitions = partitions or min(200, max(1, -(-scores.count_rows() // ROWS_PER_PARTITION)))
    dims = scores.dimension_columns
    group_by, score_column = options["group_by"], options["score_column"]
    columns = list(dict.fromkeys(["id", "uri", "media_type", "prompt", "group", "checklist", "status",
                                  group_by, score_column, *dims]))
    mine = functools.partial(
        mine_pairs, strategy=options["strategy"], dimension_columns=dims, dominance_columns=options["dimensions"],
        score_column=score_column, margin=options["margin"], pairs_per_group=options["pairs_per_group"],
        seed=options["seed"], group_column=group_by,
    )
    # Materialised once: the shuffle is the expensive part, and every output reads the pairs.
    pairs = (scores.read(columns)
             .map_batches(functools.partial(_ok_rows, group_by=group_by, score_column=score_column),
                          batch_format="pyarrow")
             .groupby(group_by, num_partitions=partitions).map_groups(mine, batch_format="pyarrow")
             .materialize())
    schema = pairs_schema(dims, json.dumps(options))
    fs, path = arrow_filesystem(join(out, PAIRS_DIR), scores.storage)
    pairs.write_parquet(path, filesystem=fs, schema=schema, min_rows_per_file=ROWS_PER_FILE)
    write_empty_if_missing(join(out, PAIRS_DIR), schema, scores.storage)
    for fmt in formats:
        if fmt != "parquet":
            fs, path = arrow_filesystem(join(out, fmt), scores.storage)
            pairs.write_datasink(dpo_datasink(path, fmt, filesystem=fs, min_rows_per_file=ROWS_PER_FILE))
    n = pairs.count()
    means = pairs.aggregate(*(Mean(c) for c in ["chosen_score", "rejected_score", *map(gap_column, dims)])) if n else {}
    gap = means["mean(chosen_score)"] - means["mean(rejected_score)"] if n else None
    return {"scores": scores.data_uri, **options, "pairs": n, "mean_score_gap": gap,
            "mean_dimension_gaps": {c: means.get(f"mean({gap_column(c)})") for c in dims}}


SCORE_ONLY = ("strategy", "margin", "score_column", "dimensions", "pairs_per_group")
JUDGE_ONLY = ("min_margin", "manifest")
SCORE_DEFAULTS = {"strategy": "dominance", "margin": 0.0, "score_column": "score", "pairs_per_group": 16}


def output_formats(spec: str) -> list[str]:
    formats = [f.strip() for f in spec.split(",") if f.strip()]
    unknown = [f for f in formats if f not in FORMATS]
    if unknown:
        raise UserError(f"--format: unknown format {unknown[0]!r} (choose among {', '.join(FORMATS)})")
    return formats


def refuse_options(args: argparse.Namespace, names: tuple[str, ...], why: str) -> None:
    given = [n for n in names if getattr(args, n) is not None]
    if given:
        raise UserError(f"--{given[0].replace('_', '-')} {why}")


def run(args: argparse.Namespace) -> int:
    storage = storage_from_args(args)
    if is_judge_output(args.scores, storage):
        refuse_options(args, SCORE_ONLY, "is for score outputs; a judge output's pairs are kept by --min-margin")
        return run_judged(args, storage)
    refuse_options(args, JUDGE_ONLY, "is for judge outputs (`vrscore judge`)")
    for name, value in SCORE_DEFAULTS.items():
        setattr(args, name, value if getattr(args, name) is None else getattr(args, name))
    scores = open_scores(args.scores, storage)
    formats = output_formats(args.format)
    if args.margin < 0 or args.pairs_per_group < 0:
        raise UserError("--margin and --pairs-per-group must be >= 0")
    if args.pairs_per_group > MAX_PAIRS_PER_GROUP:
        raise UserError(f"--pairs-per-group: at most {MAX_PAIRS_PER_GROUP:,} pairs per group (0 = up to that cap)")
    scores.require_columns([args.group_by, args.score_column], "--group-by/--score-column")
    options = {"strategy": args.strategy, "margin": args.margin, "score_column": args.score_column,
               "dimensions": resolve_dimensions(scores, args.dimensions), "pairs_per_group": args.pairs_per_group,
               "seed": args.seed, "group_by": args.group_by}
    summary = write_pairs_output(args, storage, formats,
                                 lambda: run_pairs(scores, args.out, options, formats, args.partitions))
    gap = summary["mean_score_gap"]
    print(f"{summary['pairs']} pairs ({args.strategy}, margin {args.margin} on {args.score_column})"
          + (f", mean gap {gap:+.4f}" if gap is not None else ""))
    print_pairs_outputs(summary, args.out, formats)
    return 0


def write_pairs_output(args: argparse.Namespace, storage, formats: list[str], work: Callable[[], dict]) -> dict:
    """Run `work` (it writes the pairs and returns the summary) as the one run into args.out, then
    write pairs.json: refused before Ray starts if the output is held or has pairs, again under the lease."""
    from pipeline.ray_runtime import init_ray

    out_fs = fsspec_filesystem(args.out, storage)
    fresh = functools.partial(refuse_existing_output, args.out, storage,
                              [PAIRS_DIR, *(f for f in formats if f != "parquet")])
    check_free(out_fs, args.out)
    fresh()
    init_ray(args.ray_address, quiet=args.quiet)
    with output_lease(out_fs, args.out, fresh):  # one run at a time
        summary = work()
        write_text(join(args.out, "pairs.json"), json.dumps(summary, indent=2), storage)
    return summary


def print_pairs_outputs(summary: dict, out: str, formats: list[str]) -> None:
    """The summary's mean dimension gaps and where each format was written."""
    for col, g in summary["mean_dimension_gaps"].items():
        print(f"  mean {gap_column(col):<24} {g:+.4f}" if g is not None else f"  mean {gap_column(col):<24} -")
    extra = "".join(f"   {f}: {join(out, f)}/" for f in formats if f != "parquet")
    print(f"pairs: {join(out, PAIRS_DIR)}/{extra}")


def run_judged(args: argparse.Namespace, storage) -> int:
    from jobs.judged_pairs_command import run_judged_pairs

    return run_judged_pairs(args, storage, output_formats(args.format))
