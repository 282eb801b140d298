"""The output lease between real processes: PID namespaces, a lost holder that keeps writing, a
lease read while it is renewed, and an unreadable lease file. And the wait before the read-back
that `$VRSCORE_LEASE_SETTLE_S` sets."""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import fsspec
import pytest

from pipeline import output_lease
from pipeline.output_lease import LEASE_FILE, SETTLE_ENV, SETTLE_S, OutputBusyError, OutputLease, settle_seconds
from schemas.user_error import UserError
from pipeline.process_identity import process_identity

REPO = Path(__file__).resolve().parents[1]
LOCAL = fsspec.filesystem("file")

# A lease holder in a process of its own: takes the lease of argv[1] (ttl argv[2]), says "held",
# renews it in a loop for argv[3] seconds if given, then releases it when its stdin closes.
HOLDER = """
import sys, time, fsspec
from pipeline.output_lease import OutputBusyError, OutputLease
lease = OutputLease.acquire(fsspec.filesystem("file"), sys.argv[1], ttl_s=float(sys.argv[2]), settle_s=0)
print("held", flush=True)
end = time.monotonic() + float(sys.argv[3]) if len(sys.argv) > 3 else 0
while time.monotonic() < end:
    lease.renew()
sys.stdin.readline()
try:
    lease.release()
    print("released", flush=True)
except OutputBusyError as exc:
    print(f"refused: {exc}", flush=True)
"""


def _holder(out: Path, ttl_s: float, *args: str, prefix: tuple[str, ...] = ()) -> subprocess.Popen:
    proc = subprocess.Popen([*prefix, sys.executable, "-c", HOLDER, str(out), str(ttl_s), *args], cwd=REPO,
                            env={**os.environ, "PYTHONPATH": str(REPO)}, stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "held"
    return proc


def _end(proc: subprocess.Popen) -> str:
    out, _ = proc.communicate(input="\n", timeout=30)
    return out.strip()


def _write_lease(out: Path, **kw) -> None:
    out.mkdir(exist_ok=True)
    record = {"owner": "other-run", **process_identity(), "heartbeat": time.time(), "ttl_s": 60.0, **kw}
    (out / LEASE_FILE).write_text(json.dumps(record))


def _dead_pid() -> int:
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    return dead.pid


# --- item: a holder in another PID namespace on the same host ---------------------------------

def test_a_dead_looking_pid_of_another_pid_namespace_does_not_free_a_fresh_lease(tmp_path):
    out, pid = tmp_path / "out", _dead_pid()
    # Same host name, a pid that does not exist here, but another PID namespace: that pid may be
    # a live process of another container. Its fresh heartbeat holds the output.
    _write_lease(out, pid=pid, pid_ns="pid:[1]")
    with pytest.raises(OutputBusyError, match="another run is writing here"):
        OutputLease.acquire(LOCAL, str(out), settle_s=0)
    _write_lease(out, pid=pid, boot_id="another-boot")  # same namespace id, another boot of the kernel
    with pytest.raises(OutputBusyError):
        OutputLease.acquire(LOCAL, str(out), settle_s=0)
    _write_lease(out, pid=pid, pid_ns=None, boot_id=None)  # a record without them (an older version)
    with pytest.raises(OutputBusyError):
        OutputLease.acquire(LOCAL, str(out), settle_s=0)
    # Control: the same dead pid in this namespace and boot is provably gone, and the lease is taken.
    _write_lease(out, pid=pid)
    OutputLease.acquire(LOCAL, str(out), settle_s=0).release()


def _pid_namespaces_available() -> str | None:
    if shutil.which("unshare") is None:
        return "no unshare command"
    probe = subprocess.run(["unshare", "--pid", "--fork", "--mount-proc", "true"], capture_output=True)
    return None if probe.returncode == 0 else f"cannot make a PID namespace here: {probe.stderr.decode().strip()}"


@pytest.mark.skipif(_pid_namespaces_available() is not None, reason=str(_pid_namespaces_available()))
def test_a_live_run_in_another_pid_namespace_keeps_its_lease(tmp_path):
    out = tmp_path / "out"
    # pid 1 of its own namespace (with its own /proc): here pid 1 is another process, started earlier
    holder = _holder(out, 60, prefix=("unshare", "--pid", "--fork", "--mount-proc", "--kill-child"))
    try:
        assert json.loads((out / LEASE_FILE).read_text())["pid"] == 1
        with pytest.raises(OutputBusyError, match="another run is writing here"):
            OutputLease.acquire(LOCAL, str(out), settle_s=0)
    finally:
        assert _end(holder) == "released"
    OutputLease.acquire(LOCAL, str(out), settle_s=0).release()  # control: free once it ended


# --- a run that took over does not clear the way for a third ----------------------------------

def test_a_run_that_lost_its_lease_keeps_a_third_run_out_until_it_ends(tmp_path):
    out = tmp_path / "out"
    first = _holder(out, 1.0)
    try:
        first.send_signal(signal.SIGSTOP)  # stalls longer than its ttl: its lease expires
        time.sleep(1.5)
        second = OutputLease.acquire(LOCAL, str(out), settle_s=0)
    finally:
        first.send_signal(signal.SIGCONT)  # it wakes up, still writing, and finds its lease taken
    deadline = time.monotonic() + 10
    while not list(out.glob(f"{output_lease.LOST_PREFIX}*.json")) and time.monotonic() < deadline:
        time.sleep(0.05)
    # (Were the first stopped between reading its lease and renewing it, it would take the lease back
    # and the second would be the run that lost it: the messages differ, the rule does not.)
    with pytest.raises(OutputBusyError, match="(a run that had lost this output's lease|lost its lease)"):
        second.release()
    with pytest.raises(OutputBusyError, match="(a run that lost its lease is still|another run is) writing here"):
        OutputLease.acquire(LOCAL, str(out), settle_s=0)  # the third run, while the first still writes
    _end(first)
    third = OutputLease.acquire(LOCAL, str(out), settle_s=0)  # control: the first ended, the way is clear
    third.release()
    assert sorted(p.name for p in out.iterdir()) == []  # and nothing of the lease is left behind


def test_a_lease_taken_over_since_the_last_renewal_fails_its_run_and_is_kept(tmp_path):
    out = tmp_path / "out"
    lease = OutputLease.acquire(LOCAL, str(out), settle_s=0)  # renews every 15 s: not before release
    _write_lease(out)
    with pytest.raises(OutputBusyError, match="lost its lease"):
        lease.release()
    assert json.loads((out / LEASE_FILE).read_text())["owner"] == "other-run"


# --- a lease read while its holder renews it ---------------------------------------------------

def test_a_lease_renewed_in_a_loop_is_never_free_to_a_reader(tmp_path):
    out = tmp_path / "out"
    holder = _holder(out, 60, "2.5")  # renews back to back for 2.5 s
    taken, tries, deadline = 0, 0, time.monotonic() + 2
    try:
        while time.monotonic() < deadline:
            tries += 1
            try:
                OutputLease.acquire(LOCAL, str(out), settle_s=0).release()
                taken += 1
            except OutputBusyError:
                pass
    finally:
        result = _end(holder)
    assert tries > 20 and taken == 0, f"taken {taken} times in {tries} tries"
    assert result == "released"


def test_an_unreadable_lease_counts_as_held_until_its_file_is_older_than_the_ttl(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    for content in ("", '{"owner": "half', '"not a lease"'):
        (out / LEASE_FILE).write_text(content)
        with pytest.raises(OutputBusyError, match="cannot be read .* delete that file"):
            OutputLease.acquire(LOCAL, str(out), settle_s=0)
    old = time.time() - output_lease.LEASE_TTL_S - 10
    os.utime(out / LEASE_FILE, (old, old))  # control: written long ago, by a run long gone
    OutputLease.acquire(LOCAL, str(out), settle_s=0).release()


def test_the_settle_wait_is_one_second_unless_the_environment_sets_it(tmp_path, monkeypatch):
    monkeypatch.delenv(SETTLE_ENV, raising=False)
    assert settle_seconds() == SETTLE_S == 1.0
    monkeypatch.setenv(SETTLE_ENV, "0.3")
    t0 = time.monotonic()
    OutputLease.acquire(LOCAL, str(tmp_path / "out")).release()
    assert time.monotonic() - t0 >= 0.3  # the wait it was given, not the suite's 0
    for bad in ("soon", "-1", "nan", "inf"):
        monkeypatch.setenv(SETTLE_ENV, bad)
        with pytest.raises(UserError, match=f"{SETTLE_ENV}='{bad}'"):
            settle_seconds()
