"""Fault tolerance of `vrscore score`, for real: the driver SIGKILLed mid-run and the same
command run again; a scorer actor that dies mid-batch; a changed job refused.

One module fixture does the expensive part once: run 1 is killed (its whole process group)
as soon as it has committed an output file, run 2 is the same command with the scorer crash
hook armed. The tests read what it observed.
"""
from __future__ import annotations

import hashlib
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from actors.checklist_scorer import CRASH_ONCE_ENV
from actors.synthetic_media import write_image, write_video
import schemas
from jobs import cli as vrscore_cli
from pipeline.output_dir import CHECKPOINT_DIR, JOB_FILE, SCORES_DIR
from tests.job_process import (  # noqa: F401  (fixture)
    REPO, cli, describe, few_shuffle_partitions, job_env, kill_marked, run_job, wait_until_gone,
)
from tests.ray_fixtures import ray_session  # noqa: F401  (session fixture)

pytestmark = pytest.mark.slow
N_ROWS, ROWS_PER_FILE = 40, 4
PENDING = ".pending.parquet"


@dataclass
class Observed:
    manifest: Path
    out: Path
    model: Path
    ids: list[str]
    killed_files: dict[str, str]  # committed data files after the kill -> sha256
    killed_committed_ids: set[str]  # ids in committed checkpoint files after the kill
    killed_uncommitted: list[str]  # data files of run 1 whose commit had not finished
    left_running: list[str]  # processes of run 1 still alive a minute after the kill
    rerun: subprocess.CompletedProcess
    final_files: dict[str, str]
    crash_marker: Path
    seconds: dict[str, float]  # run 1 until the kill, the kill until its processes were gone, run 2


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _ids(path: Path) -> list[str]:
    return pq.read_table(path, columns=["id"])["id"].to_pylist()


def _committed(out: Path) -> tuple[list[Path], list[Path]]:
    """(committed, pending) checkpoint files of Ray Data's two-phase commit."""
    files = sorted((out / CHECKPOINT_DIR).glob("*.parquet")) if (out / CHECKPOINT_DIR).exists() else []
    return [f for f in files if not f.name.endswith(PENDING)], [f for f in files if f.name.endswith(PENDING)]


def _data_files(out: Path) -> dict[str, str]:
    return {p.name: _sha(p) for p in sorted((out / SCORES_DIR).glob("*.parquet"))}


def _write_manifest(folder: Path) -> tuple[Path, list[str]]:
    rows = []
    for k in range(N_ROWS):
        if k % 4 == 3:
            uri = write_video(folder / f"v{k}.mp4", n_frames=8, size=(96, 64), fps=8, seed=k)
        else:
            uri = write_image(folder / f"i{k}.png", size=(160, 112), seed=k)
        rows.append({"id": f"row{k:02d}", "uri": str(uri), "prompt": f"prompt {k % 3}"})
    pq.write_table(pa.Table.from_pylist(rows), folder / "manifest.parquet")
    return folder / "manifest.parquet", [r["id"] for r in rows]


def score_args(manifest: Path, model: Path, out: Path) -> list[str]:
    return ["score", "--manifest", str(manifest), "--model", str(model), "--out", str(out), "--quiet",
            "--frames", "uniform:2", "--set", f"resources.rows_per_file={ROWS_PER_FILE}",
            "--set", "resources.batch_size=4", "--set", "resources.decode_batch_size=4"]


@pytest.fixture(scope="module")
def observed(tmp_path_factory, demo_model_dir) -> Observed:
    tmp = tmp_path_factory.mktemp("resume")
    manifest, ids = _write_manifest(tmp)
    out, marker = tmp / "out", tmp / "crash-once.txt"
    args = score_args(manifest, demo_model_dir, out)
    ray_tmp = Path(tempfile.mkdtemp(prefix="vrs", dir="/tmp"))
    t0 = time.monotonic()
    try:
        with open(tmp / "run1.log", "wb") as log:
            proc = subprocess.Popen(cli(*args), cwd=REPO, env=job_env(ray_tmp), start_new_session=True,
                                    stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 240
        while not _committed(out)[0] and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        os.killpg(proc.pid, signal.SIGKILL)  # the driver's group: driver, GCS, raylet, agents
        proc.wait()
        t_kill = time.monotonic()
        assert proc.returncode == -signal.SIGKILL, (
            f"run 1 ended by itself (rc {proc.returncode}):\n{(tmp / 'run1.log').read_text()[-3000:]}")
        # Ray's workers have process groups of their own: they must follow when their raylet
        # is gone (seconds; longer while one is importing torch on a busy machine).
        left = [describe(pid) for pid in wait_until_gone(ray_tmp, 60)]
        t_gone = time.monotonic()
        kill_marked(ray_tmp)  # recorded above; the rerun needs a clean machine
        committed = _committed(out)[0]
        prefixes = [c.name.removesuffix(".parquet") for c in committed]
        after_kill = _data_files(out)
        killed_files = {name: sha for name, sha in after_kill.items() if any(name.startswith(p) for p in prefixes)}
        killed_ids = {i for c in committed for i in _ids(c)}

        env = job_env(ray_tmp, {CRASH_ONCE_ENV: str(marker)})  # Ray's workers inherit it
        rerun = run_job(cli(*args), env)
        seconds = {"run1": t_kill - t0, "kill_to_gone": t_gone - t_kill, "run2": time.monotonic() - t_gone}
    finally:
        kill_marked(ray_tmp)
        wait_until_gone(ray_tmp, 10)
        shutil.rmtree(ray_tmp, ignore_errors=True)
    return Observed(manifest, out, demo_model_dir, ids, killed_files, killed_ids,
                    sorted(set(after_kill) - set(killed_files)), left, rerun,
                    _data_files(out), marker, {k: round(v, 1) for k, v in seconds.items()})


def test_sigkilled_job_resumes_without_loss_or_duplicates(observed):
    o = observed
    assert o.left_running == [], "processes of the killed run still alive (raylet/workers orphaned)"
    assert 0 < len(o.killed_committed_ids) < N_ROWS, "the kill must land mid-run"
    assert o.rerun.returncode == 0, o.rerun.stderr[-4000:]
    print(f"seconds: {o.seconds}; run 1 committed {len(o.killed_committed_ids)} rows in {len(o.killed_files)} files, "
          f"left {len(o.killed_uncommitted)} uncommitted")

    # Files committed by run 1 are untouched; their rows are exactly the committed ids.
    assert {n: o.final_files.get(n) for n in o.killed_files} == o.killed_files
    assert sorted(i for n in o.killed_files for i in _ids(o.out / SCORES_DIR / n)) == sorted(o.killed_committed_ids)
    # Every manifest row exactly once; run 2 wrote only the rows run 1 had not committed
    # (uncommitted files of run 1, if any, were removed on recovery).
    all_ids = [i for n in o.final_files for i in _ids(o.out / SCORES_DIR / n)]
    assert sorted(all_ids) == sorted(o.ids)
    new_rows = [i for n in set(o.final_files) - set(o.killed_files) for i in _ids(o.out / SCORES_DIR / n)]
    assert len(new_rows) == N_ROWS - len(o.killed_committed_ids)
    assert not set(new_rows) & o.killed_committed_ids
    assert all(len(_ids(o.out / SCORES_DIR / n)) <= ROWS_PER_FILE for n in o.final_files)
    assert not set(o.killed_uncommitted) & set(o.final_files)  # removed on recovery, if there were any
    assert _committed(o.out)[1] == []  # no pending checkpoint left behind
    summary = re.search(r"rows in = ok \+ errors: (\d+) = (\d+) \+ (\d+)", o.rerun.stdout)
    assert summary and summary.groups() == (str(N_ROWS), str(N_ROWS), "0"), o.rerun.stdout


def test_scorer_actor_crash_is_restarted_and_every_row_scored(observed):
    o = observed
    assert o.rerun.returncode == 0, o.rerun.stderr[-4000:]
    # The hook writes the actor's pid, then os._exit()s: the only scorer actor died mid-batch ...
    assert len(o.crash_marker.read_text().split()) == 1
    table = pq.read_table(o.out / SCORES_DIR)
    assert sorted(table["id"].to_pylist()) == sorted(o.ids)  # ... was restarted, its batch retried
    assert set(table["status"].to_pylist()) == {"ok"} and table["p_yes"].null_count == 0


@pytest.mark.usefixtures("ray_session", "few_shuffle_partitions")
def test_changed_checklist_and_model_are_refused(observed, tmp_path, capsys):
    o = observed
    checklist = yaml.safe_load((Path(schemas.__file__).parent / "checklists" / "image_default.yaml").read_text())
    checklist["questions"][0]["weight"] = 2.5
    (tmp_path / "image.yaml").write_text(yaml.safe_dump(checklist))
    job_before, files_before = (o.out / JOB_FILE).read_bytes(), _data_files(o.out)
    shutil.copytree(o.model, tmp_path / "other-model")  # a model the driver can read (for its resize rule)
    args = score_args(o.manifest, tmp_path / "other-model", o.out)
    args += ["--checklist", str(tmp_path / "image.yaml"), "--checklist", "default"]
    assert vrscore_cli.main(args) == 2
    err = capsys.readouterr().err
    assert f"{o.out} holds scores of a different job" in err
    assert f"model.model: '{o.model}' -> '{tmp_path / 'other-model'}'" in err
    assert "checklist for image changed" in err and "checklist for video" not in err
    assert (o.out / JOB_FILE).read_bytes() == job_before and _data_files(o.out) == files_before
