"""Reading the columns of a Parquet manifest of URIs as a Ray Data source, from its opened
footers (pipeline/manifest_files.py).

A Datasource of our own rather than `read_parquet`: Ray Data's reader lists the files again,
reads every footer again on a pool of actors and samples files to guess sizes, three more
opens of each file on top of the read itself, where the job holds the footers already. Here a
read task is one file, opened once and read a row group at a time (a block per row group), in
the types of `schemas.manifest.read_schema`: integer ids become strings in the read itself,
before Ray Data's checkpoint filter (planned right after the read) compares them with the
string ids of the output on resume.
"""
from __future__ import annotations

from collections.abc import Iterator

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.fs as pafs
import pyarrow.parquet as pq
import ray
from ray.data import Dataset, Datasource, ReadTask
from ray.data.block import BlockMetadata

from pipeline.manifest_files import Manifest


def open_parquet(fs: pafs.FileSystem | None, path: str) -> pq.ParquetFile:
    return pq.ParquetFile(fs.open_input_file(path) if fs is not None else path)


class ColumnReader:
    """Reads `schema`'s columns of one file, a row group at a time, cast to `schema`'s types (a
    column a file lacks is nulls, as a dataset with a schema reads it)."""

    def __init__(self, fs: pafs.FileSystem | None, schema: pa.Schema):
        self._fs, self._schema = fs, schema

    def read(self, path: str) -> Iterator[pa.Table]:
        pf = open_parquet(self._fs, path)
        present = [name for name in self._schema.names if name in pf.schema_arrow.names]
        for group in range(pf.metadata.num_row_groups):
            table = pf.read_row_group(group, columns=present)
            yield pa.table({f.name: pc.cast(table[f.name], f.type) if f.name in present
                            else pa.nulls(table.num_rows, f.type) for f in self._schema}, schema=self._schema)

    def read_all(self, path: str) -> pa.Table:
        return pa.concat_tables(list(self.read(path)) or [self._schema.empty_table()])


class ParquetManifestSource(Datasource):
    """One read task per file of `manifest`, each yielding `schema`'s columns."""

    def __init__(self, manifest: Manifest, schema: pa.Schema):
        self._files = manifest.files
        # What each read task carries: the reader, not the list of every file.
        self._reader = ColumnReader(manifest.filesystem, schema)  # type: ignore[arg-type]

    def estimate_inmemory_data_size(self) -> int | None:
        return None

    def get_read_tasks(self, parallelism: int, per_task_row_limit: int | None = None,
                       data_context=None) -> list[ReadTask]:
        return [ReadTask(lambda r=self._reader, p=f.path: r.read(p),
                         BlockMetadata(num_rows=sum(f.row_groups), size_bytes=None, exec_stats=None,
                                       input_files=[f.path]),
                         per_task_row_limit=per_task_row_limit)
                for f in self._files if sum(f.row_groups)]


def read_as_planned(source: Datasource) -> Dataset:
    """`source` read with one read task per task it plans, its blocks as its tasks cut them.

    Without a block count, Ray Data aims at 200 blocks and splits each task's output to get
    there: a manifest of 96 rows in one file became 96 one-row blocks, which the repartition
    before decode then gathered again at tens of blocks a second on a busy node, holding back
    the decode and score stages (benchmarks/pipeline_overhead.py's 96-item job: the read ended
    9 s after it began and scoring began at 14 s; read as planned, 0 s and 10.5 s, when the
    scorer's model is loaded). For a manifest of URIs the decode stage's blocks are cut by
    `repartition` after the read. (A manifest holding the media is not read this way: its
    blocks are cut by bytes, up to Ray Data's 128 MiB target, and Ray's split is what gives
    a few large items several decode tasks.)
    """
    return ray.data.read_datasource(source, override_num_blocks=max(1, len(source.get_read_tasks(1))))


__all__ = ["ColumnReader", "ParquetManifestSource", "open_parquet", "read_as_planned"]
