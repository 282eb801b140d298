"""`vrscore pairs --scores OUT --min-margin X --out DIR` on the output of `vrscore judge`.

Each judged pair whose two orders agree and whose margin |2 p_a - 1| reaches X becomes one
preference pair (pipeline/judged_pairs.py), written as `vrscore pairs` writes mined ones:
DIR/pairs/*.parquet (schemas/pairs.py), the DPO JSON Lines asked for by --format, and
DIR/pairs.json (options and counts). The uris come from the manifest (--manifest, else the
judge job's), joined in the cluster.
"""
from __future__ import annotations

import argparse
import functools
import json

from pipeline.judge_input import JudgeInput, open_judged
from pipeline.judged_pairs import dpo_candidates, with_manifest_uris
from pipeline.parquet_reader import read_parquet
from pipeline.scores_input import write_empty_if_missing
from pipeline.storage import arrow_filesystem, join
from schemas.job_config import StorageConfig
from schemas.pairs import gap_column, pairs_schema
from schemas.scores import META_JOB
from schemas.user_error import UserError

PAIRS_DIR = "pairs"
ROWS_PER_FILE = 250_000
ROWS_PER_PARTITION = 250_000


def judge_manifest(judged: JudgeInput, given: str | None) -> str:
    """The manifest that names the judged items' uris: --manifest, else the judge job's."""
    if given:
        return given
    raw = (judged.schema.metadata or {}).get(META_JOB)
    manifest = json.loads(raw).get("manifest") if raw else None
    if not isinstance(manifest, str):
        raise UserError(f"{judged.data_uri}: the judge output does not name its manifest; give --manifest, the "
                        "Parquet manifest with the items' id and uri")
    return manifest


def _manifest_dataset(uri: str, storage: StorageConfig):
    import pyarrow.parquet as pq

    fs, path = arrow_filesystem(uri, storage)
    try:
        names = pq.ParquetDataset(path, filesystem=fs).schema.names
    except (OSError, FileNotFoundError, ValueError) as exc:
        raise UserError(f"--manifest {uri}: cannot read it as Parquet: {exc}") from exc
    if not {"id", "uri"} <= set(names):
        raise UserError(f"--manifest {uri}: the DPO records name media by uri; this manifest has no id and uri "
                        f"columns (found: {', '.join(names)})")
    return read_parquet(path, fs, [c for c in ("id", "uri", "media_type") if c in names])


def write_judged_pairs(judged: JudgeInput, out: str, options: dict, formats: list[str], manifest: str,
                       partitions: int | None) -> dict:
    from ray.data.aggregate import Mean

    from jobs.pairs_command import dpo_datasink

    dims = judged.dimension_columns
    partitions = partitions or min(200, max(1, -(-judged.count_rows() // ROWS_PER_PARTITION)))
    schema = pairs_schema(dims, json.dumps(options))
    keep = functools.partial(dpo_candidates, weights=judged.weights, min_margin=options["min_margin"],
                             dimension_columns=dims)
    columns = ["id", "a", "b", "group", "prompt", "status", "p_a", "consistent", *dims]
    # Materialised: the join reads the candidates twice, and the empty case skips the join
    # (Ray's shuffle finds no key column in an empty union).
    candidates = judged.read(columns).map_batches(keep, batch_format="pyarrow").materialize()
    if candidates.count():
        pairs = with_manifest_uris(candidates, _manifest_dataset(manifest, judged.storage), schema, partitions)
    else:
        pairs = candidates.select_columns(schema.names)
    pairs = pairs.materialize()  # the shuffles once; every output reads the pairs
    fs, path = arrow_filesystem(join(out, PAIRS_DIR), judged.storage)
    pairs.write_parquet(path, filesystem=fs, schema=schema, min_rows_per_file=ROWS_PER_FILE)
    write_empty_if_missing(join(out, PAIRS_DIR), schema, judged.storage)
    for fmt in formats:
        if fmt != "parquet":
            fs, path = arrow_filesystem(join(out, fmt), judged.storage)
            pairs.write_datasink(dpo_datasink(path, fmt, filesystem=fs, min_rows_per_file=ROWS_PER_FILE))
    n = pairs.count()
    means = pairs.aggregate(*(Mean(c) for c in ["chosen_score", *map(gap_column, dims)])) if n else {}
    return {"scores": judged.data_uri, **options, "manifest": manifest, "judged_pairs": judged.count_rows(),
            "pairs": n, "mean_chosen_probability": means.get("mean(chosen_score)"),
            "mean_dimension_gaps": {c: means.get(f"mean({gap_column(c)})") for c in dims}}


def run_judged_pairs(args: argparse.Namespace, storage: StorageConfig, formats: list[str]) -> int:
    from jobs.pairs_command import print_pairs_outputs, write_pairs_output

    judged = open_judged(args.scores, storage)
    min_margin = 0.0 if args.min_margin is None else args.min_margin
    if not 0 <= min_margin <= 1:
        raise UserError("--min-margin is a margin |2 p_a - 1| in [0, 1]")
    manifest = judge_manifest(judged, args.manifest)
    options = {"source": "judge", "min_margin": min_margin, "agreement": "every weighted question consistent"}
    summary = write_pairs_output(
        args, storage, formats, lambda: write_judged_pairs(judged, args.out, options, formats, manifest, args.partitions))
    chosen = summary["mean_chosen_probability"]
    print(f"{summary['pairs']} pairs of {summary['judged_pairs']} judged (both orders agree, margin >= {min_margin})"
          + (f", mean P(chosen preferred) {chosen:.4f}" if chosen is not None else ""))
    print_pairs_outputs(summary, args.out, formats)
    return 0
