"""Which files of a saved checkpoint loading reads, and the one check that every name read from
a bucket (or from an index file in it) passes before it becomes a local path.

`from_pretrained` (config, tokenizer, processor, safetensors weights) reads the top level of
the folder, plus the shards a `*.safetensors.index.json` names. Subfolders (a training run's
`checkpoint-100/`, `logs/`, `runs/`) are neither downloaded nor fingerprinted: intermediate
checkpoints never reach the nodes, and a log still being written does not change the model's
fingerprint. Pickled weights are left out too, since only safetensors are ever loaded
(`use_safetensors=True`). A local folder and a bucket folder are listed by the same code, so
they get the same fingerprint (`actors/file_fingerprint.py`).
"""
from __future__ import annotations

import json
import posixpath

from actors.file_fingerprint import FileVersion, file_version
from pipeline.storage import fsspec_filesystem
from schemas.job_config import StorageConfig
from schemas.user_error import UserError

NOT_LOADED_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".h5", ".msgpack", ".pkl", ".pickle", ".onnx", ".gguf")
INDEX_SUFFIX = ".safetensors.index.json"


class UnsafeNameError(UserError):
    """A file name from a bucket that would not stay inside the local folder it is copied to."""


class CheckpointError(UserError):
    """The folder is not a checkpoint vrscore loads."""


def checked_name(name: object, where: str) -> str:
    """`name` as given, when it is safe as a path relative to a local folder: not absolute, no
    '..', '.' or empty part (two names must never map to one file), no NUL, and so never
    resolving outside the folder. UnsafeNameError otherwise, naming `where` it came from."""
    ok = isinstance(name, str) and name and "\0" not in name and not name.startswith("/")
    if ok:
        parts = name.split("/")
        ok = all(p not in ("", ".", "..") for p in parts)
        ok = ok and posixpath.normpath(posixpath.join("/entry", name)).startswith("/entry/")
    if not ok:
        raise UnsafeNameError(f"{where} holds a file named {name!r}, which would be written outside the model "
                              "cache folder (absolute, or with '..', '.' or empty parts): refused, nothing downloaded")
    return name


def checkpoint_files(uri: str, storage: StorageConfig) -> list[FileVersion]:
    """The files at `uri` (a local folder or a bucket folder) that loading reads, sorted by
    name, every name checked; nothing is read but the index files."""
    fs = fsspec_filesystem(uri, storage)
    fs.invalidate_cache()  # a cached listing would hide a rewritten checkpoint
    root = fs._strip_protocol(uri).rstrip("/")
    try:
        entries = fs.ls(root, detail=True)
    except (FileNotFoundError, NotADirectoryError):
        entries = []
    files: dict[str, FileVersion] = {}
    for info in entries:
        path = info["name"].rstrip("/")
        if path == root:
            continue  # a folder placeholder object
        name = checked_name(path[len(root) + 1:] if path.startswith(root + "/") else path, uri)
        if info.get("islink"):  # a local symlink: the size and mtime of what it points at
            info = fs.info(path)
        if info.get("type") == "file" and not name.endswith(NOT_LOADED_SUFFIXES):
            files[name] = file_version(name, info)
    for index in [n for n in files if n.endswith(INDEX_SUFFIX)]:
        for shard in _index_shards(fs, f"{root}/{index}", f"{uri.rstrip('/')}/{index}"):
            if shard not in files:
                try:
                    files[shard] = file_version(shard, fs.info(f"{root}/{shard}"))
                except FileNotFoundError:
                    raise CheckpointError(f"{uri.rstrip('/')}/{index} names {shard}, which is not there") from None
    if "config.json" not in files:
        raise FileNotFoundError(f"no saved model at {uri}: config.json not found (found: {sorted(files)[:10]})")
    if not any(n.endswith(".safetensors") for n in files):
        raise CheckpointError(f"{uri} has no *.safetensors weights; only safetensors checkpoints are loaded")
    return [files[n] for n in sorted(files)]


def _index_shards(fs, path: str, where: str) -> list[str]:
    try:
        weight_map = json.loads(fs.cat_file(path)).get("weight_map")
    except (ValueError, AttributeError):
        weight_map = None
    if not isinstance(weight_map, dict):
        raise CheckpointError(f"{where} is not a safetensors index (no weight_map object)")
    return sorted({checked_name(v, where) for v in weight_map.values()})


def file_of(uri: str, storage: StorageConfig, what: str) -> FileVersion:
    """The version of the one file at `uri` (name ''), e.g. a chat template; FileNotFoundError
    naming `what` (the setting that names it) when there is none."""
    fs = fsspec_filesystem(uri, storage)
    fs.invalidate_cache()
    try:
        info = fs.info(fs._strip_protocol(uri))
    except FileNotFoundError:
        info = {}
    if info.get("type") != "file":
        raise FileNotFoundError(f"{what} {uri}: no such file")
    return file_version("", info)
