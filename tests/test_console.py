"""What a person sees: `vrscore demo` with stdout not a terminal (a batch system's log) shows
our job lines and the summary; Ray's INFO lines and the workers' output stay in Ray's log
directory. Ray's own quiet settings of the test environment are taken away, so the job is
as loud as Ray makes it by default."""
from __future__ import annotations

import re

import pytest

from tests.job_process import cli, job_env, ray_tmp, run_job  # noqa: F401  (fixture)

pytestmark = pytest.mark.slow  # a job in a process of its own, with its own Ray
RAY_INFO = re.compile(r"\bINFO \S+\.py:\d+ --")  # Ray's log format: "<time>\tINFO worker.py:2038 -- ..."
JOB_LINE = re.compile(r"^\[vrscore\] rows (\d+)/10 \(\S+%\) .* rows/s +errors \d+ .* ETA ", re.M)


def test_ray_info_pattern_matches_what_ray_prints():
    # Negative control for the assertion below: these lines were on the demo's console before.
    assert RAY_INFO.search("2026-11-30 15:08:11,131\tINFO worker.py:2038 -- Started a local Ray instance.")
    assert RAY_INFO.search("2026-11-30 15:08:12,344\tINFO logging_progress.py:225 -- Total Progress: 0/?")
    assert not RAY_INFO.search("15:08:11 INFO jobs.score_job: scoring m.parquet with model")


def test_demo_console_without_a_terminal(tmp_path, ray_tmp):  # noqa: F811
    env = {k: v for k, v in job_env(ray_tmp).items() if k not in ("RAY_DATA_DISABLE_PROGRESS_BARS", "RAY_DATA_LOG_LEVEL")}
    proc = run_job(cli("demo", "--out", str(tmp_path / "demo"), "--progress-interval", "1"), env, timeout=300)
    console = proc.stdout + proc.stderr
    assert proc.returncode == 0, console[-4000:]
    done = [int(m.group(1)) for m in JOB_LINE.finditer(proc.stdout)]
    assert len(done) >= 2 and done[-1] == 10, proc.stdout  # lines every second, the last at 10/10
    assert done == sorted(done)
    assert "rows in = ok + errors: 10 = 10 + 0" in proc.stdout
    assert not RAY_INFO.search(console), console
    assert "(MapWorker" not in console and "pid=" not in console  # no worker output forwarded
    assert "Warning" not in console, console
    logs = ray_tmp.rglob("ray-data*.log")
    assert any("Total Progress" in p.read_text(errors="replace") for p in logs)  # Ray's progress log kept there
