"""Who a process is, as a lease records it, and whether the process a lease names is provably gone.

A pid means one process only within one PID namespace on one boot of one kernel: containers on
one host (host networking, Kubernetes `hostNetwork`) share the host name but not their pids. So a
record carries the PID namespace (`pid:[inode]`, from /proc/self/ns/pid) and the boot id, and a
pid is checked only where both are this process's own.
"""
from __future__ import annotations

import os
import socket


def _pid_start(pid: int) -> str | None:
    """The process's start time in clock ticks since boot (Linux), to tell a reused pid apart."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def _pid_namespace() -> str | None:
    """This process's PID namespace (`pid:[inode]`), or None where /proc is not this namespace's
    (e.g. `unshare --pid` without its own /proc): then /proc/PID would name other processes."""
    try:
        if os.readlink("/proc/self") != str(os.getpid()):
            return None
        return os.readlink("/proc/self/ns/pid")
    except OSError:
        return None


def _boot_id() -> str | None:
    try:
        with open("/proc/sys/kernel/random/boot_id") as f:
            return f.read().strip() or None
    except OSError:
        return None


def process_identity() -> dict:
    """Who this process is, as a lease records it."""
    pid = os.getpid()
    return {"host": socket.gethostname(), "pid": pid, "pid_start": _pid_start(pid),
            "pid_ns": _pid_namespace(), "boot_id": _boot_id()}


def holder_gone(record: dict) -> bool:
    """True only when the holder provably no longer exists: its pid means the same process here
    (same PID namespace, same boot) and that process is gone or was replaced by another."""
    ns, boot = _pid_namespace(), _boot_id()
    if ns is None or boot is None or record.get("pid_ns") != ns or record.get("boot_id") != boot:
        return False
    pid = record.get("pid")
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except (PermissionError, OverflowError):
        return False
    start = _pid_start(pid)
    return start is not None and record.get("pid_start") not in (None, start)
