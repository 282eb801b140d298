"""What identifies the files a job reads, without reading them: one fingerprint for every input
that decides the scores (the manifest's data files, the model's checkpoint files, the chat
template file). Checklists need none: `checklist.json` holds them whole.

A file is (its name relative to the input's root, its size, its version), the version being
what the store changes whenever the file is rewritten: the ETag on S3 (the MD5 of the bytes
for a single-part upload), the MD5 or generation on GCS, else the modification time (local
disks, NFS). The digest is a sha256 over one line per file.

Versions rather than a hash of the bytes: a checkpoint is tens to hundreds of GB, and hashing it
at every start and resume would cost minutes, while every way of replacing a file (a new
`save_pretrained`, an upload, a copy) gives it a new version. The price is in the safe direction:
a file merely touched (`touch`, a copy that does not keep mtimes) counts as changed and refuses
a resume; it never lets two models into one output.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass

# The first of these an object's info holds is its version: content-derived where the store
# has one (S3 ETag, GCS md5Hash), else what a rewrite changes.
VERSION_KEYS = ("ETag", "etag", "md5Hash", "generation", "mtime", "LastModified", "last_modified", "updated",
                "created")


@dataclass(frozen=True)
class FileVersion:
    name: str  # relative to the input's root ('' for an input that is one file)
    size: int
    version: str  # "<key>=<value>", e.g. 'ETag="9dd4..."' or 'mtime=1733480000.12'


def file_version(name: str, info: dict) -> FileVersion:
    """`name` with the size and version of an fsspec `info` (or `ls(detail=True)`) entry."""
    size = info.get("size")
    key = next((k for k in VERSION_KEYS if info.get(k) is not None), None)
    return FileVersion(name, int(size) if size is not None else -1, "unknown" if key is None else f"{key}={info[key]}")


def digest(files: list[FileVersion]) -> str:
    """sha256 over the files' (name, size, version), in the order given (callers sort by name)."""
    return hashlib.sha256("\n".join(f"{f.name}\t{f.size}\t{f.version}" for f in files).encode()).hexdigest()


def summary(files: list[FileVersion]) -> dict:
    """What job.json keeps of a multi-file input: how many files, their bytes, their digest."""
    return {"files": len(files), "bytes": sum(max(f.size, 0) for f in files), "digest": digest(files)}


def etag_md5(version: str) -> str | None:
    """The MD5 of the bytes where a version is a single-part S3 upload's ETag, else None
    (multipart ETags, "<md5 of md5s>-N", are not)."""
    key, _, value = version.partition("=")
    value = value.strip('"')
    if key.lower() == "etag" and len(value) == 32 and all(c in "0123456789abcdef" for c in value):
        return value
    return None
