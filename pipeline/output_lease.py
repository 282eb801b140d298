"""A lease on an output directory, so that two runs never write into one `--out` together.

Every command that writes an output directory (score, rescore, filter, pairs, fit) writes under
it: `output_lease(fs, out)` (score takes it through `open_output`). Object storage has no locks,
and fsspec offers no create-if-absent on it, so the lease is a small object, `OUT/_lease.json`:
- `{owner, host, pid, pid_start, pid_ns, boot_id, heartbeat, ttl_s}`; `heartbeat` is the holder's
  clock (unix s).
- A run may take the lease when there is none; when its heartbeat is older than `ttl_s` (the
  holder stopped renewing it: it crashed or was killed, on any machine); or when the holder
  provably no longer exists: it ran in this PID namespace on this boot of this kernel (so its pid
  names a process here) and that pid is gone or now belongs to a process started at another time.
  A holder in another PID namespace (another container on the same host, even one with the same
  host name) is judged by its heartbeat alone. Otherwise the run is refused, with who holds the
  lease and until when.
- The lease is replaced whole, never rewritten in place: an S3 PUT replaces an object atomically;
  on a local or NFS disk it is written under a temporary name and renamed over the old one. A
  lease that cannot be read (empty, torn, not a lease) is read again for a short while, then counts
  as held, its file's modification time standing for the heartbeat: never as free.
- Taking it is write, wait `settle_s`, read back: of two runs that take it at the same
  moment, the last write wins and the other reads a foreign owner and stops. S3 reads are
  strongly consistent, so the read-back sees the last write. `settle_s` is `SETTLE_S` unless
  `$VRSCORE_LEASE_SETTLE_S` says otherwise (the test suite, whose runs mostly have an output to
  themselves, sets 0 and gives the real wait to the runs that race).
- While the job runs, a daemon thread renews the heartbeat every `ttl_s / 8`. A run that finds its
  lease taken over (it stalled longer than `ttl_s`) keeps writing until its job ends, so it keeps
  a heartbeat of its own instead, `OUT/_lease.lost.<owner>.json`: a new run is refused while that
  is fresh, so the run that took over cannot clear the way for a third by releasing. Both fail
  when they end, as their output may be mixed. The lease is deleted when its run ends, only if it
  is still that run's.
Clocks of the machines sharing an output must agree to well within `ttl_s`.
"""
from __future__ import annotations

import contextlib
import json
import logging
import os
import threading
import time
import uuid
from collections.abc import Callable, Iterator

import fsspec
from fsspec.implementations.local import LocalFileSystem

from pipeline.process_identity import holder_gone, process_identity
from pipeline.storage import join
from schemas.user_error import UserError

log = logging.getLogger(__name__)

LEASE_FILE = "_lease.json"
LOST_PREFIX = "_lease.lost."  # + owner + ".json": the heartbeat of a run that lost the lease
LEASE_TTL_S = 120.0
SETTLE_S = 1.0
SETTLE_ENV = "VRSCORE_LEASE_SETTLE_S"  # overrides SETTLE_S (seconds)
# An unreadable lease is read this many times, this far apart, before it counts as held: a
# writer of an older version rewrites it in place, and a reader may catch it half written.
UNREADABLE_READS, UNREADABLE_WAIT_S = 5, 0.1


def settle_seconds() -> float:
    """`$VRSCORE_LEASE_SETTLE_S` when set (seconds, 0 or more), else `SETTLE_S`."""
    raw = os.environ.get(SETTLE_ENV)
    if raw is None:
        return SETTLE_S
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not 0 <= value < float("inf"):
        raise UserError(f"{SETTLE_ENV}={raw!r}: give the seconds to wait, a number of 0 or more")
    return value


class OutputBusyError(UserError):
    """Another live run holds the output directory."""


def lease_problem(lease: dict | None, now: float | None = None) -> str | None:
    """Why a lease found in the output still blocks another run (None = free to take)."""
    if lease is None:
        return None
    now = time.time() if now is None else now
    age = now - float(lease["heartbeat"])
    ttl = float(lease["ttl_s"])
    if age > ttl or holder_gone(lease):
        return None
    expires = f"expires {max(0.0, ttl - age):.0f} s from now"
    if lease.get("unreadable"):
        return (f"its lease file {lease['path']} cannot be read (changed {age:.0f} s ago), so a run may be "
                f"writing here. If none is, delete that file; otherwise it {expires}")
    who = f"host {lease.get('host')}, pid {lease.get('pid')}, heartbeat {age:.0f} s ago"
    what = "a run that lost its lease is still writing here" if lease.get("lost") else "another run is writing here"
    return f"{what} ({who}). If that run is dead, its lease {expires}"


def _is_lease(record: object) -> bool:
    if not isinstance(record, dict) or not isinstance(record.get("owner"), str):
        return False
    try:
        return float(record["heartbeat"]) == float(record["heartbeat"]) and float(record["ttl_s"]) > 0
    except (KeyError, TypeError, ValueError):
        return False


def _modified(fs: fsspec.AbstractFileSystem, path: str) -> float:
    try:
        return fs.modified(path).timestamp()
    except (NotImplementedError, AttributeError, KeyError, TypeError, ValueError):
        return time.time()  # no modification time: as if written just now


def read_lease(fs: fsspec.AbstractFileSystem, out: str, name: str = LEASE_FILE) -> dict | None:
    """The lease at OUT/name, None when there is none. One that stays unreadable over a few reads
    counts as held by an unknown run, with the file's modification time as its heartbeat."""
    path = join(out, name)
    for attempt in range(UNREADABLE_READS):
        if attempt:
            time.sleep(UNREADABLE_WAIT_S)
        try:
            record = json.loads(fs.cat_file(path))
        except FileNotFoundError:
            return None
        except ValueError:  # empty, torn, or not JSON
            continue
        if _is_lease(record):
            return {**record, "path": path}
    try:
        heartbeat = _modified(fs, path)
    except FileNotFoundError:
        return None
    return {"owner": None, "unreadable": True, "path": path, "heartbeat": heartbeat, "ttl_s": LEASE_TTL_S}


def _put(fs: fsspec.AbstractFileSystem, path: str, record: dict) -> None:
    """Replace the file at `path` whole: a reader sees the old record or the new one, never a part."""
    data = json.dumps(record).encode()
    if not isinstance(fs, LocalFileSystem):
        fs.pipe_file(path, data)  # object stores: a PUT is atomic
        return
    local = fs._strip_protocol(path)
    temp = f"{local}.{uuid.uuid4().hex}.tmp"
    try:
        fs.pipe_file(temp, data)
        os.replace(temp, local)  # atomic on POSIX disks and on NFS
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.remove(temp)


def lost_runs(fs: fsspec.AbstractFileSystem, out: str) -> list[dict]:
    """The records of runs that lost the lease of `out` (fresh, ended or stale)."""
    found = [read_lease(fs, out, path.rsplit("/", 1)[-1]) for path in fs.glob(join(out, f"{LOST_PREFIX}*.json"))]
    return [r for r in found if r is not None]


def check_free(fs: fsspec.AbstractFileSystem, out: str, owner: str | None = None) -> None:
    """Refuse, without writing, when a live run other than `owner` holds `out`, or a run that
    lost its lease may still be writing there."""
    lease = read_lease(fs, out)
    problem = None if owner is not None and (lease or {}).get("owner") == owner else lease_problem(lease)
    if problem is None:
        problem = next((p for r in lost_runs(fs, out) if not r.get("ended") and (p := lease_problem(r))), None)
    if problem:
        raise OutputBusyError(f"{out}: {problem}. Two runs into one --out would mix their rows.")


def _who(record: dict | None) -> str:
    if record is None:
        return "its lease was deleted"
    if record.get("unreadable"):
        return f"its lease file {record['path']} was replaced by one that cannot be read"
    return f"host {record.get('host')}, pid {record.get('pid')}"


class OutputLease:
    """The lease of one run; take it with `OutputLease.acquire`, end it with `release()`."""

    def __init__(self, fs: fsspec.AbstractFileSystem, out: str, ttl_s: float):
        self.fs, self.out, self.ttl_s = fs, out, ttl_s
        self.path = join(out, LEASE_FILE)
        self.owner = uuid.uuid4().hex
        self.lost_path = join(out, f"{LOST_PREFIX}{self.owner}.json")
        self.lost: str | None = None
        self.acquired_at = time.time()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @classmethod
    def acquire(cls, fs: fsspec.AbstractFileSystem, out: str, *, ttl_s: float = LEASE_TTL_S,
                settle_s: float | None = None) -> OutputLease:
        """`settle_s`: the wait between writing the lease and reading it back (None: `settle_seconds()`)."""
        wait = settle_seconds() if settle_s is None else settle_s
        lease = cls(fs, out, ttl_s)
        check_free(fs, out)
        fs.makedirs(out, exist_ok=True)
        _put(fs, lease.path, lease._record())
        time.sleep(wait)
        holder = read_lease(fs, out)
        if (holder or {}).get("owner") != lease.owner:
            raise OutputBusyError(f"{out}: another run took the output directory at the same moment "
                                  f"({_who(holder)}); this one stops")
        lease._thread = threading.Thread(target=lease._renew, name="vrscore-output-lease", daemon=True)
        lease._thread.start()
        return lease

    def _record(self, **extra) -> dict:
        return {"owner": self.owner, **process_identity(), "heartbeat": time.time(), "ttl_s": self.ttl_s, **extra}

    def _lose(self, holder: dict | None) -> None:
        self.lost = _who(holder)
        log.error("%s: another run took over the output lease (%s); this run keeps a heartbeat in %s until it "
                  "ends, so that no third run starts", self.out, self.lost, self.lost_path)
        _put(self.fs, self.lost_path, self._record(lost=True))

    def renew(self) -> None:
        """One heartbeat: of the lease while it is ours, else of this run's lost record (it still
        writes: a new run must not start)."""
        if self.lost:
            _put(self.fs, self.lost_path, self._record(lost=True))
            return
        holder = read_lease(self.fs, self.out)
        if (holder or {}).get("owner") != self.owner:
            self._lose(holder)
        else:
            _put(self.fs, self.path, self._record())

    def _renew(self) -> None:
        while not self._stop.wait(self.ttl_s / 8):
            try:
                self.renew()
            except Exception:  # noqa: BLE001 - a storage hiccup: the next renewal retries
                log.warning("could not renew the lease on %s", self.out, exc_info=True)

    def release(self) -> None:
        """Stop renewing, and delete the lease if it is still ours. Raises when another run wrote here
        meanwhile: this one lost the lease, or a run that had lost it kept writing."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        if not self.lost:
            holder = read_lease(self.fs, self.out)
            if (holder or {}).get("owner") == self.owner:
                with contextlib.suppress(FileNotFoundError):
                    self.fs.rm_file(self.path)
            else:  # taken over since the last renewal
                self.lost = _who(holder)
        if self.lost:
            # ended: no longer blocks a new run, but tells the run that took over that this one wrote too
            _put(self.fs, self.lost_path, self._record(lost=True, ended=time.time()))
            raise OutputBusyError(f"{self.out}: this run lost its lease to another run ({self.lost}) while "
                                  "it was writing; check the output for rows of both runs")
        others = [r for r in lost_runs(self.fs, self.out) if r.get("owner") != self.owner]
        mixed = [r for r in others if float(r.get("ended") or r["heartbeat"]) >= self.acquired_at]
        for record in others:  # the ended and the dead ones have told what they had to
            if record.get("ended") or lease_problem(record) is None:
                with contextlib.suppress(FileNotFoundError):
                    self.fs.rm_file(record["path"])
        if mixed:
            raise OutputBusyError(f"{self.out}: a run that had lost this output's lease ({_who(mixed[0])}) wrote "
                                  "here while this run held it; check the output for rows of both runs")


@contextlib.contextmanager
def output_lease(fs: fsspec.AbstractFileSystem, out: str, check: Callable[[], None] | None = None, *,
                 ttl_s: float = LEASE_TTL_S, settle_s: float | None = None) -> Iterator[OutputLease]:
    """Hold the lease of `out` while the body writes there. `check` (what the output may already
    hold) runs first under the lease: another run may have written there since it was last run."""
    lease = OutputLease.acquire(fs, out, ttl_s=ttl_s, settle_s=settle_s)
    try:
        if check is not None:
            check()
        yield lease
    finally:
        lease.release()
