"""A lease on an output directory, so that two runs never write into one `--out` together.

Object storage has no locks, and fsspec offers no create-if-absent on it, so the lease is a
small object, `OUT/_lease.json`, with an owner and a heartbeat:
- `{owner, host, pid, pid_start, heartbeat, ttl_s}`; `heartbeat` is the holder's clock (unix s).
- A run may take the lease when there is none; when its heartbeat is older than `ttl_s` (the
  holder stopped renewing it: it crashed or was killed, on any machine); or when the holder
  is a process of this same host that no longer exists (a killed run rerun at once need not
  wait out the ttl). Otherwise the run is refused, with who holds the lease and until when.
- Taking it is write, wait `settle_s`, read back: of two runs that take it at the same
  moment, the last write wins and the other reads a foreign owner and stops. S3 reads are
  strongly consistent, so the read-back sees the last write.
- While the job runs, a daemon thread renews the heartbeat every `ttl_s / 8`; the lease is
  deleted when the run ends. A run that finds its lease taken over (it stalled longer than
  `ttl_s`) stops renewing and fails when it ends, as its output may be mixed.
Clocks of the machines sharing an output must agree to well within `ttl_s`.
"""
from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
import uuid

import fsspec

from pipeline.storage import join
from schemas.user_error import UserError

log = logging.getLogger(__name__)

LEASE_FILE = "_lease.json"
LEASE_TTL_S = 120.0
SETTLE_S = 1.0


class OutputBusyError(UserError):
    """Another live run holds the output directory."""


def _pid_start(pid: int) -> str | None:
    """The process's start time in clock ticks since boot (Linux), to tell a reused pid apart."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def _local_holder_gone(lease: dict) -> bool:
    if lease.get("host") != socket.gethostname():
        return False
    pid = int(lease.get("pid", -1))
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except (PermissionError, OverflowError, ValueError):
        return False
    start = _pid_start(pid)
    return start is not None and lease.get("pid_start") not in (None, start)


def lease_problem(lease: dict | None, now: float | None = None) -> str | None:
    """Why a lease found in the output still blocks another run (None = free to take)."""
    if not lease:
        return None
    now = time.time() if now is None else now
    age = now - float(lease.get("heartbeat", 0))
    ttl = float(lease.get("ttl_s", LEASE_TTL_S))
    if age > ttl or _local_holder_gone(lease):
        return None
    return (f"another run is writing here (host {lease.get('host')}, pid {lease.get('pid')}, heartbeat "
            f"{age:.0f} s ago). If that run is dead, its lease expires {max(0.0, ttl - age):.0f} s from now")


def read_lease(fs: fsspec.AbstractFileSystem, out: str) -> dict | None:
    path = join(out, LEASE_FILE)
    try:
        return json.loads(fs.cat_file(path))
    except FileNotFoundError:
        return None
    except ValueError:  # a torn or foreign file: treat as a stale lease
        return {}


def check_free(fs: fsspec.AbstractFileSystem, out: str, owner: str | None = None) -> None:
    """Refuse, without writing, when a live run other than `owner` holds `out`."""
    lease = read_lease(fs, out)
    problem = None if owner is not None and (lease or {}).get("owner") == owner else lease_problem(lease)
    if problem:
        raise OutputBusyError(f"{out}: {problem}. Two runs into one --out would mix their rows.")


class OutputLease:
    """The lease of one run; take it with `OutputLease.acquire`, end it with `release()`."""

    def __init__(self, fs: fsspec.AbstractFileSystem, out: str, ttl_s: float):
        self.fs, self.out, self.ttl_s = fs, out, ttl_s
        self.path = join(out, LEASE_FILE)
        self.owner = uuid.uuid4().hex
        self.lost: str | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @classmethod
    def acquire(cls, fs: fsspec.AbstractFileSystem, out: str, *, ttl_s: float = LEASE_TTL_S,
                settle_s: float = SETTLE_S) -> OutputLease:
        lease = cls(fs, out, ttl_s)
        check_free(fs, out)
        fs.makedirs(out, exist_ok=True)
        lease._write()
        time.sleep(settle_s)
        holder = read_lease(fs, out) or {}
        if holder.get("owner") != lease.owner:
            raise OutputBusyError(f"{out}: another run took the output directory at the same moment "
                                  f"(host {holder.get('host')}, pid {holder.get('pid')}); this one stops")
        lease._thread = threading.Thread(target=lease._renew, name="vrscore-output-lease", daemon=True)
        lease._thread.start()
        return lease

    def _write(self) -> None:
        record = {"owner": self.owner, "host": socket.gethostname(), "pid": os.getpid(),
                  "pid_start": _pid_start(os.getpid()), "heartbeat": time.time(), "ttl_s": self.ttl_s}
        self.fs.pipe_file(self.path, json.dumps(record).encode())

    def _renew(self) -> None:
        while not self._stop.wait(self.ttl_s / 8):
            try:
                holder = read_lease(self.fs, self.out) or {}
                if holder.get("owner") != self.owner:
                    self.lost = f"host {holder.get('host')}, pid {holder.get('pid')}"
                    log.error("%s: another run took over the output lease (%s)", self.out, self.lost)
                    return
                self._write()
            except Exception:  # noqa: BLE001 - a storage hiccup: the next renewal retries
                log.warning("could not renew the lease on %s", self.out, exc_info=True)

    def release(self) -> None:
        """Stop renewing and delete the lease if it is still ours."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        if self.lost:
            raise OutputBusyError(f"{self.out}: this run lost its lease to another run ({self.lost}) while "
                                  "it was writing; check the output for rows of both runs")
        try:
            if (read_lease(self.fs, self.out) or {}).get("owner") == self.owner:
                self.fs.rm_file(self.path)
        except FileNotFoundError:
            pass
