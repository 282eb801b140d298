"""Which media the report reads: its own refusals, applied by its thumbnail stage
(`actors/report_thumbnailer.py`) before the decode stage's limits.

A report is meant to be shared, and its scores file may come from elsewhere, so:
- local files (plain paths, and every scheme fsspec reads from the local filesystem: file://,
  local://) are shown only under a `--media-root` given on the command line; by default none
  is read;
- http(s) URLs whose host is or resolves to a loopback, private, link-local (169.254.x.x:
  cloud metadata), reserved or multicast address are refused, and redirects are not followed.
Known limit: a host's name is resolved again when it is fetched (DNS rebinding is not handled).
"""
from __future__ import annotations

import ipaddress
import os
import socket
from urllib.parse import urlparse

from fsspec.implementations.local import LocalFileSystem

from actors.media_io import MediaError, filesystem_class, uri_protocol


def _internal(address: str) -> bool:
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return not ip.is_global or ip.is_multicast


def _under(path: str, root: str) -> bool:
    return os.path.commonpath([path, root]) == root


def _local_path(uri: str) -> str | None:
    """The local path `uri` reads, or None when its filesystem is not the local one."""
    try:
        cls, path = filesystem_class(uri)
    except (ValueError, ImportError):  # unknown or not installed: nothing is read either
        return None
    return path if issubclass(cls, LocalFileSystem) else None


def refusal(uri: str, media_roots: list[str]) -> str | None:
    """Why the report will not read `uri` (None = it may, within the decode limits)."""
    try:
        protocol = uri_protocol(uri)
        local = _local_path(uri)
    except MediaError as exc:
        return exc.message
    if local is not None:
        path = os.path.realpath(local)
        roots = [os.path.realpath(r) for r in media_roots]
        if not any(_under(path, r) for r in roots):
            return "a local file outside --media-root: the report reads local files only under a root you name"
        return None
    if protocol in ("http", "https"):
        host = urlparse(uri).hostname
        if not host:
            return "no host in the URL"
        try:
            addresses = {a[4][0] for a in socket.getaddrinfo(host, None)}
        except (OSError, UnicodeError) as exc:
            return f"cannot resolve {host}: {exc}"
        if any(_internal(a) for a in addresses):
            return f"{host} is an internal address (loopback, private, link-local or reserved): not fetched"
    return None
