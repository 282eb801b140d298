"""A local filesystem under its own protocol, `countfile://`, that logs every file it opens for
reading, in whichever process opens it (the driver, Ray's workers): how many times a job reads a
file is then measured on a real filesystem, not by stubbing our code. Each open appends one line
`<path>` to the file named by $COUNTFILE_LOG (workers inherit the driver's environment); with
$COUNTFILE_READS set, each read appends `<path> <offset> <bytes>` there (which parts were read)."""
from __future__ import annotations

import collections
import os

import fsspec
from fsspec.implementations.local import LocalFileOpener, LocalFileSystem

PROTOCOL = "countfile"
LOG_ENV = "COUNTFILE_LOG"
READS_ENV = "COUNTFILE_READS"


class _CountingOpener(LocalFileOpener):
    def _log(self, start: int, n: int) -> None:
        log = os.environ.get(READS_ENV)
        if log and n:
            with open(log, "a") as f:
                f.write(f"{self.path} {start} {n}\n")

    def read(self, *args, **kwargs):
        start = self.f.tell()
        data = self.f.read(*args, **kwargs)
        self._log(start, len(data))
        return data

    def readinto(self, buffer):
        start = self.f.tell()
        n = self.f.readinto(buffer)
        self._log(start, n or 0)
        return n


class CountingFileSystem(LocalFileSystem):
    protocol = PROTOCOL

    @classmethod
    def _strip_protocol(cls, path):
        path = str(path)
        if path.startswith(f"{PROTOCOL}://"):
            path = path[len(PROTOCOL) + 3:]
        return super()._strip_protocol(path)

    def _open(self, path, mode="rb", **kwargs):
        log = os.environ.get(LOG_ENV)
        if log and "r" in mode:
            with open(log, "a") as f:  # one short append per open: atomic enough across processes
                f.write(self._strip_protocol(path) + "\n")
        if "r" in mode and os.environ.get(READS_ENV):
            return _CountingOpener(self._strip_protocol(path), mode, fs=self, **kwargs)
        return super()._open(path, mode=mode, **kwargs)


fsspec.register_implementation(PROTOCOL, CountingFileSystem, clobber=True)


def reads(log: str) -> dict[str, list[tuple[int, int]]]:
    """(offset, bytes) of each read of each path, from the $COUNTFILE_READS log."""
    found: dict[str, list[tuple[int, int]]] = collections.defaultdict(list)
    if os.path.exists(log):
        with open(log) as f:
            for line in f:
                path, start, n = line.rsplit(" ", 2)
                found[path].append((int(start), int(n)))
    return found


def opens(log: str) -> collections.Counter:
    """How many times each path was opened for reading, from the log."""
    if not os.path.exists(log):
        return collections.Counter()
    with open(log) as f:
        return collections.Counter(line.strip() for line in f if line.strip())
