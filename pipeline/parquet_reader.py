"""Ray Data's Parquet reader, sized to what it reads.

Ray Data 2.60 reads every Parquet footer on a pool of actors, 32 of them by default: 32 new
worker processes per `read_parquet`, whatever the number of files. On a small node that is
seconds of start-up for an input of one file. One actor reads up to 128 footers concurrently,
so the pool is sized to the file count instead. (A score job reads its manifest from the
footers it read once, pipeline/parquet_source.py, not with `read_parquet`.) A user's own RAY_DATA_PARQUET_FOOTER_NUM_ACTORS still wins.
"""
from __future__ import annotations

import math
import os
from typing import TYPE_CHECKING

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

if TYPE_CHECKING:  # the CLI imports this module for --help: keep Ray out of that path
    from ray.data import Dataset

FOOTER_ACTORS_ENV = "RAY_DATA_PARQUET_FOOTER_NUM_ACTORS"
FILES_PER_FOOTER_ACTOR = 256
MAX_FOOTER_ACTORS = 32  # Ray's own default, reached from 7,937 files up


def footer_actors(n_files: int) -> int:
    """Footer-reading actors for a dataset of `n_files` Parquet files."""
    return max(1, min(MAX_FOOTER_ACTORS, math.ceil(n_files / FILES_PER_FOOTER_ACTOR)))


def parquet_files(path: str | list[str] | tuple[str, ...], fs: pafs.FileSystem | None) -> list[str]:
    """The data files of a Parquet file or directory (a listing; no footer is read), or of a list of
    files (as it is: pyarrow takes a one-file list for a tuple it cannot open)."""
    if isinstance(path, (list, tuple)):
        return list(path)
    return list(pq.ParquetDataset(path, filesystem=fs).files)


def row_count(dataset: pq.ParquetDataset) -> int:
    """Rows of a Parquet dataset from its footers, without reading any data."""
    return sum(f.metadata.num_rows for f in dataset.fragments)


def read_parquet(path: str, fs: pafs.FileSystem | None, columns: list[str] | None = None,
                 schema: pa.Schema | None = None) -> "Dataset":
    """`ray.data.read_parquet` with its footer pool sized to the files; `columns` are
    projected into the read (only they are read from storage). `schema`, when given, is the
    schema each file is cast to as it is read."""
    import ray

    kwargs = {} if schema is None else {"schema": schema}
    if FOOTER_ACTORS_ENV in os.environ:
        ds = ray.data.read_parquet(path, filesystem=fs, **kwargs)
    else:
        # Ray reads the setting when the reader is built, here on the driver, so an
        # override scoped to this call reaches the listing task and no other read.
        os.environ[FOOTER_ACTORS_ENV] = str(footer_actors(len(parquet_files(path, fs))))
        try:
            ds = ray.data.read_parquet(path, filesystem=fs, **kwargs)
        finally:
            del os.environ[FOOTER_ACTORS_ENV]
    return ds.select_columns(columns) if columns else ds


__all__ = ["footer_actors", "parquet_files", "read_parquet", "row_count"]
