"""Refuse a manifest with null or duplicate ids before any work.

Ids are compared as the job reads them (integers as their decimal string): 7 and "7" are one
id. Small manifests are checked on the driver, larger ones by a distributed groupby, so their
ids never reach the driver. Either way each file is opened once, for its id column alone (the
files and footers come from the opened manifest, pipeline/manifest_files.py).
"""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pyarrow as pa
import pyarrow.compute as pc
import ray

from pipeline.manifest_files import FOOTER_THREADS, Manifest
from pipeline.parquet_source import ColumnReader, ParquetManifestSource, read_as_planned
from schemas.job_config import GENERATED_IDS
from schemas.manifest import STRING_READ_TYPE, ManifestError

# Up to this many manifest rows the ids are counted on the driver: one column read with
# pyarrow (about 100 MB for 2M ids) in well under a second, where a distributed groupby
# costs seconds of shuffle tasks even for ten rows. Larger manifests never reach the driver.
DRIVER_ID_CHECK_MAX_ROWS = 2_000_000


def _id_problems(counts: pa.Table) -> pa.Table:
    """Rows of an (id, count()) table that are null ids or duplicates."""
    bad = pc.or_(pc.is_null(counts["id"]), pc.greater(counts["count()"], 1))
    return counts.filter(bad)


def _null_id_rows(counts: pa.Table) -> pa.Table:
    return counts.filter(pc.is_null(counts["id"]))


def _cluster_cpus() -> int:
    return max(1, min(200, int(ray.cluster_resources().get("CPU", 1))))


def _id_problems_on_driver(manifest: Manifest, column: str) -> tuple[int, list[dict]]:
    reader = ColumnReader(manifest.filesystem, pa.schema([pa.field(column, STRING_READ_TYPE)]))  # type: ignore[arg-type]
    with ThreadPoolExecutor(max_workers=max(1, min(FOOTER_THREADS, len(manifest.files)))) as pool:
        ids = pa.concat_tables(pool.map(reader.read_all, manifest.paths)).rename_columns(["id"])
    counts = ids.group_by("id").aggregate([([], "count_all")]).rename_columns(["id", "count()"])
    problems = _id_problems(counts)
    first = pc.sort_indices(problems, sort_keys=[("id", "ascending", "at_start")])[:11]
    return problems.num_rows, problems.take(first).to_pylist()


def _id_problems_distributed(manifest: Manifest, column: str) -> tuple[int, list[dict]]:
    source = ParquetManifestSource(manifest, pa.schema([pa.field(column, STRING_READ_TYPE)]))
    problems = (
        read_as_planned(source).rename_columns({column: "id"})
        # A shuffle partition per CPU: Ray's default of 200 costs tens of seconds on small jobs.
        .groupby("id", num_partitions=_cluster_cpus()).count()
        .map_batches(_id_problems, batch_format="pyarrow").materialize()
    )
    n = problems.count()
    if n == 0:
        return 0, []
    nulls = problems.map_batches(_null_id_rows, batch_format="pyarrow").take(1)
    return n, nulls + problems.take(11)


def check_unique_ids(manifest: Manifest, id_column: str | None = None,
                     driver_max_rows: int = DRIVER_ID_CHECK_MAX_ROWS) -> None:
    """Raise ManifestError for null or duplicate ids in `id_column` (None: 'id'). Ids made from
    file and row number (`GENERATED_IDS`) are unique by construction; a WebDataset's keys are not
    checked up front (it would read every shard)."""
    if id_column == GENERATED_IDS or manifest.kind == "webdataset":
        return
    column = id_column or "id"
    on_driver = (manifest.rows or 0) <= driver_max_rows
    n_problems, rows = (_id_problems_on_driver if on_driver else _id_problems_distributed)(manifest, column)
    if n_problems == 0:
        return
    nulls = [r for r in rows if r["id"] is None]
    if nulls:
        raise ManifestError(f"{nulls[0]['count()']} manifest rows have a null id; ids must be unique strings")
    shown = ", ".join(f"{r['id']!r} x{r['count()']}" for r in rows[:10])
    raise ManifestError(f"{n_problems} ids appear more than once in the manifest (ids must be unique): {shown}")


__all__ = ["DRIVER_ID_CHECK_MAX_ROWS", "check_unique_ids"]
