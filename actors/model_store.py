"""The files a model is loaded from: fingerprinted on the driver, made local on each node.

`pin_model` (the driver, before any work) fingerprints what loading will read: the checkpoint
folder's files, local or at an fsspec URI (`actors/checkpoint_files.py`), and the chat template
file that `model.chat_template` names (`actors/file_fingerprint.py`); `job.json` records both,
so a resume refuses a checkpoint re-exported or a template edited at the same path.

`local_model` (each scorer actor) turns a URI into a local copy in the node's private cache
(`actors/private_cache.py`), with the job's storage settings, for the checkpoint and the
template alike. The first actor of a node downloads a checkpoint under a file lock, the others
wait on the lock and reuse it. A download goes to a temporary folder beside the cache entry,
is verified (sizes, and the MD5 where the ETag is one), gets a completion marker listing what
it holds, and only then is renamed into place, so a partial download never counts as cached.
An entry is used only if its marker matches, its files are unchanged since the download (size
and mtime) and every file is the job user's alone; else it is downloaded again.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import socket
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

from filelock import FileLock

from actors.checkpoint_files import checkpoint_files, file_of
from actors.file_fingerprint import FileVersion, digest, etag_md5
from actors.private_cache import (CACHE_ENV, UnsafeCacheError, default_cache_dir, private_opener, private_root,
                                  trusted)
from pipeline.storage import fsspec_filesystem, protocol_of
from schemas.job_config import ModelConfig, StorageConfig
from schemas.user_error import UserError

MARKER = "vrscore-complete.json"  # written last, inside the entry: its presence means complete
DOWNLOAD_LOG = "downloads.log"  # one JSON line per download, beside the entries
TEMPLATE_SETTING = "model.chat_template"
_CHUNK = 8 * 1024 * 1024

__all__ = ["CACHE_ENV", "DOWNLOAD_LOG", "MARKER", "ModelChangedError", "UnsafeCacheError", "default_cache_dir",
           "fetch_model", "fetch_template", "is_remote", "local_model", "pin_model"]


class ModelChangedError(UserError):
    """The files at the model's (or template's) location are not the ones the job was started with."""


def is_remote(model: str) -> bool:
    return protocol_of(model) != "file"


def _pinned(given: str | None, found: str, what: str, setting: str) -> str:
    if given is not None and given != found:
        raise ModelChangedError(f"{what} changed: fingerprint {found[:12]}..., expected {given[:12]}... ({setting})")
    return found


def pin_model(model: ModelConfig, storage: StorageConfig) -> ModelConfig:
    """The config with the fingerprints of the checkpoint folder (local or at a URI; a hub id
    gets none) and of the chat template file. A fingerprint given (a pinned version, or a
    job.json reused as config) must still match."""
    update = {}
    if is_remote(model.model) or os.path.isdir(model.model):
        found = digest(checkpoint_files(model.model, storage))
        update["fingerprint"] = _pinned(model.fingerprint, found, f"the files at {model.model}", "model.fingerprint")
    if model.chat_template is not None:
        found = digest([file_of(model.chat_template, storage, TEMPLATE_SETTING)])
        update["chat_template_fingerprint"] = _pinned(model.chat_template_fingerprint, found,
                                                      f"the chat template {model.chat_template}",
                                                      "model.chat_template_fingerprint")
    return model.model_copy(update=update)


def local_model(model: ModelConfig, storage: StorageConfig) -> ModelConfig:
    """The config with the checkpoint and the chat template at local paths: a URI is fetched
    into this node's cache (a checkpoint downloaded once per node), with the job's storage
    settings; local paths are kept."""
    cache = model.cache_dir or default_cache_dir()
    update = {}
    if is_remote(model.model):
        update["model"] = str(fetch_model(model.model, storage, cache, model.fingerprint))
    if model.chat_template is not None and is_remote(model.chat_template):
        update["chat_template"] = str(fetch_template(model.chat_template, storage, cache,
                                                     model.chat_template_fingerprint))
    return model.model_copy(update=update) if update else model


def _pinned_entry(uri: str, files: list, cache_dir: str, expect: str | None, what: str) -> tuple[str, Path, str]:
    """The fingerprint of `files`, refused when it is not the job's, and the private cache root and
    entry key for that version of `uri`."""
    found = digest(files)
    if expect is not None and found != expect:
        raise ModelChangedError(f"{what} changed since the job started "
                                f"(fingerprint {found[:12]}..., job has {expect[:12]}...)")
    return found, private_root(cache_dir), hashlib.sha256(f"{uri}\n{found}".encode()).hexdigest()[:32]


def fetch_model(uri: str, storage: StorageConfig, cache_dir: str, expect: str | None = None) -> Path:
    """A complete local copy of the checkpoint at `uri`: from the cache, or downloaded once
    per node (concurrent callers wait on a file lock and share the download)."""
    files = checkpoint_files(uri, storage)  # every name checked before anything is written
    found, root, key = _pinned_entry(uri, files, cache_dir, expect, f"the files at {uri}")
    entry = root / key
    if is_complete(entry, files):
        return entry
    with FileLock(str(root / f"{key}.lock")):
        if not is_complete(entry, files):  # another actor may have finished it meanwhile
            _download(uri, storage, files, root, key)
            with open(root / DOWNLOAD_LOG, "a", encoding="utf-8", opener=private_opener) as log:
                log.write(json.dumps({"uri": uri, "fingerprint": found, "entry": key, "host": socket.gethostname(),
                                      "pid": os.getpid(), "time": time.time()}) + "\n")
    return entry


def fetch_template(uri: str, storage: StorageConfig, cache_dir: str, expect: str | None = None) -> Path:
    """A private local copy of the template file at `uri`, fetched afresh (it is small)."""
    files = [file_of(uri, storage, TEMPLATE_SETTING)]
    _, root, key = _pinned_entry(uri, files, cache_dir, expect, f"the chat template {uri}")
    path = root / f"template-{key}.jinja"
    fd, tmp = tempfile.mkstemp(dir=root, prefix=f"{path.name}.partial-")  # 0600
    os.close(fd)
    try:
        fs = fsspec_filesystem(uri, storage)
        _copy_verified(fs, fs._strip_protocol(uri), Path(tmp), files[0])
        os.replace(tmp, path)  # atomic: an actor reading it meanwhile sees the old or the new copy
    finally:
        Path(tmp).unlink(missing_ok=True)
    return path


def is_complete(entry: Path, files: list[FileVersion]) -> bool:
    """True when `entry` holds exactly `files`, untouched since their download completed, and
    no one but this user could have changed them."""
    folders = {entry} | {entry / parent for f in files for parent in _parents(f.name)}
    if not all(trusted(folder, folder=True) for folder in folders):
        return False
    if not all(trusted(entry / name) for name in [MARKER, *(f.name for f in files)]):
        return False
    try:
        marker = json.loads((entry / MARKER).read_text(encoding="utf-8"))
        if marker["files"] != [asdict(f) for f in files]:
            return False
        for f in files:
            st = (entry / f.name).stat()
            if st.st_size != f.size or st.st_mtime_ns != marker["mtime_ns"][f.name]:
                return False
        return True
    except (OSError, ValueError, KeyError, TypeError):
        return False


def _parents(name: str) -> list[str]:
    """'a/b/c.safetensors' -> ['a', 'a/b']."""
    parts = name.split("/")[:-1]
    return ["/".join(parts[:i + 1]) for i in range(len(parts))]


def _download(uri: str, storage: StorageConfig, files: list[FileVersion], root: Path, key: str) -> None:
    """Download into a temporary folder, verify, mark complete, then rename into place."""
    for stale in root.glob(f"{key}.partial-*"):  # left by a killed download; we hold the lock
        shutil.rmtree(stale, ignore_errors=True)
    tmp = Path(tempfile.mkdtemp(dir=root, prefix=f"{key}.partial-"))  # 0700
    try:
        fs = fsspec_filesystem(uri, storage)
        base = fs._strip_protocol(uri).rstrip("/")
        for f in files:
            (tmp / f.name).parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            _copy_verified(fs, f"{base}/{f.name}", tmp / f.name, f)
        mtimes = {f.name: (tmp / f.name).stat().st_mtime_ns for f in files}
        with open(tmp / MARKER, "x", encoding="utf-8", opener=private_opener) as marker:
            marker.write(json.dumps({"uri": uri, "files": [asdict(f) for f in files], "mtime_ns": mtimes}))
        entry = root / key
        if entry.is_symlink():  # an untrusted earlier copy: never followed
            entry.unlink()
        shutil.rmtree(entry, ignore_errors=True)  # an incomplete, corrupted or untrusted earlier copy
        if entry.exists() or entry.is_symlink():
            raise UnsafeCacheError(f"{entry} is not a trusted copy and cannot be removed; delete it, or use "
                                   "another model.cache_dir")
        os.rename(tmp, entry)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _copy_verified(fs, remote: str, local: Path, expected: FileVersion) -> None:
    md5 = hashlib.md5(usedforsecurity=False)
    size = 0
    with fs.open(remote, "rb") as src, open(local, "wb", opener=private_opener) as dst:
        while chunk := src.read(_CHUNK):
            md5.update(chunk)
            dst.write(chunk)
            size += len(chunk)
    if size != expected.size:
        raise OSError(f"downloading {remote}: got {size} bytes, expected {expected.size}")
    etag = etag_md5(expected.version)
    if etag is not None and md5.hexdigest() != etag:
        raise OSError(f"downloading {remote}: MD5 {md5.hexdigest()} does not match ETag {etag}")
