"""Thumbnails of the report's top and bottom items: decoded by the decode stage, in the cluster.

A report is meant to be shared, and its scores file may come from elsewhere. So the few
selected rows go through the same decode stage as a score job (`MediaDecoder`: a child
process killed at its timeout, the pixel and byte limits, the allowed schemes), as a Ray
Data stage, never on the driver, after the report's own refusals (local files outside
`--media-root`, internal addresses: `actors/report_media_policy.py`). The limits (allowed
schemes, bytes, source pixels, timeout) are the report command's own; the scoring job's
settings (`job.json` in the Parquet metadata) may only narrow them, since that metadata comes
with the untrusted file. A row refused or failing has no preview; its reason is in the page
(the tooltip). Scores of a manifest that held the media carry no bytes: their rows are read
back from that manifest, by id, once it is checked to be the one scored (pipeline/report_source.py).
"""
from __future__ import annotations

import json
import logging
import os

from pipeline.report_source import SourceCheck
from pipeline.storage import storage_options
from schemas.job_config import DecodeConfig, StorageConfig
from schemas.scores import META_JOB

log = logging.getLogger(__name__)

THUMB_FRAMES = "uniform:1"  # a video's first frame; only the frame count differs from the job's settings
MAX_ACTORS = 4


def report_decode_config(timeout_s: float, allowed_schemes: list[str] | None = None) -> DecodeConfig:
    """The report's own decode limits (its command line): the decode defaults, one frame
    per video, the given timeout and schemes."""
    schemes = DecodeConfig().allowed_schemes if allowed_schemes is None else allowed_schemes
    return DecodeConfig(frames=THUMB_FRAMES, timeout_s=timeout_s, allowed_schemes=schemes)


def scores_job_record(schema_metadata: dict | None) -> dict | None:
    """The scoring job's record (`job.json`) in the scores' metadata; None when absent or unreadable."""
    raw = (schema_metadata or {}).get(META_JOB)
    try:
        record = json.loads(raw) if raw else None
    except ValueError:
        return None
    return record if isinstance(record, dict) else None


def thumbnail_decode_config(schema_metadata: dict | None, own: DecodeConfig) -> DecodeConfig:
    """The report's limits `own`, narrowed by the scoring job's (`job.json` in the scores'
    metadata): the schemes both allow, the smaller of each limit. The metadata can never
    widen them; the resize settings stay the report's (a thumbnail is small anyway)."""
    record = scores_job_record(schema_metadata)
    if record is None:
        return own
    try:
        job = DecodeConfig.model_validate(record.get("decode") or {})
    except ValueError as exc:  # another version's settings, or not a job at all
        log.warning("the scores' decode settings could not be read (%s); using the report's own", exc)
        return own
    theirs = {s.lower() for s in job.allowed_schemes}
    return own.model_copy(update={
        "allowed_schemes": [s for s in own.allowed_schemes if s.lower() in theirs],
        **{f: min(getattr(own, f), getattr(job, f)) for f in ("max_bytes", "max_source_pixels", "timeout_s")},
    })


def make_thumbnails(items: list[dict], decode: DecodeConfig, storage: StorageConfig, media_roots: list[str],
                    check: SourceCheck | None = None) -> dict[str, str]:
    """Item id -> JPEG data URI, or the reason there is none. `items`: id, uri, media_type.
    `check`: where the media is when the manifest held it (pipeline/report_source.py): then the
    rows' bytes are read back from it by id (pipeline/report_media_lookup.py), in the cluster."""
    import ray
    from ray.data import ActorPoolStrategy

    from actors.report_thumbnailer import ReportThumbnailer
    from pipeline.report_media_lookup import MediaLookup

    check = check or SourceCheck()
    if not items:
        return {}
    if check.source is None and check.holds_media:  # the manifest changed, or may not be read
        return {str(it["id"]): f"no preview (refused): {check.refused}"[:300] for it in items}
    cpus = max(1, int(ray.cluster_resources().get("CPU", 1)) - 1)
    actors = max(1, min(MAX_ACTORS, cpus, len(items)))
    options = {p: storage_options(storage, p) for p in ("s3", "s3a")}
    options.update({"http": {"allow_redirects": False}, "https": {"allow_redirects": False}})
    rows = [{"id": str(it["id"]), "uri": None if it["uri"] is None else str(it["uri"]),
             "media_type": str(it["media_type"])} for it in items]
    ds = ray.data.from_items(rows)
    if check.source is not None:  # one batch: each row group or shard is read once
        ds = ds.map_batches(MediaLookup, batch_size=len(rows), batch_format="numpy",
                            fn_constructor_kwargs={"source": check.source, "storage": storage.model_dump()},
                            compute=ActorPoolStrategy(size=1), num_cpus=1)
    ds = ds.map_batches(
        ReportThumbnailer, batch_size=-(-len(rows) // actors), batch_format="numpy",
        fn_constructor_kwargs={"decode": decode.model_dump(), "storage_options": options,
                               "media_roots": [os.path.realpath(r) for r in media_roots],
                               "no_uri": check.refused or "the row has no uri"},
        compute=ActorPoolStrategy(size=actors), num_cpus=1,
    )
    return {r["id"]: r["src"] for r in ds.take_all()}
