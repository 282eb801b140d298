"""Filesystems for manifests, media and outputs: local paths or any fsspec URI.

One place turns `StorageConfig` into fsspec options, so the reader, the decoder and the
writer all reach a bucket the same way. Credentials are never taken into these options:
they come from the standard AWS environment/profile chain inside s3fs.
"""
from __future__ import annotations

import argparse
from urllib.parse import urlparse

import fsspec
import pyarrow.fs as pafs

from schemas.job_config import StorageConfig


def protocol_of(uri: str) -> str:
    scheme = urlparse(uri).scheme if "://" in uri else ""
    return scheme or "file"


def storage_options(storage: StorageConfig, protocol: str) -> dict:
    """fsspec keyword arguments for `protocol` from the job's storage settings."""
    if protocol not in ("s3", "s3a"):
        return {}
    opts: dict = {}
    if storage.endpoint_url:
        opts["endpoint_url"] = storage.endpoint_url
    if storage.region:
        opts.setdefault("client_kwargs", {})["region_name"] = storage.region
    if storage.profile:
        opts["profile"] = storage.profile
    if storage.anon:
        opts["anon"] = True
    return opts


def fsspec_filesystem(uri: str, storage: StorageConfig) -> fsspec.AbstractFileSystem:
    proto = protocol_of(uri)
    return fsspec.filesystem(proto, **storage_options(storage, proto))


def arrow_filesystem(uri: str, storage: StorageConfig) -> tuple[pafs.FileSystem | None, str]:
    """(filesystem, path) for Ray Data's readers and writers; None = let Ray resolve a local path."""
    proto = protocol_of(uri)
    if proto == "file":
        return None, uri[len("file://"):] if uri.startswith("file://") else uri
    fs = fsspec_filesystem(uri, storage)
    return pafs.PyFileSystem(pafs.FSSpecHandler(fs)), fs._strip_protocol(uri)


def join(base: str, *parts: str) -> str:
    return "/".join([base.rstrip("/"), *parts])


# One storage option set for every command: flag -> StorageConfig field.
STORAGE_FLAGS = {"endpoint_url": "--endpoint-url", "region": "--region", "profile": "--profile", "anon": "--anon"}


def add_storage_args(p: argparse.ArgumentParser) -> None:
    """`--endpoint-url`, `--region`, `--profile`, `--anon`, as every vrscore command takes them.
    Defaults are None (not given), so a job config file's `storage:` section is only
    overridden by flags actually given."""
    g = p.add_argument_group("storage (S3 and compatible; credentials from the standard AWS chain)")
    for name, flag in STORAGE_FLAGS.items():
        help_text = StorageConfig.model_fields[name].description
        if name == "anon":
            g.add_argument(flag, action="store_true", default=None, help=help_text)
        else:
            g.add_argument(flag, help=help_text)


def storage_flags(args: argparse.Namespace) -> dict:
    """The storage flags given, as dotted JobConfig keys (None = not given)."""
    return {f"storage.{name}": getattr(args, name, None) for name in STORAGE_FLAGS}


def storage_from_args(args: argparse.Namespace) -> StorageConfig:
    """A StorageConfig from the flags alone, for commands without a job config."""
    return StorageConfig(**{k: v for k, v in ((n, getattr(args, n, None)) for n in STORAGE_FLAGS) if v is not None})
