"""Downstream commands read only the files a score job committed: Ray Data's two-phase commit
(pending checkpoint, data file, rename of the checkpoint) written for real, then the state a
killed job leaves: a data file whose checkpoint is still pending, cut short mid-write."""
from __future__ import annotations

import numpy as np
import pyarrow.parquet as pq
import pytest

from jobs import cli as vrscore_cli
from pipeline.scores_input import open_scores
from schemas.job_config import StorageConfig
from tests.ray_fixtures import ray_session  # noqa: F401  (session fixture)
from tests.scores_fixtures import random_rows, scores_table

ROWS, PER_FILE = 24, 6


@pytest.fixture
def killed_job_output(tmp_path, ray_session):  # noqa: F811
    """OUT/scores + OUT/_checkpoint as `vrscore score` writes them, then one file uncommitted."""
    from ray.data import DataContext
    from ray.data.checkpoint import CheckpointConfig

    out = tmp_path / "out"
    table = scores_table(random_rows(np.random.default_rng(0), groups=4, per_group=(6, 6)))
    ctx = DataContext.get_current()
    ctx.checkpoint_config = CheckpointConfig(id_column="id", checkpoint_path=str(out / "_checkpoint"),
                                             delete_checkpoint_on_success=False)
    try:
        ray_session.data.from_arrow(table).repartition(ROWS // PER_FILE).write_parquet(str(out / "scores"))
    finally:
        ctx.checkpoint_config = None
    committed = sorted((out / "_checkpoint").glob("*.parquet"))
    assert len(committed) == ROWS // PER_FILE and not any(".pending." in c.name for c in committed)
    # The state of a job killed after writing a data file, before committing it (and its
    # write cut short): the checkpoint is back to pending, the data file is truncated.
    victim = committed[0]
    victim.rename(victim.with_name(victim.name.replace(".parquet", ".pending.parquet")))
    base = victim.name.removesuffix(".parquet")
    data = [f for f in (out / "scores").glob("*.parquet") if f.name.startswith(base)]
    assert len(data) == 1
    lost = pq.read_table(data[0], columns=["id"])["id"].to_pylist()
    data[0].write_bytes(data[0].read_bytes()[: data[0].stat().st_size // 2])
    kept = sorted(set(table["id"].to_pylist()) - set(lost))
    return out, kept


def test_only_committed_files_are_read(killed_job_output):
    out, kept = killed_job_output
    scores = open_scores(str(out), StorageConfig())
    assert len(scores.files) == ROWS // PER_FILE - 1
    assert scores.count_rows() == len(kept)
    assert sorted(scores.read(["id"]).to_pandas()["id"]) == kept


def test_a_downstream_command_on_a_killed_job_sees_committed_rows_only(killed_job_output, tmp_path):
    out, kept = killed_job_output
    assert vrscore_cli.main(["filter", "--scores", str(out), "--where", "score > -1000", "--errors", "keep",
                             "--out", str(tmp_path / "kept"), "--quiet"]) == 0
    assert sorted(pq.read_table(tmp_path / "kept" / "scores")["id"].to_pylist()) == kept


def test_a_job_with_nothing_committed_yet_is_refused_clearly(killed_job_output):
    out, _ = killed_job_output
    for f in (out / "_checkpoint").glob("*.parquet"):
        if ".pending." not in f.name:
            f.rename(f.with_name(f.name.replace(".parquet", ".pending.parquet")))
    with pytest.raises(ValueError, match="holds no committed scores yet"):
        open_scores(str(out), StorageConfig())
