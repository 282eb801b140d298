"""Where the report finds the media of scores whose manifest held it (a Parquet column of bytes
or `{bytes, path}` structs, or WebDataset shards): the scores carry no bytes, so the report
goes back to the manifest that the scoring job read (its record in the scores' metadata, which
is `job.json`) and reads only the rows it shows, by id (pipeline/report_media_lookup.py).

Checked on the driver before anything is read (only listings and one Parquet footer here):
- the manifest passes the report's own policy, like any URI it reads: a scheme the report
  allows, local files only under a `--media-root` (each data file, so a link cannot lead out),
  no internal http address;
- the manifest is the one that was scored: its fingerprint (files, sizes, versions) equals the
  one recorded by the job. A manifest edited or replaced since could show another item's
  picture beside a row's score, so its rows then have no preview, and the page says why.
The record comes with the scores file, which may come from elsewhere: only the manifest's
location and column names are taken from it; storage settings are the report's own.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Literal

import pyarrow.parquet as pq

from actors.media_io import MediaError, uri_protocol
from actors.report_media_policy import refusal
from pipeline.manifest_fingerprint import FINGERPRINT_KEY, manifest_fingerprint
from pipeline.media_readback import MediaSource
from pipeline.storage import arrow_filesystem
from pipeline.webdataset_shards import webdataset_shards
from schemas.embedded_media import media_column
from schemas.job_config import JobConfig, StorageConfig
from schemas.manifest import ManifestError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SourceCheck:
    """source: read the shown rows' media back from it. Else `refused` (when set) says why not,
    for every row when `holds_media` (the manifest is known to hold the media), else for the
    rows that have no uri (the others are read from their uri, as for a manifest of URIs)."""

    source: MediaSource | None = None
    refused: str | None = None
    holds_media: bool = False


def _job(record: dict) -> JobConfig | None:
    try:
        return JobConfig.model_validate({k: v for k, v in record.items() if k in JobConfig.model_fields})
    except ValueError as exc:  # another version's settings: the rows' uris are all there is
        log.warning("the scores' job record could not be read (%s): thumbnails come from the rows' uris", exc)
        return None


def _policy(uri: str, media_roots: list[str], schemes: list[str]) -> str | None:
    try:
        protocol = uri_protocol(uri)
    except MediaError as exc:
        return exc.message
    if protocol not in schemes:
        return f"scheme {protocol!r} is not among the report's --thumbnail-schemes"
    return refusal(uri, media_roots)


def _data_files(manifest: str, storage: StorageConfig) -> tuple[Literal["parquet", "webdataset"], list[str]]:
    shards = webdataset_shards(manifest, storage)
    if shards is not None:
        return "webdataset", shards[1]
    fs, path = arrow_filesystem(manifest, storage)
    return "parquet", list(pq.ParquetDataset(path, filesystem=fs).files)


def check_source(record: dict | None, storage: StorageConfig, media_roots: list[str],
                 schemes: list[str]) -> SourceCheck:
    """Whether (and from where) the report may read back the media of the scores whose job
    record is `record`; `storage`, `media_roots` and `schemes` are the report's own."""
    job = _job(record) if record else None
    if job is None:
        return SourceCheck()
    where = f"the manifest {job.manifest}"
    why = _policy(job.manifest, media_roots, schemes)
    if why is not None:
        return SourceCheck(refused=f"{where} is not read ({why}): a row whose media was inside it has no preview")
    try:
        kind, files = _data_files(job.manifest, storage)
        media = None if kind == "webdataset" else media_column(pq.read_schema(
            files[0], filesystem=arrow_filesystem(job.manifest, storage)[0]), job.media_column)
    except (ManifestError, OSError, ValueError, IndexError) as exc:
        return SourceCheck(refused=f"{where} cannot be opened: {exc}"[:300])
    if kind == "parquet" and media is None:
        return SourceCheck()  # a manifest of URIs: the rows' uris are the media
    changed = _changed(record, job, storage, files, media_roots)
    if changed is not None:
        return SourceCheck(refused=f"{where} {changed}", holds_media=True)
    return SourceCheck(MediaSource(kind, job.manifest, media, job.id_column, job.prompt_field,
                                    tuple(job.media_extensions)), holds_media=True)


def _changed(record: dict, job: JobConfig, storage: StorageConfig, files: list[str],
             media_roots: list[str]) -> str | None:
    """Why the manifest's files may not be read (None: they are the scored ones, and allowed)."""
    if uri_protocol(job.manifest) == "file":  # listed files are plain paths here: each is checked
        outside = next((f for f in files if refusal(f, media_roots) is not None), None)
        if outside is not None:
            return f"holds {outside}, outside --media-root (a link?): not read"
    recorded = record.get(FINGERPRINT_KEY)
    if not isinstance(recorded, dict):
        return "has no fingerprint in the scores' job record, so the report cannot tell it is the one scored"
    now = manifest_fingerprint(job.manifest, storage)
    if now != recorded:
        return (f"changed since it was scored ({recorded.get('files')} files, {recorded.get('bytes')} bytes -> "
                f"{now['files']} files, {now['bytes']} bytes, or other ETags/mtimes): its rows may now hold "
                "other media, so none is shown")
    return None
