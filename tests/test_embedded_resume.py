"""A job over a manifest that holds the media (a folder of Parquet files with {bytes, path}
structs and no id column: ids from file and row number), its whole process group SIGKILLed as
soon as it has committed an output file, then run again: every row is in the output exactly
once, the committed files untouched (the kill pattern of tests/test_resume.py)."""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from actors.synthetic_media import write_image
from pipeline.output_dir import CHECKPOINT_DIR, SCORES_DIR
from tests.job_process import REPO, cli, job_env, kill_marked, run_job, wait_until_gone

pytestmark = pytest.mark.slow
FILES, ROWS_PER_FILE_IN, ROWS_PER_FILE_OUT = 3, 8, 2


def _committed(out: Path) -> list[Path]:
    folder = out / CHECKPOINT_DIR
    return [f for f in sorted(folder.glob("*.parquet")) if not f.name.endswith(".pending.parquet")] \
        if folder.exists() else []


def test_a_killed_job_over_embedded_media_resumes_with_every_row_once(tmp_path, demo_model_dir):
    manifest = tmp_path / "hf"
    manifest.mkdir()
    struct = pa.struct([("bytes", pa.binary()), ("path", pa.string())])
    for f in range(FILES):
        items = [{"bytes": write_image(tmp_path / "img.png", size=(96, 64), seed=f * 100 + k).read_bytes(),
                  "path": f"{f}/{k}.png"} for k in range(ROWS_PER_FILE_IN)]
        pq.write_table(pa.table({"image": pa.array(items, struct), "prompt": ["a fox"] * len(items)}),
                       manifest / f"train-{f:05d}.parquet", row_group_size=3)
    ids = sorted(f"train-{f:05d}.parquet#{k}" for f in range(FILES) for k in range(ROWS_PER_FILE_IN))
    out = tmp_path / "out"
    args = cli("score", "--manifest", str(manifest), "--model", str(demo_model_dir), "--out", str(out), "--quiet",
               "--set", f"resources.rows_per_file={ROWS_PER_FILE_OUT}", "--set", "resources.batch_size=2",
               "--set", "resources.decode_batch_size=2")
    ray_tmp = Path(tempfile.mkdtemp(prefix="vrs", dir="/tmp"))
    try:
        with open(tmp_path / "run1.log", "wb") as log:
            proc = subprocess.Popen(args, cwd=REPO, env=job_env(ray_tmp), start_new_session=True,
                                    stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 240
        while not _committed(out) and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        assert proc.returncode == -signal.SIGKILL, (tmp_path / "run1.log").read_text()[-3000:]
        # that Ray's workers follow a killed driver is tests/test_resume.py's to check: here they are
        # killed at once (they took up to a minute to go by themselves, which nothing here checks)
        kill_marked(ray_tmp)
        wait_until_gone(ray_tmp, 10)
        committed = {i for c in _committed(out) for i in pq.read_table(c)["id"].to_pylist()}
        assert 0 < len(committed) < len(ids), "the kill must land mid-run"
        before = {p.name: p.read_bytes() for p in (out / SCORES_DIR).glob("*.parquet")
                  if any(p.name.startswith(c.name.removesuffix(".parquet")) for c in _committed(out))}
        rerun = run_job(args, job_env(ray_tmp), timeout=600)  # a shared machine can be slow
        assert rerun.returncode == 0, rerun.stderr[-4000:]
    finally:
        kill_marked(ray_tmp)
        wait_until_gone(ray_tmp, 10)
        shutil.rmtree(ray_tmp, ignore_errors=True)
    rows = pq.read_table(out / SCORES_DIR).to_pylist()
    assert sorted(r["id"] for r in rows) == ids  # every row, once
    assert {r["status"] for r in rows} == {"ok"}
    assert all((out / SCORES_DIR / name).read_bytes() == data for name, data in before.items())  # kept as written
