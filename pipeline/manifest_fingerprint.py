"""The fingerprint of a manifest's data files (actors/file_fingerprint.py): what `job.json` records
so that a resume refuses a manifest edited in place, and what the report checks before it reads
media back from a manifest that holds it. Files are listed, never read."""
from __future__ import annotations

from pipeline.manifest_files import fingerprint, parquet_paths, shards_fingerprint
from pipeline.storage import arrow_filesystem
from pipeline.webdataset_shards import webdataset_shards
from schemas.job_config import StorageConfig

# The key of job.json (and of the scores' job metadata) that holds the fingerprint, beside the config's.
FINGERPRINT_KEY = "manifest_fingerprint"


def manifest_fingerprint(manifest: str, storage: StorageConfig) -> dict:
    """Files, bytes and the digest of the manifest's data files: the tar shards of a WebDataset,
    else the files Parquet reads, listed once (the value `Manifest.fingerprint` holds, for a score
    job that opened its manifest, pipeline/manifest_files.py)."""
    shards = webdataset_shards(manifest, storage)
    if shards is not None:
        return shards_fingerprint(*shards)
    arrow_fs, path = arrow_filesystem(manifest, storage)
    return fingerprint(manifest, storage, parquet_paths(path, arrow_fs))
