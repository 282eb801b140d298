"""The decode pool reaches the cluster's CPUs however few rows a job has, and the summary names
the stage that bound the job: two planted jobs on a local Ray of 8 logical CPUs, in a process
of their own."""
from __future__ import annotations

import json
import shutil
import sys
import tempfile
from pathlib import Path

import pytest

from tests.job_process import REPO, job_env, kill_marked, run_job, wait_until_gone
from tests.paths import MEDIA

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def planted(tmp_path_factory) -> dict[str, dict]:
    video = MEDIA / "video2dataset_test_video.mp4"
    if not video.exists():
        pytest.skip(f"shared media not found: {video}")
    tmp = tmp_path_factory.mktemp("planted")
    ray_tmp = Path(tempfile.mkdtemp(prefix="vrs", dir="/tmp"))  # short: Ray's socket paths must fit 107 bytes
    try:
        done = run_job([sys.executable, "-m", "tests.planted_bound_jobs", str(tmp), str(video)],
                       job_env(ray_tmp, {"PYTHONPATH": str(REPO)}), timeout=400)
    finally:
        kill_marked(ray_tmp)
        wait_until_gone(ray_tmp, 10)
        shutil.rmtree(ray_tmp, ignore_errors=True)
    assert done.returncode == 0, done.stderr[-3000:]
    return {r["job"]: r for r in map(json.loads, (line for line in done.stdout.splitlines() if line.startswith("{")))}


def test_ten_rows_in_one_output_file_still_decode_on_the_whole_node(planted):
    # 10 rows, rows_per_file 1000: blocks cut to rows_per_file kept this job on one decoder
    job = planted["decode"]
    (run,) = job["stats"]["runs"]
    assert run["decode_actors_max"] >= 4, run
    assert run["stages"]["decode"]["parallelism"] > 2, run  # the actors decoded at once, not only started
    assert job["files"] == 1  # the output is still cut to rows_per_file
    assert sorted(job["ids"]) == sorted(job["manifest_ids"])


def test_many_1080p_frames_on_a_fast_model_are_decode_bound(planted):
    (run,) = planted["decode"]["stats"]["runs"]
    assert run["bound_stage"] == "decode", run
    assert run["stages"]["decode"]["busy_fraction"] > run["stages"]["score"]["busy_fraction"]
    assert "decode-bound: scorers idle" in planted["decode"]["summary"]


def test_a_slow_model_on_tiny_images_is_score_bound(planted):
    job = planted["score"]
    (run,) = job["stats"]["runs"]
    assert run["bound_stage"] == "score", run
    assert "score-bound" in job["summary"] and sorted(job["ids"]) == sorted(job["manifest_ids"])
