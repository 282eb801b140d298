"""WebDataset tar shards as a manifest (img2dataset, video2dataset, NeMo Curator write them).

`--manifest` names the shards: one `.tar`, a folder of them, or a brace pattern
(`shards/{00000..00009}.tar`), local or on any fsspec filesystem. A sample is the run of
members sharing a key (the member's name up to the first dot of its base name); its `id` is
the key, its media the first member with one of `JobConfig.media_extensions`, in that order,
its prompt the `txt` member, or with `JobConfig.prompt_field` that field of the `json`
member (the json's `group` field, when there is one, is the group).

Each shard is one read task, streamed with `tarfile` (nothing but the current sample in
memory), yielding the embedded-media columns (pipeline/embedded_source.py) in blocks cut by
bytes. A member that cannot be read or a truncated tar gives an error row (`read_error`) for
the sample it was in; the samples before it are scored as usual.
"""
from __future__ import annotations

import json
import posixpath
import tarfile
from collections.abc import Iterator

import pyarrow as pa
from fsspec.spec import AbstractFileSystem
from ray.data import Datasource, ReadTask
from ray.data.block import BlockMetadata

from pipeline.manifest_files import file_name
from schemas.embedded_media import BYTES_COLUMN, READ_ERROR_COLUMN
from schemas.manifest import infer_media_type

def _split_name(name: str) -> tuple[str, str]:
    folder, base = posixpath.split(name)
    stem, _, ext = base.partition(".")
    return posixpath.join(folder, stem), ext.lower()


class WebDatasetSource(Datasource):
    """One read task per shard of `shards` on `fs`; `root` is what shard names are shown relative to."""

    def __init__(self, fs: AbstractFileSystem, shards: list[str], root: str, prompt_field: str | None,
                 media_extensions: list[str], block_bytes: int):
        self._shards = shards
        # What each read task carries: the reader, not the list of every shard.
        self._reader = ShardReader(fs, root, prompt_field, media_extensions, block_bytes)

    def estimate_inmemory_data_size(self) -> int | None:
        return None

    def get_read_tasks(self, parallelism: int, per_task_row_limit: int | None = None,
                       data_context=None) -> list[ReadTask]:
        return [ReadTask(lambda r=self._reader, s=shard: r.read(s),
                         BlockMetadata(num_rows=None, size_bytes=None, exec_stats=None, input_files=[shard]),
                         per_task_row_limit=per_task_row_limit) for shard in self._shards]


class ShardReader:
    """Streams one shard into the embedded-media columns, in blocks of at most `block_bytes` of media."""

    def __init__(self, fs: AbstractFileSystem, root: str, prompt_field: str | None, media_extensions: list[str],
                 block_bytes: int):
        self._fs, self._root = fs, root
        self._prompt_field, self._extensions, self._block_bytes = prompt_field, media_extensions, block_bytes

    def read(self, shard: str) -> Iterator[pa.Table]:
        rows: list[dict] = []
        size = 0
        for row in self.samples(shard):
            rows.append(row)
            size += len(row[BYTES_COLUMN] or b"")
            if size >= self._block_bytes:
                yield _table(rows)
                rows, size = [], 0
        if rows:
            yield _table(rows)

    def name(self, shard: str) -> str:
        """The shard as rows name it (their `uri` is `<name>/<key>.<ext>`): relative to the root."""
        return file_name(shard, self._root)

    def samples(self, shard: str) -> Iterator[dict]:
        """The shard's rows one by one (dicts of the source's columns), in the shard's order."""
        name = self.name(shard)
        key, members = None, {}
        try:
            with self._fs.open(shard, "rb") as f, tarfile.open(fileobj=f, mode="r|*") as tar:
                for info in tar:
                    if not info.isfile():
                        continue
                    sample, ext = _split_name(info.name)
                    if sample != key and key is not None:
                        yield self._row(name, key, members)
                        members = {}
                    key = sample
                    data = tar.extractfile(info).read()
                    if len(data) != info.size:
                        raise tarfile.ReadError(f"member {info.name} is truncated")
                    members.setdefault(ext, data)
        except (tarfile.TarError, EOFError, OSError) as exc:
            detail = f"{type(exc).__name__}: {exc}"[:200]
            yield _error_row(name, key if key is not None else f"{name}#unreadable",
                             f"shard {name} could not be read past this sample (corrupt or truncated tar): {detail}")
            return
        if key is not None:
            yield self._row(name, key, members)

    def _row(self, shard: str, key: str, members: dict[str, bytes]) -> dict:
        ext = next((e for e in self._extensions if e in members), None)
        prompt = group = None
        try:
            meta = json.loads(members["json"]) if "json" in members else {}
        except ValueError:
            return _error_row(shard, key, f"the json member of sample {key!r} is not JSON")
        if self._prompt_field is not None:
            prompt = meta.get(self._prompt_field) if isinstance(meta, dict) else None
        elif "txt" in members:
            prompt = members["txt"].decode("utf-8", errors="replace")
        if isinstance(meta, dict) and isinstance(meta.get("group"), str):
            group = meta["group"]
        if ext is None:
            return _error_row(shard, key, f"sample {key!r} has no image or video member ({', '.join(members)})")
        return {"id": key, "uri": f"{shard}/{key}.{ext}", "media_type": infer_media_type(f"x.{ext}"),
                "prompt": None if prompt is None else str(prompt), "group": group,
                BYTES_COLUMN: members[ext], READ_ERROR_COLUMN: None}


def _error_row(shard: str, key: str, message: str) -> dict:
    return {"id": key, "uri": f"{shard}/{key}", "media_type": None, "prompt": None, "group": None,
            BYTES_COLUMN: None, READ_ERROR_COLUMN: message}


_SCHEMA = pa.schema([("id", pa.string()), ("uri", pa.string()), ("media_type", pa.string()),
                     ("prompt", pa.string()), ("group", pa.string()), (BYTES_COLUMN, pa.large_binary()),
                     (READ_ERROR_COLUMN, pa.string())])


def _table(rows: list[dict]) -> pa.Table:
    return pa.Table.from_pylist(rows, schema=_SCHEMA)
