"""Run `vrscore` in a process of its own, as a user does: its own local Ray (or the cluster it
is pointed at), its own environment, killable as a whole. (And one setting for jobs run in
this process: `few_shuffle_partitions`.)

Each run gets a short private Ray temp folder (`RAY_TMPDIR`), which keeps it off the test
session's cluster and holds its logs, and marks every process it starts: Ray's raylet, GCS
and workers inherit the variable, so `pids_marked` finds whatever a run left behind.
"""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHUFFLE_PARTITIONS = 4
QUIET_ENV = {
    "RAY_DATA_DISABLE_PROGRESS_BARS": "1",
    "RAY_DATA_LOG_LEVEL": "ERROR",
    "HF_HUB_DISABLE_PROGRESS_BARS": "1",
    "HF_HUB_OFFLINE": "1",
    # The manifest's unique-id check is a groupby whose hash shuffle defaults to 200
    # partitions: 15-25 s of a 2-core machine for a few rows. Results do not depend on it.
    "RAY_DATA_DEFAULT_MIN_PARALLELISM": str(SHUFFLE_PARTITIONS),
}


def cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "jobs.cli", *args]


def job_env(ray_tmp: Path, extra: dict[str, str] | None = None) -> dict[str, str]:
    """This environment without Ray addresses, Ray authentication or AWS settings, quiet, marked
    with `ray_tmp`."""
    env = {k: v for k, v in os.environ.items()
           if k != "RAY_ADDRESS" and not k.startswith(("AWS_", "RAY_AUTH_"))}
    env.update(QUIET_ENV, RAY_TMPDIR=str(ray_tmp), PYTHONPATH=str(REPO))
    env.update(extra or {})
    return env


def run_job(cmd: list[str], env: dict[str, str], timeout: float = 240) -> subprocess.CompletedProcess:
    """Run to completion in a new session; on timeout the whole process group is killed."""
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        pytest.fail(f"{' '.join(cmd[2:4])} ran over {timeout}s\n--- stdout\n{out[-3000:]}\n--- stderr\n{err[-3000:]}")
    return subprocess.CompletedProcess(cmd, proc.returncode, out, err)


def pids_marked(ray_tmp: Path) -> list[int]:
    """Live processes whose environment carries RAY_TMPDIR=ray_tmp (zombies excluded)."""
    marker = f"RAY_TMPDIR={ray_tmp}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if marker in (entry / "environ").read_bytes().split(b"\0") and _state(entry) != "Z":
                found.append(int(entry.name))
        except OSError:  # gone, or not ours to read
            continue
    return found


def describe(pid: int) -> str:
    try:
        return f"{pid} {Path(f'/proc/{pid}/cmdline').read_bytes().replace(bytes(1), b' ').decode()[:120]}"
    except OSError:
        return f"{pid} (exited)"


def _state(proc_dir: Path) -> str:
    return (proc_dir / "stat").read_text().rsplit(")", 1)[1].split()[0]


def wait_until_gone(ray_tmp: Path, timeout: float) -> list[int]:
    """Processes still marked after `timeout` seconds (empty when all exited)."""
    deadline = time.monotonic() + timeout
    while (left := pids_marked(ray_tmp)) and time.monotonic() < deadline:
        time.sleep(0.2)
    return left


def kill_marked(ray_tmp: Path) -> None:
    """SIGKILL, by pid, every live process marked with `ray_tmp`."""
    for pid in pids_marked(ray_tmp):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


@pytest.fixture
def ray_tmp():
    """A private Ray temp folder for one test; kills (by pid) whatever its runs left alive."""
    path = Path(tempfile.mkdtemp(prefix="vrs", dir="/tmp"))  # short: Ray's socket paths must fit 107 bytes
    yield path
    kill_marked(path)
    wait_until_gone(path, 10)
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def few_shuffle_partitions(monkeypatch):
    """The same for a job run in this process (on the session's Ray)."""
    from ray.data import DataContext

    monkeypatch.setattr(DataContext.get_current(), "default_hash_shuffle_parallelism", SHUFFLE_PARTITIONS)
