"""Which files a WebDataset manifest names: a .tar, a brace pattern or a folder of .tar files
(pipeline/webdataset_source.py reads them). No Ray here: job.json's fingerprint lists them too."""
from __future__ import annotations

import posixpath
import re

from fsspec.spec import AbstractFileSystem

from pipeline.storage import fsspec_filesystem
from schemas.job_config import StorageConfig
from schemas.manifest import ManifestError

_RANGE_RE = re.compile(r"\{(\d+)\.\.(\d+)\}")
_LIST_RE = re.compile(r"\{([^{}]*,[^{}]*)\}")


def expand_braces(pattern: str) -> list[str]:
    """`a/{00..02}.tar` -> a/00.tar, a/01.tar, a/02.tar (zero padding kept); `{x,y}` lists too."""
    found = [m for m in (_RANGE_RE.search(pattern), _LIST_RE.search(pattern)) if m is not None]
    if not found:
        return [pattern]
    match = min(found, key=lambda m: m.start())  # the leftmost brace varies slowest
    if match.re is _RANGE_RE:
        lo, hi = match.group(1), match.group(2)
        width = len(lo) if lo.startswith("0") else 0
        options = [str(i).zfill(width) for i in range(int(lo), int(hi) + 1)]
    else:
        options = match.group(1).split(",")
    head, tail = pattern[:match.start()], pattern[match.end():]
    return [p for option in options for p in expand_braces(head + option + tail)]


def is_webdataset(manifest: str) -> bool:
    """Whether `--manifest` names tar shards (a .tar or a brace pattern); folders are asked with `list_shards`."""
    return manifest.rstrip("/").endswith(".tar") or bool(_RANGE_RE.search(manifest) or _LIST_RE.search(manifest))


def list_shards(fs: AbstractFileSystem, manifest: str) -> list[str]:
    """The shard paths (the filesystem's, no protocol) of a .tar, a brace pattern or a folder of .tar files."""
    if is_webdataset(manifest):
        return [fs._strip_protocol(p) for p in expand_braces(manifest)]
    return sorted(p for p in fs.find(fs._strip_protocol(manifest)) if p.endswith(".tar"))


def shard_root(fs: AbstractFileSystem, manifest: str, shards: list[str]) -> str:
    """What shard names are relative to: the folder named, else the first shard's folder."""
    return posixpath.dirname(shards[0]) if is_webdataset(manifest) else fs._strip_protocol(manifest)


def webdataset_shards(manifest: str, storage: StorageConfig) -> tuple[AbstractFileSystem, list[str]] | None:
    """(filesystem, shard paths) when `manifest` names WebDataset shards, else None (Parquet):
    a .tar, a brace pattern, or a folder holding .tar files and no .parquet file."""
    fs = fsspec_filesystem(expand_braces(manifest)[0], storage)
    if is_webdataset(manifest):
        shards = list_shards(fs, manifest)
        missing = [p for p in shards if not fs.isfile(p)]
        if missing:
            raise ManifestError(f"{len(missing)} of the {len(shards)} shards {manifest} names do not exist "
                                f"(first: {missing[0]})")
        return fs, shards
    path = fs._strip_protocol(manifest)
    if not fs.isdir(path):
        return None
    files = fs.find(path)
    if any(f.endswith(".tar") for f in files) and not any(f.endswith(".parquet") for f in files):
        return fs, list_shards(fs, manifest)
    return None
