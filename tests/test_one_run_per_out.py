"""Every command that writes an output directory takes the output lease that `score` takes."""
from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

import fsspec
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from jobs.cli import main
from pipeline.output_lease import LEASE_FILE, SETTLE_ENV, SETTLE_S, OutputLease
from tests.job_process import cli, job_env, kill_marked, ray_tmp, wait_until_gone  # noqa: F401 - fixture
from tests.scores_fixtures import random_rows, write_scores

ROWS = 24


def _scores(tmp_path: Path) -> Path:
    return write_scores(tmp_path / "s", random_rows(np.random.default_rng(0), groups=6, per_group=(4, 4)))


def _judgments(tmp_path: Path) -> Path:
    pairs = [{"group": f"g{g}", "a_id": f"g{g}/0", "b_id": f"g{g}/1", "preference": 1} for g in range(6)]
    pq.write_table(pa.Table.from_pylist(pairs), tmp_path / "j.parquet")
    return tmp_path / "j.parquet"


def _command(name: str, tmp_path: Path, out: Path) -> list[str]:
    scores = str(_scores(tmp_path))
    extra = {"rescore": ["--checklist", "default"], "filter": ["--where", "score > 0"], "pairs": [],
             "fit": ["--judgments", str(_judgments(tmp_path))]}[name]
    return [name, "--scores", scores, *extra, "--out", str(out), "--quiet"]


@pytest.mark.parametrize("name", ["rescore", "filter", "pairs", "fit"])
def test_a_second_run_into_a_held_output_is_refused_before_any_work(tmp_path, capsys, name):
    out = tmp_path / "out"
    other_run = OutputLease.acquire(fsspec.filesystem("file"), str(out), settle_s=0)
    try:
        assert main(_command(name, tmp_path, out)) == 2
    finally:
        other_run.release()
    err = capsys.readouterr().err
    assert f"vrscore {name}: error: {out}: another run is writing here" in err and "Traceback" not in err
    assert sorted(p.name for p in out.iterdir()) == []  # nothing written


def test_of_two_rescores_started_together_into_one_out_one_writes(tmp_path, ray_tmp):  # noqa: F811
    # Both pass the checks made before Ray starts (the output is empty); the lease, taken after,
    # lets one write. The other is refused, by the lease or (if the first already ended) by the
    # rows it finds: either way each row is written once.
    out, second_tmp = tmp_path / "out", Path(tempfile.mkdtemp(prefix="vrs", dir="/tmp"))
    args, logs = _command("rescore", tmp_path, out), [tmp_path / "err0", tmp_path / "err1"]
    try:
        # the real wait between writing the lease and reading it back (the suite sets none: conftest.py)
        env = {SETTLE_ENV: str(SETTLE_S)}
        runs = [subprocess.Popen(cli(*args), env=job_env(tmp, env), stdout=subprocess.DEVNULL, stderr=log.open("w"),
                                 start_new_session=True) for tmp, log in zip((ray_tmp, second_tmp), logs)]
        codes = [run.wait(timeout=300) for run in runs]
    finally:
        kill_marked(second_tmp)
        wait_until_gone(second_tmp, 10)
        shutil.rmtree(second_tmp, ignore_errors=True)
    errs = [log.read_text() for log in logs]
    assert sorted(codes) == [0, 2], errs
    refused = errs[codes.index(2)]
    assert "another run" in refused or "already holds output" in refused, refused
    assert pq.read_table(out / "scores").num_rows == ROWS  # once each
    assert not (out / LEASE_FILE).exists()
