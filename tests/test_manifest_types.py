"""Manifest column types, checked from every file's Parquet footer before any work; integer
ids read as their decimal string, in the read itself, so that a resumed job skips them."""
from __future__ import annotations

import hashlib
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from actors.synthetic_media import write_image
from jobs import cli as vrscore_cli
from pipeline.output_dir import CHECKPOINT_DIR, SCORES_DIR
from jobs.score_job import run_score_job
from pipeline.score_pipeline import inspect_manifest
from schemas.checklist_set import resolve_checklists
from schemas.job_config import DecodeConfig, JobConfig, ModelConfig, ResourcesConfig
from schemas.manifest import ManifestError, check_column_types, read_schema
from tests.ray_fixtures import ray_session  # noqa: F401  (session fixture)

STRINGS = [pa.string(), pa.large_string(), pa.string_view(), pa.dictionary(pa.int32(), pa.string())]


def _schema(**types) -> pa.Schema:
    base = {"id": pa.string(), "uri": pa.string()}
    base.update(types)
    return pa.schema(list(base.items()))


@pytest.mark.parametrize("type_", STRINGS, ids=str)
def test_every_string_type_is_accepted_and_read_as_string(type_):
    schema = _schema(id=type_, uri=type_, media_type=type_, prompt=type_, group=type_)
    check_column_types(schema, where="m.parquet")
    assert read_schema(schema, schema.names) == pa.schema([(c, pa.string()) for c in schema.names])


@pytest.mark.parametrize("type_", [pa.int8(), pa.int32(), pa.int64(), pa.uint64()], ids=str)
def test_integer_ids_are_read_as_their_decimal_string(type_, tmp_path):
    check_column_types(_schema(id=type_), where="m.parquet")
    path = tmp_path / "m.parquet"
    ids = [0, 7, 10, 127] + ([-7] if pa.types.is_signed_integer(type_) else [])
    pq.write_table(pa.table({"id": pa.array(ids, type_), "uri": ["u"] * len(ids)}), path)
    read = pq.ParquetDataset(path, schema=read_schema(pq.read_schema(path), ["id"])).read(columns=["id"])
    assert read["id"].to_pylist() == [str(i) for i in ids]


@pytest.mark.parametrize("column,type_", [
    ("id", pa.float64()), ("id", pa.null()), ("id", pa.binary()), ("uri", pa.int64()), ("uri", pa.null()),
    ("media_type", pa.int32()), ("prompt", pa.int64()), ("prompt", pa.list_(pa.string())), ("prompt", pa.float32()),
    ("group", pa.int64()), ("group", pa.int32()), ("group", pa.bool_()), ("group", pa.dictionary(pa.int8(), pa.int64())),
], ids=str)
def test_other_types_are_refused_with_the_column_and_its_type_named(column, type_):
    with pytest.raises(ManifestError, match=rf"column '{column}' has type {type_} in part-3.parquet"):
        check_column_types(_schema(**{column: type_}), where="part-3.parquet")


@pytest.mark.parametrize("column", ["media_type", "prompt", "group"])
def test_optional_columns_may_be_all_null(column):
    check_column_types(_schema(**{column: pa.null()}), where="m.parquet")


def _config(manifest: Path, out: Path, model: str = "unused") -> JobConfig:
    return JobConfig(manifest=str(manifest), out=str(out), model=ModelConfig(model=model))


def test_every_file_of_a_manifest_is_checked(tmp_path):
    # a dataset's schema is its first file's: a wrong type in a later file is still found
    root = tmp_path / "manifest"
    root.mkdir()
    pq.write_table(pa.table({"id": ["a"], "uri": ["a.png"], "prompt": ["p"], "group": ["g"]}), root / "part-0.parquet")
    pq.write_table(pa.table({"id": ["b"], "uri": ["b.png"], "prompt": ["p"], "group": pa.array([2], pa.int64())}),
                   root / "part-1.parquet")
    with pytest.raises(ManifestError, match=r"column 'group' has type int64 in .*part-1\.parquet"):
        inspect_manifest(_config(root, tmp_path / "out"), resolve_checklists(["default"]))


@pytest.mark.parametrize("column,values", [("group", pa.array([2, 10], pa.int64())),
                                           ("prompt", pa.array([1.5, 2.5], pa.float64()))])
def test_a_job_with_a_bad_column_stops_before_any_work(tmp_path, capsys, column, values):
    # an integer group used to fail in the assembler, after the GPU work; a non-string prompt
    # in the scorer, outside its per-item error handling
    table = pa.table({"id": ["a", "b"], "uri": ["a.png", "b.png"], "prompt": ["p", "q"]})
    table = table.set_column(table.schema.get_field_index("prompt"), "prompt", values) if column == "prompt" \
        else table.append_column(column, values)
    pq.write_table(table, tmp_path / "m.parquet")
    out = tmp_path / "out"
    rc = vrscore_cli.main(["score", "--manifest", str(tmp_path / "m.parquet"), "--model", "unused",
                           "--out", str(out), "--quiet"])
    assert rc == 2
    assert f"column '{column}' has type {values.type}" in capsys.readouterr().err
    assert not out.exists()


# --- a job with integer ids, resumed -------------------------------------------------------

N_ROWS, ROWS_PER_FILE = 10, 2


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _ids(path: Path) -> list[str]:
    return pq.read_table(path, columns=["id"])["id"].to_pylist()


@pytest.mark.slow
@pytest.mark.usefixtures("ray_session")
def test_integer_ids_resume_after_a_crash_without_rescoring(tmp_path, demo_model_dir):
    ids = [-3, 0, 7, 10, 42, 99, 100, 1001, 2**40, 2**62][:N_ROWS]
    rows = [{"id": i, "uri": str(write_image(tmp_path / f"i{k}.png", size=(64, 48), seed=k)), "prompt": "p"}
            for k, i in enumerate(ids)]
    schema = pa.schema([("id", pa.int64()), ("uri", pa.string()), ("prompt", pa.string())])
    pq.write_table(pa.Table.from_pylist(rows, schema=schema), tmp_path / "m.parquet")
    out = tmp_path / "out"
    cfg = _config(tmp_path / "m.parquet", out, str(demo_model_dir)).model_copy(update={
        "decode": DecodeConfig(image_max_pixels=64 * 28 * 28),
        "resources": ResourcesConfig(batch_size=4, decode_batch_size=2, rows_per_file=ROWS_PER_FILE)})
    run_score_job(cfg, quiet=True)
    scores, ckpt = out / SCORES_DIR, out / CHECKPOINT_DIR
    committed = sorted(ckpt.glob("*.parquet"))
    assert len(committed) >= 3
    # The state a crash leaves: some files committed, the others never written. Drop the
    # commits (and data) of all but two files, as if the job had died after those two.
    kept = {}
    for c in committed:
        data = [p for p in scores.glob("*.parquet") if p.name.startswith(c.name.removesuffix(".parquet"))]
        assert len(data) == 1
        if len(kept) < 2:
            kept[data[0].name] = _sha(data[0])
        else:
            data[0].unlink()
            c.unlink()
    kept_ids = {i for name in kept for i in _ids(scores / name)}
    # Before the cast moved into the read, this rerun failed in Ray Data's checkpoint filter
    # comparing the output's string ids with the manifest's integers.
    summary = run_score_job(cfg, quiet=True)
    final = {p.name: p for p in scores.glob("*.parquet")}
    assert {n: _sha(final[n]) for n in kept} == kept  # committed files untouched
    new_ids = [i for n in set(final) - set(kept) for i in _ids(final[n])]
    assert sorted(new_ids) == sorted(set(map(str, ids)) - kept_ids)  # nothing rescored
    all_ids = [i for p in final.values() for i in _ids(p)]
    assert sorted(all_ids) == sorted(str(i) for i in ids)  # every row once, as its decimal string
    assert summary.rows == N_ROWS and summary.ok == N_ROWS
