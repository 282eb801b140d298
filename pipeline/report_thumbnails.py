"""Thumbnails of the report's top and bottom items: decoded by the decode stage, in the cluster.

A report is meant to be shared, and its scores file may come from elsewhere. So the few
selected rows go through the same decode stage as a score job (`MediaDecoder`: a child
process killed at its timeout, the pixel and byte limits, the allowed schemes), as a Ray
Data stage, never on the driver. The limits (allowed schemes, bytes, source pixels, timeout)
are the report command's own; the scoring job's settings (`job.json` in the Parquet metadata)
may only narrow them, since that metadata comes with the untrusted file. Two more rules:
- local files (plain paths, and every scheme fsspec reads from the local filesystem: file://,
  local://) are shown only under a `--media-root` given on the command line; by default none
  is read;
- http(s) URLs whose host is or resolves to a loopback, private, link-local (169.254.x.x:
  cloud metadata), reserved or multicast address are refused, and redirects are not followed.
A row refused or failing has no preview; its reason is in the page (the tooltip).
Known limit: a host's name is resolved again when it is fetched (DNS rebinding is not handled).
"""
from __future__ import annotations

import ipaddress
import json
import logging
import os
import socket
from urllib.parse import urlparse

from fsspec.implementations.local import LocalFileSystem

from actors.media_io import MediaError, filesystem_class, uri_protocol
from schemas.job_config import DecodeConfig
from schemas.scores import META_JOB

log = logging.getLogger(__name__)

THUMB_FRAMES = "uniform:1"  # a video's first frame; only the frame count differs from the job's settings
MAX_ACTORS = 4


def _internal(address: str) -> bool:
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return not ip.is_global or ip.is_multicast


def _under(path: str, root: str) -> bool:
    return os.path.commonpath([path, root]) == root


def _local_path(uri: str) -> str | None:
    """The local path `uri` reads, or None when its filesystem is not the local one."""
    try:
        cls, path = filesystem_class(uri)
    except (ValueError, ImportError):  # unknown or not installed: nothing is read either
        return None
    return path if issubclass(cls, LocalFileSystem) else None


def refusal(uri: str, media_roots: list[str]) -> str | None:
    """Why the report will not read `uri` (None = it may, within the decode limits)."""
    try:
        protocol = uri_protocol(uri)
        local = _local_path(uri)
    except MediaError as exc:
        return exc.message
    if local is not None:
        path = os.path.realpath(local)
        roots = [os.path.realpath(r) for r in media_roots]
        if not any(_under(path, r) for r in roots):
            return "a local file outside --media-root: the report reads local files only under a root you name"
        return None
    if protocol in ("http", "https"):
        host = urlparse(uri).hostname
        if not host:
            return "no host in the URL"
        try:
            addresses = {a[4][0] for a in socket.getaddrinfo(host, None)}
        except (OSError, UnicodeError) as exc:
            return f"cannot resolve {host}: {exc}"
        if any(_internal(a) for a in addresses):
            return f"{host} is an internal address (loopback, private, link-local or reserved): not fetched"
    return None


def report_decode_config(timeout_s: float, allowed_schemes: list[str] | None = None) -> DecodeConfig:
    """The report's own decode limits (its command line): the decode defaults, one frame
    per video, the given timeout and schemes."""
    schemes = DecodeConfig().allowed_schemes if allowed_schemes is None else allowed_schemes
    return DecodeConfig(frames=THUMB_FRAMES, timeout_s=timeout_s, allowed_schemes=schemes)


def thumbnail_decode_config(schema_metadata: dict | None, own: DecodeConfig) -> DecodeConfig:
    """The report's limits `own`, narrowed by the scoring job's (`job.json` in the scores'
    metadata): the schemes both allow, the smaller of each limit. The metadata can never
    widen them; the resize settings stay the report's (a thumbnail is small anyway)."""
    raw = (schema_metadata or {}).get(META_JOB)
    if not raw:
        return own
    try:
        job = DecodeConfig.model_validate(json.loads(raw).get("decode") or {})
    except (ValueError, AttributeError) as exc:  # another version's settings, or not a job at all
        log.warning("the scores' decode settings could not be read (%s); using the report's own", exc)
        return own
    theirs = {s.lower() for s in job.allowed_schemes}
    return own.model_copy(update={
        "allowed_schemes": [s for s in own.allowed_schemes if s.lower() in theirs],
        **{f: min(getattr(own, f), getattr(job, f)) for f in ("max_bytes", "max_source_pixels", "timeout_s")},
    })


def make_thumbnails(items: list[dict], decode: DecodeConfig, storage_options: dict[str, dict],
                    media_roots: list[str]) -> dict[str, str]:
    """Item id -> JPEG data URI, or the reason there is none. `items`: id, uri, media_type."""
    import ray
    from ray.data import ActorPoolStrategy

    from actors.report_thumbnailer import ReportThumbnailer

    if not items:
        return {}
    cpus = max(1, int(ray.cluster_resources().get("CPU", 1)) - 1)
    actors = max(1, min(MAX_ACTORS, cpus, len(items)))
    options = {**storage_options, "http": {"allow_redirects": False}, "https": {"allow_redirects": False}}
    rows = [{"id": str(it["id"]), "uri": str(it["uri"]), "media_type": str(it["media_type"])} for it in items]
    ds = ray.data.from_items(rows).map_batches(
        ReportThumbnailer, batch_size=-(-len(rows) // actors), batch_format="numpy",
        fn_constructor_kwargs={"decode": decode.model_dump(), "storage_options": options,
                               "media_roots": [os.path.realpath(r) for r in media_roots]},
        compute=ActorPoolStrategy(size=actors), num_cpus=1,
    )
    return {r["id"]: r["src"] for r in ds.take_all()}
