"""The manifest id check: the driver path (small manifests) and the distributed path (large
ones) refuse the same problems with the same words, with ids read from the opened manifest's
files; Parquet reads size their footer pool."""
from __future__ import annotations

import os

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipeline.id_check import check_unique_ids as check_manifest_ids
from pipeline.manifest_files import open_manifest
from pipeline.parquet_reader import FOOTER_ACTORS_ENV, footer_actors, read_parquet
from schemas.job_config import JobConfig, ModelConfig
from schemas.manifest import ManifestError
from tests.job_process import few_shuffle_partitions  # noqa: F401  (fixture)
from tests.ray_fixtures import ray_session  # noqa: F401  (fixture)

def check_unique_ids(cfg: JobConfig, driver_max_rows: int) -> None:
    """The check as a job makes it: on the manifest opened once."""
    check_manifest_ids(open_manifest(cfg.manifest, cfg.storage), cfg.id_column, driver_max_rows=driver_max_rows)


BOTH_PATHS = pytest.mark.parametrize("driver_max_rows", [10**9, 0], ids=["driver", "distributed"])


def manifest_of(tmp_path, ids: list, n_files: int = 1) -> JobConfig:
    """A manifest directory of `n_files` files holding `ids` between them."""
    root = tmp_path / "manifest"
    root.mkdir()
    per_file = -(-len(ids) // n_files)
    for k in range(n_files):
        chunk = ids[k * per_file:(k + 1) * per_file]
        rows = [{"id": i, "uri": f"/media/{n}.png"} for n, i in enumerate(chunk)]
        pq.write_table(pa.Table.from_pylist(rows, schema=pa.schema([("id", pa.string()), ("uri", pa.string())])),
                       root / f"part-{k}.parquet")
    return JobConfig(manifest=str(root), out=str(tmp_path / "out"), model=ModelConfig(model="unused"))


@BOTH_PATHS
@pytest.mark.usefixtures("ray_session", "few_shuffle_partitions")
def test_duplicates_across_files_are_listed_with_their_counts(tmp_path, driver_max_rows):
    ids = [f"u{k}" for k in range(40)] + ["u3", "u7", "u7", "u39"]
    cfg = manifest_of(tmp_path, ids, n_files=3)  # duplicates sit in other files than their first copy
    with pytest.raises(ManifestError) as err:
        check_unique_ids(cfg, driver_max_rows=driver_max_rows)
    msg = str(err.value)
    assert msg.startswith("3 ids appear more than once in the manifest")
    assert "'u3' x2" in msg and "'u7' x3" in msg and "'u39' x2" in msg


@BOTH_PATHS
@pytest.mark.usefixtures("ray_session", "few_shuffle_partitions")
def test_null_ids_are_named_before_duplicates(tmp_path, driver_max_rows):
    # Many duplicates and two nulls: the message is about the nulls, whatever the order.
    ids = [f"d{k}" for k in range(15)] * 2 + [None, "x", None]
    with pytest.raises(ManifestError, match="^2 manifest rows have a null id"):
        check_unique_ids(manifest_of(tmp_path, ids), driver_max_rows=driver_max_rows)


@BOTH_PATHS
@pytest.mark.usefixtures("ray_session", "few_shuffle_partitions")
def test_unique_ids_pass(tmp_path, driver_max_rows):
    check_unique_ids(manifest_of(tmp_path, [f"u{k}" for k in range(50)], n_files=2), driver_max_rows=driver_max_rows)


def test_footer_pool_grows_with_the_file_count():
    assert [footer_actors(n) for n in (0, 1, 256, 257, 2560, 10**6)] == [1, 1, 1, 2, 10, 32]


@pytest.mark.usefixtures("ray_session")
def test_read_scopes_its_footer_setting_and_keeps_a_users_own(tmp_path, monkeypatch):
    cfg = manifest_of(tmp_path, [f"u{k}" for k in range(30)], n_files=3)
    monkeypatch.delenv(FOOTER_ACTORS_ENV, raising=False)
    ds = read_parquet(cfg.manifest, None, ["id"])
    assert FOOTER_ACTORS_ENV not in os.environ  # the override ended with the call
    assert sorted(r["id"] for r in ds.take_all()) == sorted(f"u{k}" for k in range(30))
    monkeypatch.setenv(FOOTER_ACTORS_ENV, "2")
    assert read_parquet(cfg.manifest, None, ["id"]).count() == 30
    assert os.environ[FOOTER_ACTORS_ENV] == "2"


@BOTH_PATHS
@pytest.mark.usefixtures("ray_session", "few_shuffle_partitions")
def test_integer_ids_are_checked_as_their_decimal_string(tmp_path, driver_max_rows):
    # the id 7 in one file and "7" in another are one id once read; 10 and "010" are not
    root = tmp_path / "manifest"
    root.mkdir()
    pq.write_table(pa.table({"id": pa.array([7, 10, 11], pa.int64()), "uri": ["a", "b", "c"]}), root / "part-0.parquet")
    pq.write_table(pa.table({"id": ["7", "010"], "uri": ["d", "e"]}), root / "part-1.parquet")
    cfg = JobConfig(manifest=str(root), out=str(tmp_path / "out"), model=ModelConfig(model="unused"))
    with pytest.raises(ManifestError, match=r"^1 ids appear more than once in the manifest .*: '7' x2$"):
        check_unique_ids(cfg, driver_max_rows=driver_max_rows)
    (root / "part-1.parquet").unlink()
    check_unique_ids(cfg, driver_max_rows=driver_max_rows)
