"""The fingerprint of a manifest's data files (actors/file_fingerprint.py): what `job.json` records
so that a resume refuses a manifest edited in place, and what the report checks before it reads
media back from a manifest that holds it. Files are listed, never read."""
from __future__ import annotations

import os

import pyarrow.parquet as pq

from actors.file_fingerprint import file_version, summary
from pipeline.storage import arrow_filesystem, fsspec_filesystem
from pipeline.webdataset_shards import webdataset_shards
from schemas.job_config import StorageConfig

# The key of job.json (and of the scores' job metadata) that holds the fingerprint, beside the config's.
FINGERPRINT_KEY = "manifest_fingerprint"


def manifest_fingerprint(manifest: str, storage: StorageConfig) -> dict:
    """Files, bytes and the digest of the manifest's data files: the tar shards of a WebDataset,
    else the files Parquet reads, listed once."""
    shards = webdataset_shards(manifest, storage)
    if shards is not None:
        fs, files = shards
        return summary([file_version(file, fs.info(file)) for file in files])
    fs = fsspec_filesystem(manifest, storage)
    arrow_fs, path = arrow_filesystem(manifest, storage)
    root = fs._strip_protocol(manifest)
    return summary([file_version(os.path.relpath(file, root) if file != root else "", fs.info(file))
                    for file in sorted(pq.ParquetDataset(path, filesystem=arrow_fs).files)])
