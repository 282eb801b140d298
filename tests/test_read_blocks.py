"""The manifest is read in the blocks its read tasks make (a URI manifest: one per file), never split further by Ray Data's 200-block target: a
96-row manifest split into one-row blocks held a whole job's decode and score stages behind its
repartition (pipeline/parquet_source.read_as_planned)."""
from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.score_pipeline import read_manifest
from schemas.job_config import JobConfig
from tests.ray_fixtures import ray_session  # noqa: F401  (session fixture)


def _blocks(cfg: JobConfig) -> list[int]:
    # batch_size=None: each block is one batch, as Ray Data made it
    return [t.num_rows for t in read_manifest(cfg, ["id", "uri"]).iter_batches(batch_size=None, batch_format="pyarrow")]


def test_a_uri_manifest_is_read_one_block_per_row_group(ray_session, tmp_path):  # noqa: F811
    rows = [{"id": f"r{k}", "uri": f"/media/{k}.png"} for k in range(96)]
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "one.parquet")
    assert _blocks(JobConfig(manifest=str(tmp_path / "one.parquet"), out=str(tmp_path / "o"), model={"model": "m"})) == [96]
    # control: a read task is the unit, so a manifest of two files is two blocks
    (tmp_path / "two").mkdir()
    for k in range(2):
        pq.write_table(pa.Table.from_pylist(rows[48 * k:48 * (k + 1)]), tmp_path / "two" / f"{k}.parquet")
    assert _blocks(JobConfig(manifest=str(tmp_path / "two"), out=str(tmp_path / "o"), model={"model": "m"})) == [48, 48]


def test_media_inside_the_manifest_still_reach_several_decode_tasks(ray_session, tmp_path):  # noqa: F811
    """Bytes are cut into blocks of up to 128 MiB by their own source, so eight small images are one
    block as read: Ray Data's split is what gives them several decode tasks, and it is kept there."""
    rows = [{"id": f"r{k}", "image": b"\x89PNG\r\n\x1a\n" + bytes(64)} for k in range(8)]
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "bytes.parquet")
    cfg = JobConfig(manifest=str(tmp_path / "bytes.parquet"), out=str(tmp_path / "o"), model={"model": "m"})
    blocks = [t.num_rows for t in read_manifest(cfg, ["id"]).iter_batches(batch_size=None, batch_format="pyarrow")]
    assert sum(blocks) == 8 and len(blocks) > 1
