"""Reading a manifest that holds the media bytes (schemas/embedded_media.py) as a Ray Data source.

A Datasource of our own rather than `read_parquet`, for three reasons:
- ids made from file and row number need each row's number in its file, which only a reader
  that walks the row groups knows; and they must exist in the read itself, since Ray Data's
  checkpoint filter (resume) runs right after the read and compares ids;
- blocks are cut by bytes, not rows: a read task yields tables of at most `block_bytes` of
  media (a single larger item is a block of its own), so a few hundred large videos never
  make one 2 GB block;
- the driver only lists files and reads footers (once, pipeline/manifest_files.py): the bytes
  are read by the read tasks.

Each output table has the string columns a job reads (id, uri, media_type, prompt, group, then
the kept ones) plus `media_bytes`, which the decode stage consumes and drops.
"""
from __future__ import annotations

from collections.abc import Iterator

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.fs as pafs
import pyarrow.parquet as pq
from ray.data import Datasource, ReadTask
from ray.data.block import BlockMetadata

from pipeline.manifest_files import ManifestFile, file_name, parquet_paths
from pipeline.parquet_source import open_parquet
from schemas import manifest
from schemas.embedded_media import BYTES_COLUMN, MediaColumn, embedded_media_type, row_id
from schemas.job_config import GENERATED_IDS

_STRINGS = ("media_type", "prompt", "group")


class EmbeddedParquetSource(Datasource):
    """`files` are the manifest's, with their footers (pipeline/manifest_files.py); `id_column` is
    the column of the ids (None: 'id') or GENERATED_IDS; `keep` are the other columns carried
    (kept, alignment)."""

    def __init__(self, files: tuple[ManifestFile, ...], fs: pafs.FileSystem | None, media: MediaColumn,
                 id_column: str | None, keep: list[str], block_bytes: int):
        self._files = files
        # What each read task carries: the reader, not the list of every file.
        self._reader = RowGroupReader(fs, media, id_column or "id", keep, block_bytes)

    def estimate_inmemory_data_size(self) -> int | None:
        return None

    def get_read_tasks(self, parallelism: int, per_task_row_limit: int | None = None,
                       data_context=None) -> list[ReadTask]:
        tasks = []
        for file in self._files:  # footers read once, on the driver, when the manifest was opened
            first = 0
            for group, (rows, size) in enumerate(zip(file.row_groups, file.row_group_bytes)):
                tasks.append(ReadTask(
                    lambda r=self._reader, p=file.path, n=file.name, g=group, f=first: r.read(p, n, g, f),
                    BlockMetadata(num_rows=rows, size_bytes=size, exec_stats=None, input_files=[file.path]),
                    per_task_row_limit=per_task_row_limit))
                first += rows
        return tasks


class RowGroupReader:
    """Reads one row group of a file into the embedded-media columns, in blocks of at most
    `block_bytes` of media (a larger item alone)."""

    def __init__(self, fs: pafs.FileSystem | None, media: MediaColumn, id_column: str, keep: list[str],
                 block_bytes: int):
        self._fs, self._media, self._id_column = fs, media, id_column
        self._keep, self._block_bytes = keep, block_bytes

    def read(self, path: str, name: str, group: int, first_row: int) -> Iterator[pa.Table]:
        yield from self.read_opened(open_parquet(self._fs, path), name, group, first_row)

    def read_opened(self, pf: pq.ParquetFile, name: str, group: int, first_row: int) -> Iterator[pa.Table]:
        """`read` of a file already open: a reader of several of its row groups opens it once."""
        names = set(pf.schema_arrow.names)
        wanted = [self._media.name, *(c for c in _STRINGS if c in names), *self._keep]
        if self._id_column != GENERATED_IDS:
            wanted.append(self._id_column)
        table = pf.read_row_group(group, columns=list(dict.fromkeys(wanted)))
        sizes = self._sizes(table)
        start = 0
        while start < table.num_rows:
            end, total = start + 1, sizes[start]
            while end < table.num_rows and total + sizes[end] <= self._block_bytes:
                total += sizes[end]
                end += 1
            yield self._rows(table.slice(start, end - start), name, first_row + start)
            start = end

    def _bytes_and_paths(self, table: pa.Table) -> tuple[pa.Array, pa.Array | None]:
        column = table[self._media.name].combine_chunks()
        if self._media.layout == "binary":
            return column, None
        data = pc.struct_field(column, "bytes")
        if pc.any(pc.is_null(column)).as_py():  # a null struct: its fields are null too
            data = pc.if_else(pc.is_null(column), pa.nulls(len(column), data.type), data)
        paths = pc.struct_field(column, "path") if self._media.has_path else None
        if paths is not None:
            paths = pc.if_else(pc.is_null(column), pa.nulls(len(column), paths.type), paths)
        return data, paths

    def _sizes(self, table: pa.Table) -> list[int]:
        data, _ = self._bytes_and_paths(table)
        return pc.fill_null(pc.binary_length(data), 0).to_pylist()

    def _rows(self, table: pa.Table, file: str, first_row: int) -> pa.Table:
        data, paths = self._bytes_and_paths(table)
        n = table.num_rows
        if self._id_column == GENERATED_IDS:
            ids = pa.array([row_id(file, first_row + k) for k in range(n)], pa.string())
        else:
            ids = pc.cast(table[self._id_column], pa.string())
        uris = pc.cast(paths, pa.string()) if paths is not None else pa.nulls(n, pa.string())
        given = (pc.cast(table["media_type"], pa.string()).to_pylist() if "media_type" in table.column_names
                 else [None] * n)
        path_list, data_list = uris.to_pylist(), data.to_pylist()
        kinds = [g if g else embedded_media_type(self._media.name, p, d)
                 for g, p, d in zip(given, path_list, data_list)]
        out = {"id": ids, "uri": uris, "media_type": pa.array(kinds, pa.string())}
        for c in ("prompt", "group"):
            if c in table.column_names:
                out[c] = pc.cast(table[c], pa.string())
        for c in self._keep:
            out[c] = table[c]
        out[BYTES_COLUMN] = pc.cast(data, pa.large_binary())
        return pa.table(out)


def manifest_files(path: str, fs: pafs.FileSystem | None) -> list[tuple[str, str]]:
    """(path, name relative to the manifest) of each data file, in a stable order (a listing: no
    file is opened; a score job takes them from its opened manifest, pipeline/manifest_files.py)."""
    root = path.rstrip("/")
    return [(f, file_name(f, root)) for f in sorted(parquet_paths(path, fs))]


def embedded_columns(schema: pa.Schema, media: MediaColumn, id_column: str | None, *, needs_prompt: bool,
                     keep_columns: list[str], alignment_column: str | None) -> list[str]:
    """The manifest columns an embedded-media job reads (checked like a URI manifest's)."""
    required = (media.name,) if id_column == GENERATED_IDS else (id_column or "id", media.name)
    return manifest.columns_to_read(schema, needs_prompt=needs_prompt, keep_columns=keep_columns,
                                    alignment_column=alignment_column, required=required)
