"""The items a judge job can pair: one small row per manifest item, with where its media is.

Columns: id, uri, media_type, prompt, group (strings, as a score job reads them) and `file`,
`row_group` (where the item's bytes are: pipeline/media_readback.py reads them back by these).
No media bytes reach the driver:
- a manifest of URIs: its small columns; the uri is where the media is (file and row_group null);
- Parquet that holds the media: per data file, only the small columns it has (the ids, or ids
  made from file and row number with none read; media_type, prompt, group), each row with its
  file and row group from the footers the job opened once. media_type may stay null: the reader
  tells it from the column's name, the struct's path or the bytes when it reads them back;
- WebDataset shards: a tar has no index, so each shard is streamed once, in the cluster (one
  task per shard), and only its samples' keys, uris, media types, prompts and json `group`s
  come back, with the shard's path. A sample that cannot be read is kept: read back, it is an
  error row again, and its pairs are error rows.
"""
from __future__ import annotations

import functools
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import ray
from fsspec.spec import AbstractFileSystem

from pipeline.manifest_files import FOOTER_THREADS, Manifest, ManifestFile
from pipeline.parquet_source import open_parquet
from pipeline.webdataset_source import ShardReader
from schemas.embedded_media import row_id
from schemas.job_config import GENERATED_IDS, JobConfig

STRINGS = ("id", "uri", "media_type", "prompt", "group")
ITEMS_SCHEMA = pa.schema([*(pa.field(c, pa.string()) for c in STRINGS), pa.field("file", pa.string()),
                          pa.field("row_group", pa.int64())])


def manifest_items(cfg: JobConfig, manifest: Manifest, id_column: str | None) -> pa.Table:
    """ITEMS_SCHEMA rows of every item of `manifest` (opened once by the job); `id_column` as
    the job resolved it (GENERATED_IDS: ids from file and row)."""
    if manifest.kind == "webdataset":
        return _shard_items(cfg, manifest)
    threads = max(1, min(FOOTER_THREADS, len(manifest.files)))  # S3 round trips overlap
    with ThreadPoolExecutor(max_workers=threads) as pool:
        parts = list(pool.map(lambda f: _file_items(manifest, f, id_column), manifest.files))
    return pa.concat_tables(parts) if parts else ITEMS_SCHEMA.empty_table()


def _file_items(manifest: Manifest, file: ManifestFile, id_column: str | None) -> pa.Table:
    names = set(file.schema.names)
    id_column = id_column or "id"
    small = [c for c in (id_column, *STRINGS[1:]) if c in names and c != GENERATED_IDS]
    rows = sum(file.row_groups)
    table = open_parquet(manifest.filesystem, file.path).read(columns=small) if small else None
    cols = {c: pc.cast(table[c], pa.string()) if table is not None and c in table.column_names
            else pa.nulls(rows, pa.string()) for c in STRINGS[1:]}
    if id_column == GENERATED_IDS:
        ids = pa.array([row_id(file.name, k) for k in range(rows)], pa.string())
    else:
        ids = pc.cast(table[id_column], pa.string())  # type: ignore[index]
    if manifest.kind == "embedded":
        cols["uri"] = pa.nulls(rows, pa.string())  # the struct's path comes with the bytes, at read-back
        place = {"file": pa.array([file.path] * rows, pa.string()),
                 "row_group": pa.array(np.repeat(np.arange(len(file.row_groups)), file.row_groups), pa.int64())}
    else:
        place = {"file": pa.nulls(rows, pa.string()), "row_group": pa.nulls(rows, pa.int64())}
    return pa.table({"id": ids, **cols, **place}, schema=ITEMS_SCHEMA)


def shard_items(batch: dict[str, np.ndarray], reader: ShardReader) -> pa.Table:
    """Ray Data task: a batch of shard paths in, their samples' ITEMS_SCHEMA rows out (no bytes)."""
    rows = [{**{c: row[c] for c in STRINGS}, "file": str(shard), "row_group": None}
            for shard in batch["shard"] for row in reader.samples(str(shard))]
    return pa.Table.from_pylist(rows, schema=ITEMS_SCHEMA)


def _shard_items(cfg: JobConfig, manifest: Manifest) -> pa.Table:
    fs = manifest.filesystem
    assert isinstance(fs, AbstractFileSystem), "tar shards are read through fsspec"
    reader = ShardReader(fs, manifest.root, cfg.prompt_field, cfg.media_extensions,
                         block_bytes=1)  # samples() only: no blocks are cut
    ds = ray.data.from_items([{"shard": p} for p in manifest.paths], override_num_blocks=len(manifest.paths))
    ds = ds.map_batches(functools.partial(shard_items, reader=reader), batch_size=1, batch_format="numpy")
    tables = [t for t in ds.iter_batches(batch_format="pyarrow", batch_size=None) if t.num_rows]
    return pa.concat_tables(tables).cast(ITEMS_SCHEMA) if tables else ITEMS_SCHEMA.empty_table()


__all__ = ["ITEMS_SCHEMA", "manifest_items", "shard_items"]
