"""A local filesystem under its own protocol, `countfile://`, that logs every file it opens for
reading, in whichever process opens it (the driver, Ray's workers): how many times a job reads a
file is then measured on a real filesystem, not by stubbing our code. Each open appends one line
`<path>` to the file named by $COUNTFILE_LOG (workers inherit the driver's environment)."""
from __future__ import annotations

import collections
import os

import fsspec
from fsspec.implementations.local import LocalFileSystem

PROTOCOL = "countfile"
LOG_ENV = "COUNTFILE_LOG"


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
        return super()._open(path, mode=mode, **kwargs)


fsspec.register_implementation(PROTOCOL, CountingFileSystem, clobber=True)


def opens(log: str) -> collections.Counter:
    """How many times each path was opened for reading, from the log."""
    if not os.path.exists(log):
        return collections.Counter()
    with open(log) as f:
        return collections.Counter(line.strip() for line in f if line.strip())
