"""What a resumed `vrscore score` may change: a lower `model.token_budget` (what
docs/cluster.md says to do after an out-of-memory error) continues the job and writes every
row once; a setting that changes the scores is still refused."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from actors.synthetic_media import write_image
from jobs import cli as vrscore_cli
from pipeline.output_dir import CHECKPOINT_DIR, JOB_FILE, SCORES_DIR

pytestmark = pytest.mark.slow
N_ROWS, ROWS_PER_FILE = 6, 2


def _rows(out: Path) -> dict[str, list[float]]:
    table = pq.read_table(out / SCORES_DIR, columns=["id", "status", "p_yes"])
    assert set(table["status"].to_pylist()) == {"ok"}
    ids = table["id"].to_pylist()
    assert len(ids) == len(set(ids)), "a row written twice"
    return dict(zip(ids, table["p_yes"].to_pylist()))


def _drop_last_committed_file(out: Path) -> set[str]:
    """Leave the output as a run killed before its last file would: that file's checkpoint and
    data gone (Ray Data names a file's data after its checkpoint). Returns the ids it held."""
    checkpoint = sorted((out / CHECKPOINT_DIR).glob("*.parquet"))[-1]
    data = [p for p in (out / SCORES_DIR).glob("*.parquet") if p.name.startswith(checkpoint.stem)]
    assert data, "no data file named after the checkpoint"
    ids = {i for p in data for i in pq.read_table(p, columns=["id"])["id"].to_pylist()}
    for path in [checkpoint, *data]:
        path.unlink()
    return ids


def test_a_lower_token_budget_resumes_and_a_changed_scoring_setting_is_refused(tmp_path, capsys, demo_model_dir):
    uris = []
    for i in range(N_ROWS):
        write_image(tmp_path / f"{i}.png", (64 + 8 * i, 48), seed=i)
        uris.append(str(tmp_path / f"{i}.png"))
    ids = [f"r{i}" for i in range(N_ROWS)]
    pq.write_table(pa.table({"id": ids, "uri": uris, "prompt": ["a cat"] * N_ROWS}), tmp_path / "m.parquet")
    out = tmp_path / "out"
    args = ["score", "--manifest", str(tmp_path / "m.parquet"), "--model", str(demo_model_dir), "--out", str(out),
            "--quiet", "--set", f"resources.rows_per_file={ROWS_PER_FILE}", "--set", "resources.batch_size=2",
            "--set", "resources.decode_batch_size=2"]  # batches no larger than a file: several files
    assert vrscore_cli.main(args) == 0
    first = _rows(out)
    dropped = _drop_last_committed_file(out)
    assert 0 < len(dropped) < N_ROWS
    job_before = (out / JOB_FILE).read_text()

    # The out-of-memory advice: a lower budget (one question per forward here) resumes the job.
    capsys.readouterr()
    assert vrscore_cli.main(args + ["--set", "model.token_budget=64"]) == 0, capsys.readouterr().err
    resumed = _rows(out)
    assert sorted(resumed) == sorted(ids)  # every row, once
    assert {i: resumed[i] for i in set(ids) - dropped} == {i: first[i] for i in set(ids) - dropped}  # untouched
    # The rows scored again under the lower budget are the rows of the first run, to rounding
    # (as any batch size gives); rows of other images differ far more than that.
    again = np.array([resumed[i] for i in sorted(dropped)])
    before = np.array([first[i] for i in sorted(dropped)])
    assert np.abs(again - before).max() < 1e-5
    others = np.array([first[i] for i in sorted(set(ids) - dropped)[:len(dropped)]])
    assert np.abs(others - before).max() > 1e-3
    assert (out / JOB_FILE).read_text() == job_before  # job.json still describes the job as first run

    # Negative control: a setting that changes the scores is still refused, before any work.
    files = sorted(p.name for p in (out / SCORES_DIR).iterdir())
    assert vrscore_cli.main(args + ["--set", "model.token_budget=64", "--set", "model.dtype=bfloat16"]) == 2
    err = capsys.readouterr().err
    assert "holds scores of a different job (model.dtype: 'float32' -> 'bfloat16')" in err
    assert sorted(p.name for p in (out / SCORES_DIR).iterdir()) == files

