"""The report's read-back stage: the media of the rows it shows, by id, from the manifest that
holds it (pipeline/report_source.py checked it first), with the scoring job's own readers, so a
row's bytes, media type and id are found exactly as the job found them:
- Parquet: the row groups holding the wanted ids, read by `RowGroupReader` (ids from file and
  row number point at their row group; an id column is read alone first to find them);
- WebDataset: the shard a row names in its `uri` (`<shard>/<key>.<ext>`), streamed by
  `ShardReader` until its wanted keys are all found.
Runs as a Ray Data stage, so the bytes never reach the driver; the thumbnail stage decodes them
under the report's limits (actors/report_thumbnailer.py).
"""
from __future__ import annotations

from collections import defaultdict

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from pipeline.embedded_source import RowGroupReader, manifest_files
from pipeline.report_source import ReportSource
from pipeline.storage import arrow_filesystem
from pipeline.webdataset_shards import shard_root, webdataset_shards
from pipeline.webdataset_source import ShardReader
from schemas.embedded_media import BYTES_COLUMN, READ_ERROR_COLUMN
from schemas.job_config import GENERATED_IDS, StorageConfig

_WHOLE_GROUP = 1 << 62  # a row group comes back as one table


class MediaLookup:
    """Batch columns in: id, uri, media_type (every shown row in one batch, so each row group or
    shard is read once). Out: the same, the media type as the source gives it, plus the bytes
    (`media_bytes`) and why there are none (`read_error`)."""

    def __init__(self, source: ReportSource, storage: dict):
        self._source, self._storage = source, StorageConfig.model_validate(storage)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        ids = [str(i) for i in batch["id"]]
        if self._source.kind == "parquet":
            found = self._from_parquet(set(ids))
        else:
            found = self._from_shards(dict(zip(ids, (None if u is None else str(u) for u in batch["uri"]))))
        missing = {BYTES_COLUMN: None, READ_ERROR_COLUMN: f"id not found in the manifest {self._source.manifest}",
                   "media_type": None}
        rows = [found.get(i, missing) for i in ids]
        return {**batch,
                "media_type": np.array([r["media_type"] or m for r, m in zip(rows, batch["media_type"])], dtype=object),
                BYTES_COLUMN: np.array([r[BYTES_COLUMN] for r in rows], dtype=object),
                READ_ERROR_COLUMN: np.array([r[READ_ERROR_COLUMN] for r in rows], dtype=object)}

    def _from_parquet(self, wanted: set[str]) -> dict[str, dict]:
        source = self._source
        fs, path = arrow_filesystem(source.manifest, self._storage)
        id_column = source.id_column or "id"
        reader = RowGroupReader(fs, source.media, id_column, [], _WHOLE_GROUP)
        found: dict[str, dict] = {}
        for file, name in manifest_files(path, fs):
            pf = pq.ParquetFile(fs.open_input_file(file) if fs is not None else file)
            starts = np.cumsum([0] + [pf.metadata.row_group(g).num_rows for g in range(pf.metadata.num_row_groups)])
            rows = _generated_rows(wanted, name) if id_column == GENERATED_IDS else _rows_of(pf, id_column, wanted)
            for group in sorted({int(np.searchsorted(starts, r, side="right")) - 1 for r in rows}):
                for table in reader.read(file, name, group, int(starts[group])):
                    hits = table.filter(pc.is_in(table["id"], value_set=pa.array(sorted(wanted), pa.string())))
                    found.update((r["id"], {**r, READ_ERROR_COLUMN: None}) for r in hits.to_pylist())
            if len(found) == len(wanted):
                break
        return found

    def _from_shards(self, uris: dict[str, str | None]) -> dict[str, dict]:
        fs, shards = webdataset_shards(self._source.manifest, self._storage)  # type: ignore[misc]
        reader = ShardReader(fs, shard_root(fs, self._source.manifest, shards), self._source.prompt_field,
                             list(self._source.media_extensions), _WHOLE_GROUP)
        by_shard: dict[str, set[str]] = defaultdict(set)
        for shard in shards:
            name = reader.name(shard)
            for key, uri in uris.items():
                if uri is not None and uri.startswith(f"{name}/{key}."):
                    by_shard[shard].add(key)
        found: dict[str, dict] = {}
        for shard, keys in by_shard.items():
            for row in reader.samples(shard):
                if row["id"] in keys:
                    found[row["id"]] = row
                    if keys <= found.keys():
                        break
        return found


def _generated_rows(wanted: set[str], file: str) -> list[int]:
    """Row numbers of the ids made from this file and row number (`<file>#<row>`)."""
    rows = []
    for i in wanted:
        name, _, row = i.rpartition("#")
        if name == file and row.isdigit():
            rows.append(int(row))
    return rows


def _rows_of(pf: pq.ParquetFile, column: str, wanted: set[str]) -> list[int]:
    """Row numbers of the file whose id (read as the job reads it: a string) is wanted; the id
    column alone is read."""
    ids = pc.cast(pf.read(columns=[column])[column], pa.string())
    mask = pc.is_in(ids, value_set=pa.array(sorted(wanted), pa.string()))
    return np.flatnonzero(mask.to_numpy(zero_copy_only=False)).tolist()
