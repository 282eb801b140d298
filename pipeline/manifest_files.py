"""A score job's manifest, opened once on the driver and passed to every step that asks about it.

The job needs the manifest's files (for its fingerprint and for the read), each Parquet file's
own schema (the type check: a dataset's schema is only its first file's), the row count (the
decode stage's block size, the progress total, where the id check runs) and its row groups (the
read tasks). One listing, one `info` per file (the fingerprint) and one read of each footer give
all of them. Afterwards only the id check and the read open a file, each once: a manifest's files
are opened once per purpose that needs their bytes (footers, ids, rows), not once per caller.

Three kinds of manifest (schemas/job_config.py, `JobConfig.manifest`):
- "uri":        Parquet with a `uri` column (pipeline/parquet_source.py reads it);
- "embedded":   Parquet holding the media bytes (pipeline/embedded_source.py);
- "webdataset": tar shards (pipeline/webdataset_source.py); no footers, no row count.
"""
from __future__ import annotations

import os
import posixpath
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Literal

import pyarrow as pa
import pyarrow.dataset as pads
import pyarrow.fs as pafs
import pyarrow.parquet as pq
from fsspec.spec import AbstractFileSystem

from actors.file_fingerprint import file_version, summary
from pipeline.storage import arrow_filesystem, fsspec_filesystem
from pipeline.webdataset_shards import shard_root, webdataset_shards
from schemas.embedded_media import MediaColumn, media_column
from schemas.job_config import StorageConfig
from schemas.manifest import ManifestError

# Footers read at once (S3 round trips overlap).
FOOTER_THREADS = 16


@dataclass(frozen=True)
class ManifestFile:
    path: str  # as the manifest's filesystem names it
    name: str  # relative to the manifest (its base name for a manifest of one file): generated ids use it
    schema: pa.Schema | None = None  # its own, from its footer (None: a tar shard)
    row_groups: tuple[int, ...] = ()  # rows of each row group, from its footer
    row_group_bytes: tuple[int, ...] = ()  # their uncompressed bytes, from its footer


@dataclass(frozen=True)
class Manifest:
    uri: str  # as the job names it (normalised)
    kind: Literal["uri", "embedded", "webdataset"]
    # pyarrow's for Parquet (None: a local path, Ray resolves it), fsspec's for tar shards
    filesystem: pafs.FileSystem | AbstractFileSystem | None
    files: tuple[ManifestFile, ...]  # in the listing's order
    schema: pa.Schema  # the dataset's: its first file's (empty for WebDataset)
    fingerprint: dict  # files, bytes and digest, as job.json keeps it (pipeline/output_dir.py)
    media: MediaColumn | None = None  # where the bytes are, for kind "embedded"
    root: str = ""  # what the files' names are relative to

    @property
    def rows(self) -> int | None:
        """From the footers; None for tar shards (unknown until they are read)."""
        return None if self.kind == "webdataset" else sum(sum(f.row_groups) for f in self.files)

    @property
    def paths(self) -> list[str]:
        return [f.path for f in self.files]


def file_name(path: str, root: str) -> str:
    """A data file as the job names it (generated ids, shard uris): relative to the manifest's
    root, or its base name when the manifest is that one file."""
    return posixpath.relpath(path, root) if path != root else posixpath.basename(path)


def _footer(fs: pafs.FileSystem | None, path: str, name: str) -> ManifestFile:
    meta = pq.ParquetFile(fs.open_input_file(path) if fs is not None else path).metadata  # one open
    groups = [meta.row_group(g) for g in range(meta.num_row_groups)]
    return ManifestFile(path, name, meta.schema.to_arrow_schema(), tuple(g.num_rows for g in groups),
                        tuple(g.total_byte_size for g in groups))


def parquet_paths(path: str, fs: pafs.FileSystem | None) -> list[str]:
    """The data files of a Parquet file or folder, as Parquet discovers them (files named '_*' or
    '.*' left out), listed without opening any: an explicit schema skips the inference."""
    return list(pads.dataset(path, filesystem=fs, format="parquet", schema=pa.schema([])).files)


def fingerprint(uri: str, storage: StorageConfig, paths: list[str]) -> dict:
    """Files, bytes and the digest (actors/file_fingerprint.py) of a Parquet manifest's `paths`,
    named relative to `uri` ('' when it is the one file); one `info` each, nothing opened."""
    fs = fsspec_filesystem(uri, storage)
    root = fs._strip_protocol(uri)
    return summary([file_version(os.path.relpath(p, root) if p != root else "", fs.info(p)) for p in sorted(paths)])


def shards_fingerprint(fs: AbstractFileSystem, paths: list[str]) -> dict:
    """The fingerprint of tar shards: each named by its own path, one `info` each."""
    return summary([file_version(p, fs.info(p)) for p in paths])


def _open_shards(uri: str, shards: tuple[AbstractFileSystem, list[str]]) -> Manifest:
    fs, paths = shards
    root = shard_root(fs, uri, paths)
    files = tuple(ManifestFile(p, file_name(p, root)) for p in paths)
    return Manifest(uri=uri, kind="webdataset", filesystem=fs, files=files, schema=pa.schema([]),
                    fingerprint=shards_fingerprint(fs, paths), root=root)


def open_manifest(uri: str, storage: StorageConfig, media_column_name: str | None = None) -> Manifest:
    """List the manifest, take each file's version and read each Parquet footer, once; a clear
    error when it cannot be opened. `media_column_name`: JobConfig.media_column."""
    shards = webdataset_shards(uri, storage)
    if shards is not None:
        return _open_shards(uri, shards)
    fs, path = arrow_filesystem(uri, storage)
    try:
        paths = parquet_paths(path, fs)
        if not paths:
            raise FileNotFoundError(f"no Parquet files in {path}")
        root = path.rstrip("/")
        names = [file_name(p, root) for p in paths]
        with ThreadPoolExecutor(max_workers=max(1, min(FOOTER_THREADS, len(paths)))) as pool:
            files = tuple(pool.map(lambda p, n: _footer(fs, p, n), paths, names))
    except (FileNotFoundError, OSError, pa.ArrowInvalid) as exc:
        raise ManifestError(f"cannot open manifest {uri}: {exc}") from exc
    schema = files[0].schema
    media = media_column(schema, media_column_name)
    return Manifest(uri=uri, kind="uri" if media is None else "embedded", filesystem=fs, files=files, schema=schema,
                    fingerprint=fingerprint(uri, storage, paths), media=media, root=root)


__all__ = ["Manifest", "ManifestFile", "file_name", "fingerprint", "open_manifest", "parquet_paths",
           "shards_fingerprint"]
