"""Checkpoints at an fsspec URI (s3://, gs://, ...), downloaded once per node into a local cache.

The driver lists the checkpoint's objects and fingerprints them (names, sizes, ETags or
mtimes); `job.json` records that fingerprint. Each scorer actor then asks `fetch_model` for
a local copy: the first actor of a node downloads it under a file lock, the others wait on
the lock and reuse it. A download goes to a temporary folder beside the cache entry, is
verified (sizes, and the MD5 where the ETag is one), gets a completion marker listing what
it holds, and only then is renamed into place, so a partial download never counts as
cached. A cache entry whose marker is missing or whose files no longer match it (size or
mtime changed since the download) is downloaded again.

Only safetensors weights are ever loaded (`use_safetensors=True`), so pickled weight files
(`*.bin`, `*.pt`, ...) are not even downloaded.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import socket
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from filelock import FileLock

from pipeline.storage import fsspec_filesystem, protocol_of
from schemas.job_config import ModelConfig, StorageConfig

MARKER = "vrscore-complete.json"  # written last, inside the entry: its presence means complete
DOWNLOAD_LOG = "downloads.log"  # one JSON line per download, beside the entries
CACHE_ENV = "VRSCORE_MODEL_CACHE"  # a node-wide default for ModelConfig.cache_dir
NOT_LOADED_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".h5", ".msgpack", ".pkl", ".pickle", ".onnx", ".gguf")
_CHUNK = 8 * 1024 * 1024


class ModelChangedError(ValueError):
    """The objects at the model URI are not the ones the job was started with."""


@dataclass(frozen=True)
class RemoteFile:
    name: str  # path relative to the checkpoint folder
    size: int
    version: str  # ETag, generation or mtime: what changes when the object is rewritten


def is_remote(model: str) -> bool:
    return protocol_of(model) != "file"


def list_model(uri: str, storage: StorageConfig) -> list[RemoteFile]:
    """The checkpoint files at `uri` that loading needs, sorted by name."""
    fs = fsspec_filesystem(uri, storage)
    fs.invalidate_cache()  # a cached listing would hide a rewritten checkpoint
    root = fs._strip_protocol(uri).rstrip("/")
    infos = fs.find(root, detail=True)
    files = [RemoteFile(path[len(root) + 1:], int(info["size"]), _version(info))
             for path, info in sorted(infos.items()) if not path.endswith(NOT_LOADED_SUFFIXES)]
    names = {f.name for f in files}
    if "config.json" not in names:
        raise FileNotFoundError(f"no saved model at {uri}: config.json not found (found: {sorted(names)[:10]})")
    if not any(n.endswith(".safetensors") for n in names):
        raise ValueError(f"{uri} has no *.safetensors weights; only safetensors checkpoints are loaded")
    return files


def fingerprint(files: list[RemoteFile]) -> str:
    blob = json.dumps([asdict(f) for f in files], sort_keys=True).encode()
    return hashlib.sha256(blob).hexdigest()


def default_cache_dir() -> str:
    return os.environ.get(CACHE_ENV) or os.path.join(tempfile.gettempdir(), "vrscore-model-cache")


def pin_model(model: ModelConfig, storage: StorageConfig) -> ModelConfig:
    """For a model at a URI: the config with the fingerprint of its objects now. A given
    fingerprint (a pinned version, or a resumed job's) must still match."""
    if not is_remote(model.model):
        return model
    found = fingerprint(list_model(model.model, storage))
    if model.fingerprint is not None and model.fingerprint != found:
        raise ModelChangedError(f"the objects at {model.model} changed: fingerprint {found[:12]}..., expected "
                                f"{model.fingerprint[:12]}... (model.fingerprint)")
    return model.model_copy(update={"fingerprint": found})


def local_model(model: ModelConfig, storage: StorageConfig) -> ModelConfig:
    """The config with `model` pointing at a local copy (downloaded to this node if needed)."""
    if not is_remote(model.model):
        return model
    path = fetch_model(model.model, storage, model.cache_dir or default_cache_dir(), model.fingerprint)
    return model.model_copy(update={"model": str(path)})


def fetch_model(uri: str, storage: StorageConfig, cache_dir: str, expect: str | None = None) -> Path:
    """A complete local copy of the checkpoint at `uri`: from the cache, or downloaded once
    per node (concurrent callers wait on a file lock and share the download)."""
    files = list_model(uri, storage)
    found = fingerprint(files)
    if expect is not None and found != expect:
        raise ModelChangedError(f"the objects at {uri} changed since the job started "
                                f"(fingerprint {found[:12]}..., job has {expect[:12]}...)")
    root = Path(cache_dir)
    root.mkdir(parents=True, exist_ok=True)
    key = hashlib.sha256(f"{uri}\n{found}".encode()).hexdigest()[:32]
    entry = root / key
    if is_complete(entry, files):
        return entry
    with FileLock(str(root / f"{key}.lock")):
        if not is_complete(entry, files):  # another actor may have finished it meanwhile
            _download(uri, storage, files, root, key)
            with open(root / DOWNLOAD_LOG, "a", encoding="utf-8") as log:
                log.write(json.dumps({"uri": uri, "fingerprint": found, "entry": key, "host": socket.gethostname(),
                                      "pid": os.getpid(), "time": time.time()}) + "\n")
    return entry


def is_complete(entry: Path, files: list[RemoteFile]) -> bool:
    """True when `entry` holds exactly `files`, untouched since their download completed."""
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


def _download(uri: str, storage: StorageConfig, files: list[RemoteFile], root: Path, key: str) -> None:
    """Download into a temporary folder, verify, mark complete, then rename into place."""
    for stale in root.glob(f"{key}.partial-*"):  # left by a killed download; we hold the lock
        shutil.rmtree(stale, ignore_errors=True)
    tmp = Path(tempfile.mkdtemp(dir=root, prefix=f"{key}.partial-"))
    try:
        fs = fsspec_filesystem(uri, storage)
        base = fs._strip_protocol(uri).rstrip("/")
        for f in files:
            _copy_verified(fs, f"{base}/{f.name}", tmp / f.name, f)
        mtimes = {f.name: (tmp / f.name).stat().st_mtime_ns for f in files}
        (tmp / MARKER).write_text(json.dumps({"uri": uri, "files": [asdict(f) for f in files], "mtime_ns": mtimes}),
                                  encoding="utf-8")
        entry = root / key
        shutil.rmtree(entry, ignore_errors=True)  # an incomplete or corrupted earlier copy
        os.rename(tmp, entry)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _copy_verified(fs, remote: str, local: Path, expected: RemoteFile) -> None:
    local.parent.mkdir(parents=True, exist_ok=True)
    md5 = hashlib.md5(usedforsecurity=False)
    size = 0
    with fs.open(remote, "rb") as src, open(local, "wb") as dst:
        while chunk := src.read(_CHUNK):
            md5.update(chunk)
            dst.write(chunk)
            size += len(chunk)
    if size != expected.size:
        raise OSError(f"downloading {remote}: got {size} bytes, expected {expected.size}")
    etag = expected.version.strip('"')
    # A single-part S3 upload's ETag is the MD5 of its bytes; multipart ETags ("...-N") are not.
    if len(etag) == 32 and all(c in "0123456789abcdef" for c in etag) and md5.hexdigest() != etag:
        raise OSError(f"downloading {remote}: MD5 {md5.hexdigest()} does not match ETag {etag}")


def _version(info: dict) -> str:
    for key in ("ETag", "etag", "generation", "md5Hash", "mtime", "LastModified", "last_modified", "created"):
        if info.get(key) is not None:
            return str(info[key])
    return ""
