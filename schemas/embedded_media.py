"""Manifests that hold the media bytes themselves (Hugging Face datasets and the like).

The media column is either binary (`binary`, `large_binary`, `binary_view`) or a struct with a
binary `bytes` field and an optional string `path` field (the `Image`/`Video` feature of
Hugging Face `datasets`). It is named by `JobConfig.media_column`; without one, a manifest with
no `uri` column uses a column called `image` or `video`.

Per row: `media_type` from the manifest's own column when set, else from the media column's
name (`image`, `video`), else the struct's path extension, else the bytes' signature. Ids come
from the `id` column, or `JobConfig.id_column`, or, when the dataset has neither, from the
file and the row's number in it (`<file>#<row>`, the file relative to the manifest): stable as
long as the files are, which the manifest fingerprint in job.json holds a resume to. Scores
carry the struct's path as `uri` (null for a plain binary column), never the bytes.
"""
from __future__ import annotations

from typing import Literal, NamedTuple

import pyarrow as pa

from schemas.manifest import ManifestError, infer_media_type, is_string_type

DEFAULT_MEDIA_COLUMNS = ("image", "video")
# The column that carries a row's bytes from the read to the decode stage (dropped there).
BYTES_COLUMN = "media_bytes"
# Why a source could not give a row's bytes (a corrupt or truncated tar shard); null when it could.
READ_ERROR_COLUMN = "read_error"


class MediaColumn(NamedTuple):
    """Where a manifest keeps its media: the column, and whether it is a {bytes, path} struct."""

    name: str
    layout: Literal["binary", "struct"]
    has_path: bool


def _is_binary(type_: pa.DataType) -> bool:
    return pa.types.is_binary(type_) or pa.types.is_large_binary(type_) or pa.types.is_binary_view(type_)


def media_column(schema: pa.Schema, name: str | None) -> MediaColumn | None:
    """The media column of a manifest: `name` when given (which must hold bytes), else a binary
    or {bytes, path} column called `image` or `video` when there is no `uri` column; None for
    a manifest of URIs."""
    if name is None:
        if "uri" in schema.names:
            return None
        found = [c for c in DEFAULT_MEDIA_COLUMNS if c in schema.names]
        if not found:
            return None
        name = found[0]
    if name not in schema.names:
        raise ManifestError(f"--media-column {name!r} is not in the manifest (found: {', '.join(schema.names)})")
    type_ = schema.field(name).type
    if _is_binary(type_):
        return MediaColumn(name, "binary", False)
    if pa.types.is_struct(type_) and type_.get_field_index("bytes") >= 0 and _is_binary(type_.field("bytes").type):
        index = type_.get_field_index("path")
        has_path = index >= 0 and is_string_type(type_.field(index).type)
        return MediaColumn(name, "struct", has_path)
    raise ManifestError(f"media column {name!r} has type {type_}; it must be binary, or a struct with a binary "
                        "'bytes' field and an optional string 'path' (the Hugging Face Image feature)")


# Leading bytes of the formats vrscore decodes: (offset, signature, media type).
_SIGNATURES = (
    (0, b"\x89PNG\r\n\x1a\n", "image"), (0, b"\xff\xd8\xff", "image"), (0, b"GIF87a", "image"),
    (0, b"GIF89a", "image"), (0, b"BM", "image"), (0, b"II*\x00", "image"), (0, b"MM\x00*", "image"),
    (4, b"ftyp", "video"), (0, b"\x1a\x45\xdf\xa3", "video"),  # MP4/MOV, Matroska/WebM
)


def sniff_media_type(data: bytes) -> str | None:
    """'image' or 'video' from the bytes' signature; None when it is not a known one."""
    if data[:4] == b"RIFF":
        return {b"WEBP": "image", b"AVI ": "video"}.get(data[8:12])
    for offset, signature, kind in _SIGNATURES:
        if data[offset:offset + len(signature)] == signature:
            # 'ftyp' boxes of still-image formats (HEIF/AVIF) are images, not videos.
            if signature == b"ftyp" and data[8:12] in (b"avif", b"heic", b"heix", b"mif1"):
                return "image"
            return kind
    return None


def embedded_media_type(column: str, path: str | None, data: bytes | None) -> str | None:
    """The media type of one embedded item, when the manifest's media_type is not set."""
    if column in DEFAULT_MEDIA_COLUMNS:
        return column
    if path:
        kind = infer_media_type(path)
        if kind is not None:
            return kind
    return sniff_media_type(data) if data else None


def row_id(file: str, row: int) -> str:
    """The id of a row of a manifest without ids: its file (relative to the manifest) and number."""
    return f"{file}#{row}"
