"""The input manifest: which columns a job reads and how each row is checked.

Required: `id` (unique string), `uri` (path or URI). Optional: `media_type` ('image' or
'video', inferred from the extension when absent or null), `prompt`, `group` (defaults to
the prompt). Anything else is carried through only when asked for (`keep_columns`; a name
vrscore writes itself is refused with the job config: schemas/scores.py, check_carried_columns).

Column types are checked from every file's Parquet footer before any work. `id`, `uri`,
`media_type`, `prompt` and `group` are read as Arrow `string` (any string, large-string,
string-view or dictionary-of-string column counts; the optional ones may also be all-null).
Integer ids are the one cast: they are read as their decimal string (42 -> "42", -7 -> "-7"),
in the read itself, so the id check, resume and the output all see the same string ids.
"""
from __future__ import annotations

import posixpath
from urllib.parse import urlparse

import pyarrow as pa

from schemas import status
from schemas.user_error import UserError

REQUIRED = ("id", "uri")
OPTIONAL = ("media_type", "prompt", "group")
IMAGE_EXTS = frozenset({".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif", ".tif", ".tiff"})
VIDEO_EXTS = frozenset({".mp4", ".mov", ".mkv", ".webm", ".avi", ".m4v", ".mpg", ".mpeg", ".ts", ".flv"})


class ManifestError(UserError):
    """The manifest as a whole is unusable; raised before any work starts."""


def columns_to_read(
    schema: pa.Schema, *, needs_prompt: bool, keep_columns: list[str], alignment_column: str | None = None,
    required: tuple[str, ...] = REQUIRED,
) -> list[str]:
    """The manifest columns a job reads, after checking the `required` ones exist (id and uri for
    a manifest of URIs; the id and media columns when it holds the bytes, schemas/embedded_media.py)."""
    names = set(schema.names)
    for col in required:
        if col not in names:
            hint = " (a manifest holding the media bytes names their column with --media-column)" if col == "uri" else ""
            raise ManifestError(f"manifest has no {col!r} column (found: {', '.join(schema.names)}){hint}")
    if needs_prompt and "prompt" not in names:
        raise ManifestError("the checklist uses [[prompt]] but the manifest has no 'prompt' column")
    wanted = [*keep_columns, *([alignment_column] if alignment_column else [])]
    missing = [c for c in wanted if c not in names]
    if missing:
        raise ManifestError(f"columns asked for are not in the manifest: {missing}")
    cols = [*required, *(c for c in OPTIONAL if c in names), *wanted]
    return list(dict.fromkeys(cols))


# Columns read as strings -> whether an all-null (Arrow `null` type) column is allowed.
STRING_READ_TYPE = pa.string()
STRING_COLUMNS = {"id": False, "uri": False, "media_type": True, "prompt": True, "group": True}


def is_string_type(type_: pa.DataType) -> bool:
    if pa.types.is_dictionary(type_):
        return is_string_type(type_.value_type)
    return pa.types.is_string(type_) or pa.types.is_large_string(type_) or pa.types.is_string_view(type_)


def check_column_types(schema: pa.Schema, where: str) -> None:
    """Refuse a manifest file whose id/uri/media_type/prompt/group column has a type the job
    cannot read as a string; `where` names the file in the message."""
    for name, null_ok in STRING_COLUMNS.items():
        if name not in schema.names:
            continue
        type_ = schema.field(name).type
        if is_string_type(type_) or (null_ok and pa.types.is_null(type_)):
            continue
        if name == "id" and pa.types.is_integer(type_):
            continue  # read as its decimal string (read_schema)
        wanted = {"id": "a string, or an integer (read as its decimal string)",
                  "uri": "a string"}.get(name, "a string or null")
        raise ManifestError(f"manifest column {name!r} has type {type_} in {where}; it must be {wanted}")


def read_schema(schema: pa.Schema, columns: list[str]) -> pa.Schema:
    """The schema a job reads `columns` with: the string columns as `string` (integer ids cast
    to their decimal string), every other column as the manifest has it."""
    return pa.schema([pa.field(c, STRING_READ_TYPE) if c in STRING_COLUMNS else schema.field(c) for c in columns])


def uri_extension(uri: str) -> str:
    path = urlparse(uri).path if "://" in uri else uri
    return posixpath.splitext(path.lower())[1]


def infer_media_type(uri: str) -> str | None:
    ext = uri_extension(uri)
    if ext in IMAGE_EXTS:
        return "image"
    if ext in VIDEO_EXTS:
        return "video"
    return None


def check_row(
    uri: str | None, media_type: str | None, prompt: str | None, prompt_needed_for: dict[str, bool]
) -> tuple[str | None, str, str | None]:
    """(media_type, status, error) of one manifest row, before any I/O.

    `prompt_needed_for` maps each media kind that has a checklist to whether it uses [[prompt]].
    """
    if uri is None or not str(uri).strip():
        return media_type, status.INVALID_ROW, "uri is null or empty"
    if media_type is None or media_type == "":
        media_type = infer_media_type(uri)
        if media_type is None:
            ext = uri_extension(uri) or "(none)"
            return None, status.UNSUPPORTED_MEDIA, (
                f"cannot tell image from video by the extension {ext!r}; set the media_type column"
            )
    return _check_kind_and_prompt(media_type, prompt, prompt_needed_for)


def check_embedded_row(
    nbytes: int | None, media_type: str | None, prompt: str | None, prompt_needed_for: dict[str, bool]
) -> tuple[str | None, str, str | None]:
    """(media_type, status, error) of one row whose media bytes are in the manifest
    (schemas/embedded_media.py): `nbytes` is their length (None: null), `media_type` the row's
    own or the one the source told from the column, path or bytes (None: not told)."""
    if not nbytes:
        return media_type, status.EMPTY_FILE if nbytes == 0 else status.INVALID_ROW, (
            "the media bytes are empty" if nbytes == 0 else "the media bytes are null")
    if media_type is None or media_type == "":
        return None, status.UNSUPPORTED_MEDIA, ("cannot tell image from video by the media column, its path or "
                                                "the bytes' signature; set the media_type column")
    return _check_kind_and_prompt(media_type, prompt, prompt_needed_for)


def _check_kind_and_prompt(
    media_type: str, prompt: str | None, prompt_needed_for: dict[str, bool]
) -> tuple[str | None, str, str | None]:
    if media_type not in ("image", "video"):
        return media_type, status.UNSUPPORTED_MEDIA, f"media_type must be 'image' or 'video', got {media_type!r}"
    if media_type not in prompt_needed_for:
        return media_type, status.UNSUPPORTED_MEDIA, f"the job has no checklist for {media_type}s"
    if prompt_needed_for[media_type] and (prompt is None or not str(prompt).strip()):
        return media_type, status.INVALID_ROW, "prompt is null or empty but the checklist uses [[prompt]]"
    return media_type, status.OK, None
