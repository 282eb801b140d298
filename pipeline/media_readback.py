"""Items' media read back by id from a manifest that holds it (a Parquet column of bytes or
`{bytes, path}` structs, or WebDataset shards), with the scoring job's own readers, so that an
item's bytes, media type and uri are found exactly as a job reading the whole manifest finds them.

Two readers share it: the report (pipeline/report_media_lookup.py: the rows it shows) and the
judge's decode stage (actors/pair_units.py: the items of one unit). Each wanted id comes with
where it is, when that is known:
- Parquet: (data file, row group); only those row groups are read, each file opened once. An id
  without a place is looked for: an id made from file and row number names its row, else the
  id column alone is read to find it.
- WebDataset: (shard, None); the shard is streamed until its wanted keys are all found (a tar
  has no index).
An id that is not where it was said to be, or nowhere, comes back as a read error ("id not
found in the manifest ..."), never as another item's bytes.
"""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from pipeline.embedded_source import RowGroupReader
from pipeline.manifest_files import Manifest, file_name, parquet_paths
from pipeline.parquet_source import open_parquet
from pipeline.storage import arrow_filesystem
from pipeline.webdataset_shards import shard_root, webdataset_shards
from pipeline.webdataset_source import ShardReader
from schemas.embedded_media import BYTES_COLUMN, READ_ERROR_COLUMN, MediaColumn
from schemas.job_config import GENERATED_IDS, JobConfig, StorageConfig

_WHOLE_GROUP = 1 << 62  # a row group comes back as one table

# Where an item's bytes are: (Parquet data file, row group) or (tar shard, None), the file as the
# manifest's filesystem names it; None where it is not known.
Location = tuple[str, int | None] | None


@dataclass(frozen=True)
class MediaSource:
    """A manifest that holds the media, as a job reads it (JobConfig's manifest settings)."""

    kind: Literal["parquet", "webdataset"]
    manifest: str
    media: MediaColumn | None = None  # parquet: the media column
    id_column: str | None = None  # parquet: the ids' column (None: 'id'), or GENERATED_IDS
    prompt_field: str | None = None  # webdataset: as the job chose a sample's members
    media_extensions: tuple[str, ...] = ()


def job_source(cfg: JobConfig, manifest: Manifest, id_column: str | None) -> MediaSource | None:
    """The media source of a job's opened manifest (None: a manifest of URIs); `id_column` as
    the job resolved it (pipeline/score_pipeline.py's inspect_manifest)."""
    if manifest.kind == "uri":
        return None
    kind: Literal["parquet", "webdataset"] = "webdataset" if manifest.kind == "webdataset" else "parquet"
    return MediaSource(kind, cfg.manifest, manifest.media, id_column, cfg.prompt_field, tuple(cfg.media_extensions))


class MediaReadback:
    """`read(wanted)`: id -> {uri, media_type, media_bytes, read_error} for every wanted id."""

    def __init__(self, source: MediaSource, storage: StorageConfig):
        self.source, self._storage = source, storage
        self._shards: tuple[ShardReader, list[str]] | None = None  # listed once, on first use

    def read(self, wanted: dict[str, Location]) -> dict[str, dict]:
        found = self._from_parquet(wanted) if self.source.kind == "parquet" else self._from_shards(wanted)
        missing = {"uri": None, "media_type": None, BYTES_COLUMN: None,
                   READ_ERROR_COLUMN: f"id not found in the manifest {self.source.manifest}"}
        return {key: found.get(key, missing) for key in wanted}

    def shard_locations(self, uris: dict[str, str | None]) -> dict[str, Location]:
        """The shard of each id from the uri a job gave its row (`<shard name>/<key>.<ext>`)."""
        reader, shards = self._shard_reader()
        names = {reader.name(s): s for s in shards}
        where: dict[str, Location] = {}
        for key, uri in uris.items():
            shard = next((s for n, s in names.items() if uri is not None and uri.startswith(f"{n}/{key}.")), None)
            where[key] = None if shard is None else (shard, None)
        return where

    def _from_parquet(self, wanted: dict[str, Location]) -> dict[str, dict]:
        fs, path = arrow_filesystem(self.source.manifest, self._storage)
        root = path.rstrip("/")
        groups: dict[str, dict[int, set[str]]] = defaultdict(lambda: defaultdict(set))
        for key, where in wanted.items():
            if where is not None and where[1] is not None:
                groups[where[0]][where[1]].add(key)
        opened = {}
        unplaced = {key for key, where in wanted.items() if where is None or where[1] is None}
        if unplaced:  # looked for file by file
            for file in sorted(parquet_paths(path, fs)):
                pf = opened[file] = open_parquet(fs, file)
                located = self._locate(pf, file_name(file, root), unplaced)
                for key, group in located.items():
                    groups[file][group].add(key)
                unplaced -= located.keys()
                if not unplaced:
                    break
        media = self.source.media
        assert media is not None, "a Parquet source names its media column"
        reader = RowGroupReader(fs, media, self.source.id_column or "id", [], _WHOLE_GROUP)
        found: dict[str, dict] = {}
        for file, by_group in groups.items():
            pf = opened.get(file) or open_parquet(fs, file)
            starts = _starts(pf)
            for group in sorted(g for g in by_group if 0 <= g < pf.metadata.num_row_groups):
                keys = by_group[group]
                for table in reader.read_opened(pf, file_name(file, root), group, int(starts[group])):
                    hits = table.filter(pc.is_in(table["id"], value_set=pa.array(sorted(keys), pa.string())))
                    found.update((r["id"], _row(r)) for r in hits.to_pylist())
        return found

    def _locate(self, pf: pq.ParquetFile, name: str, wanted: set[str]) -> dict[str, int]:
        """Row group of each wanted id in this file."""
        starts = _starts(pf)
        column = self.source.id_column or "id"
        if column == GENERATED_IDS:
            rows = {}
            for key in wanted:
                file, _, row = key.rpartition("#")
                if file == name and row.isdigit() and int(row) < starts[-1]:
                    rows[key] = int(row)
        else:  # the id column alone, read as the job reads it: as strings
            ids = pc.cast(pf.read(columns=[column])[column], pa.string())
            mask = pc.is_in(ids, value_set=pa.array(sorted(wanted), pa.string())).to_numpy(zero_copy_only=False)
            rows = {ids[int(r)].as_py(): int(r) for r in np.flatnonzero(mask)}
        return {key: int(np.searchsorted(starts, row, side="right")) - 1 for key, row in rows.items()}

    def _shard_reader(self) -> tuple[ShardReader, list[str]]:
        if self._shards is None:
            fs, shards = webdataset_shards(self.source.manifest, self._storage)  # type: ignore[misc]
            reader = ShardReader(fs, shard_root(fs, self.source.manifest, shards), self.source.prompt_field,
                                 list(self.source.media_extensions), _WHOLE_GROUP)
            self._shards = reader, shards
        return self._shards

    def _from_shards(self, wanted: dict[str, Location]) -> dict[str, dict]:
        reader, _ = self._shard_reader()
        by_shard: dict[str, set[str]] = defaultdict(set)
        for key, where in wanted.items():
            if where is not None:
                by_shard[where[0]].add(key)
        found: dict[str, dict] = {}
        for shard, keys in by_shard.items():
            for row in reader.samples(shard):
                if row["id"] in keys:
                    found[row["id"]] = _row(row)
                    if keys <= found.keys():
                        break
        return found


def _starts(pf: pq.ParquetFile) -> np.ndarray:
    """The first row of each row group, and the file's row count last."""
    meta = pf.metadata
    return np.cumsum([0] + [meta.row_group(g).num_rows for g in range(meta.num_row_groups)])


def _row(row: dict) -> dict:
    return {"uri": row.get("uri"), "media_type": row.get("media_type"), BYTES_COLUMN: row.get(BYTES_COLUMN),
            READ_ERROR_COLUMN: row.get(READ_ERROR_COLUMN)}


__all__ = ["Location", "MediaReadback", "MediaSource", "job_source"]
