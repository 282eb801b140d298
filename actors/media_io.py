"""Reading media bytes from a URI, with per-row failures as `MediaError(status, message)`.

Messages go into the output table, so they name the file and what went wrong in words a
user can act on, and they never carry credentials: user:password in a URL, the query
string of a presigned URL and any secret value of the storage options are masked.
"""
from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import urlsplit

import fsspec
from fsspec.spec import AbstractFileSystem

from schemas import status as st

_SCHEME_RE = re.compile(r"^([A-Za-z][A-Za-z0-9+.\-]*)://")
_USERINFO_RE = re.compile(r"([A-Za-z][A-Za-z0-9+.\-]*://)[^/@\s]+@")
_QUERY_RE = re.compile(r"([A-Za-z][A-Za-z0-9+.\-]*://[^?\s]*)\?\S*")
# Storage-option keys whose values are secrets (s3fs `key`/`secret`/`token`, Azure
# `account_key`/`sas_token`, botocore `aws_secret_access_key`, HTTP auth passwords...).
_SECRET_KEY_RE = re.compile(r"key|secret|token|password|passwd|credential|signature|sas", re.I)
_MAX_DETAIL_CHARS = 300


class MediaError(Exception):
    """A per-row failure: `status` is a kind from schemas/status.py, `message` says why."""

    def __init__(self, status: str, message: str):
        super().__init__(status, message)  # both in args, so the error pickles
        self.status = status
        self.message = message

    def __str__(self) -> str:
        return f"{self.status}: {self.message}"


def _outside_ipv6_host(uri: str) -> str:
    """`uri` with a bracketed IPv6 host ('http://[2001:db8::1]/x') emptied, so that its
    colons are not taken for a chain. Malformed brackets raise MediaError."""
    try:
        parts = urlsplit(uri)
        parts.hostname  # noqa: B018 - urllib checks the bracketed address here
    except ValueError as exc:
        raise MediaError(st.INVALID_URI, f"malformed URL {redact_uri(uri)}: {exc}") from None
    start = parts.netloc.find("[")
    if not parts.scheme or start < 0:
        return uri
    host_end = len(parts.scheme) + 3 + parts.netloc.index("]") + 1
    return uri[: len(parts.scheme) + 3 + start] + uri[host_end:]


def uri_protocol(uri: str) -> str:
    """The fsspec protocol of a URI, lower case; plain paths are 'file'.

    Chained URLs ('simplecache::s3://...') are refused: each link would need its own
    scheme check and options, and caching links write to local disk. An IPv6 host in
    brackets ('http://[2001:db8::1]/x') is no chain.
    """
    if "::" in uri and "::" in _outside_ipv6_host(uri):
        raise MediaError(st.INVALID_URI, f"chained URLs ('a::b') are not supported: {redact_uri(uri)}")
    match = _SCHEME_RE.match(uri)
    return match.group(1).lower() if match else "file"


def filesystem_class(uri: str) -> tuple[type[AbstractFileSystem], str]:
    """The fsspec filesystem class that reads a single-link `uri`, and the path it reads.
    Not `fsspec.core.url_to_fs`: that splits 'http://[2001:db8::1]/x' at its '::'.
    Raises ValueError (unknown protocol) or ImportError (its package is not installed)."""
    cls = fsspec.get_filesystem_class(uri_protocol(uri))
    return cls, cls._strip_protocol(uri)


def redact_uri(uri: str) -> str:
    """The URI with user:password and query strings (presigned-URL signatures) masked."""
    return _QUERY_RE.sub(r"\1?<redacted>", _USERINFO_RE.sub(r"\1***@", uri))


def _secret_values(options: Mapping[str, Any] | None) -> list[str]:
    found: list[str] = []
    for key, value in (options or {}).items():
        if isinstance(value, Mapping):
            found += _secret_values(value)
        elif isinstance(value, str) and value and _SECRET_KEY_RE.search(str(key)):
            found.append(value)
    return found


def _clean_detail(text: str, uri: str, secrets: Iterable[str]) -> str:
    text = text.replace(uri, redact_uri(uri))
    for secret in secrets:
        text = text.replace(secret, "***")
    text = redact_uri(text)
    return text if len(text) <= _MAX_DETAIL_CHARS else text[:_MAX_DETAIL_CHARS] + "..."


def _read_error(uri: str, exc: BaseException, storage_options: dict | None) -> MediaError:
    detail = _clean_detail(f"{type(exc).__name__}: {exc}", uri, _secret_values(storage_options))
    return MediaError(st.READ_ERROR, f"cannot read {redact_uri(uri)}: {detail}")


def read_media_bytes(
    uri: str,
    *,
    allowed_schemes: Iterable[str],
    max_bytes: int,
    storage_options: dict | None,
) -> bytes:
    """All bytes of `uri`, read through fsspec (`storage_options` are the kwargs of the
    filesystem of its protocol). Raises MediaError: invalid_uri (scheme not allowed,
    checked before any I/O), missing_file, read_error, empty_file, too_large (over
    `max_bytes`; refused before reading when the size is known up front).
    """
    protocol = uri_protocol(uri)
    allowed = sorted({s.lower() for s in allowed_schemes})
    shown = redact_uri(uri)
    if protocol not in allowed:
        raise MediaError(st.INVALID_URI,
                         f"scheme {protocol!r} of {shown} is not allowed (allowed: {', '.join(allowed)})")
    try:
        cls, path = filesystem_class(uri)
        fs = cls(**{**cls._get_kwargs_from_urls(uri), **(storage_options or {})})
        with fs.open(path, "rb") as f:
            size = getattr(f, "size", None)
            if size is not None and size > max_bytes:
                raise MediaError(st.TOO_LARGE, f"{shown} is {size} bytes, over the limit of {max_bytes} (max_bytes)")
            # With the size unknown (some HTTP servers), read one byte past the limit to detect excess.
            data = f.read() if size is not None else f.read(max_bytes + 1)
    except MediaError:
        raise
    except FileNotFoundError as exc:
        # fsspec's HTTP filesystem reports an unreachable server as a missing file; the
        # connection error it wraps (an OSError) tells the two apart.
        if isinstance(exc.__cause__, OSError):
            raise _read_error(uri, exc.__cause__, storage_options) from None
        raise MediaError(st.MISSING_FILE, f"no such file: {shown}") from None
    except IsADirectoryError:
        raise MediaError(st.READ_ERROR, f"{shown} is a directory, not a file") from None
    except Exception as exc:  # noqa: BLE001 - any backend failure is this row's read_error
        raise _read_error(uri, exc, storage_options) from None
    if not data:
        raise MediaError(st.EMPTY_FILE, f"{shown} is empty (0 bytes)")
    if len(data) > max_bytes:
        raise MediaError(st.TOO_LARGE, f"{shown} is over the limit of {max_bytes} bytes (max_bytes)")
    return data
