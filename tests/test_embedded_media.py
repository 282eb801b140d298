"""Manifests that hold the media bytes (a binary column, or Hugging Face's {bytes, path} struct),
scored end to end on a local Ray: the same p_yes as from files, bad bytes as error rows, ids
from file and row number, and a resume that writes every row once."""
from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from actors.synthetic_media import write_image, write_video
from pipeline.output_dir import CHECKPOINT_DIR, JOB_FILE, SCORES_DIR
from jobs.score_job import run_score_job
from schemas import status
from schemas.embedded_media import media_column, sniff_media_type
from schemas.job_config import GENERATED_IDS, DecodeConfig, JobConfig, ModelConfig, ResourcesConfig
from schemas.manifest import ManifestError
from tests.job_process import cli, job_env, ray_tmp, run_job  # noqa: F401  (fixture)
from tests.ray_fixtures import ray_session  # noqa: F401  (session fixture)
from tests.s3_fixtures import s3_endpoint  # noqa: F401  (fixture)

PROMPT = "a red fox in the snow"


@pytest.fixture(scope="module")
def media(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("embedded_media")
    files = {f"img{k}": write_image(d / f"img{k}.{ext}", size=(96 + 32 * k, 80), seed=k)
             for k, ext in enumerate(["png", "jpg", "webp", "png"])}
    files["vid"] = write_video(d / "vid.mp4", n_frames=12, size=(96, 64), fps=8, seed=9)
    return files


def _config(manifest: Path, out: Path, model: Path, **kw) -> JobConfig:
    return JobConfig(manifest=str(manifest), out=str(out), model=ModelConfig(model=str(model)),
                     decode=DecodeConfig(frames="uniform:2", image_max_pixels=64 * 28 * 28,
                                         video_max_pixels=32 * 28 * 28),
                     resources=ResourcesConfig(batch_size=4, decode_batch_size=3, rows_per_file=2), **kw)


def _scores(out: Path) -> dict[str, dict]:
    rows = pq.read_table(out / SCORES_DIR).to_pylist()
    assert len({r["id"] for r in rows}) == len(rows)  # every row once
    return {r["id"]: r for r in rows}


def test_media_column_detection():
    binary = pa.schema([("id", pa.string()), ("image", pa.binary())])
    assert media_column(binary, None) == ("image", "binary", False)
    hf = pa.schema([("video", pa.struct([("bytes", pa.large_binary()), ("path", pa.string())]))])
    assert media_column(hf, None) == ("video", "struct", True)
    assert media_column(pa.schema([("id", pa.string()), ("uri", pa.string()), ("image", pa.binary())]), None) is None
    with pytest.raises(ManifestError, match="must be binary"):
        media_column(pa.schema([("image", pa.string())]), None)
    with pytest.raises(ManifestError, match="not in the manifest"):
        media_column(binary, "jpg")


def test_sniffed_media_types(media):
    assert [sniff_media_type(media[k].read_bytes()) for k in ("img0", "img1", "img2", "vid")] == \
        ["image", "image", "image", "video"]
    assert sniff_media_type(b"not media at all") is None


def test_embedded_media_scores_equal_files_and_bad_bytes_are_rows(media, tmp_path, demo_model_dir):
    names = ["img0", "img1", "img2", "img3", "vid"]
    raw = {n: media[n].read_bytes() for n in names}
    files = pa.table({"id": names, "uri": [str(media[n]) for n in names], "prompt": [PROMPT] * 5})
    pq.write_table(files, tmp_path / "files.parquet")
    run_score_job(_config(tmp_path / "files.parquet", tmp_path / "out_files", demo_model_dir), quiet=True)
    want = _scores(tmp_path / "out_files")
    assert {r["status"] for r in want.values()} == {status.OK}
    # Control: the images are told apart by the model, so equal p_yes below is not vacuous.
    assert want["img0"]["p_yes"] != want["img1"]["p_yes"]

    # A binary column named 'image' (no uri): media_type from the column name; the video says so itself.
    bad = {"garbage": b"not an image at all", "truncated": raw["img0"][:200], "empty": b"", "null": None}
    ids = names + list(bad)
    binary = pa.table({"id": ids, "image": pa.array([raw.get(i, bad.get(i)) for i in ids], pa.binary()),
                       "media_type": ["image"] * 4 + ["video"] + [None] * 4, "prompt": [PROMPT] * len(ids)})
    pq.write_table(binary, tmp_path / "binary.parquet", row_group_size=3)
    run_score_job(_config(tmp_path / "binary.parquet", tmp_path / "out_binary", demo_model_dir), quiet=True)
    got = _scores(tmp_path / "out_binary")
    assert set(got) == set(ids)  # nothing lost
    for n in names:
        assert got[n]["status"] == status.OK and got[n]["p_yes"] == want[n]["p_yes"], n
        assert got[n]["uri"] is None
    assert got["vid"]["frame_times"] == want["vid"]["frame_times"] and got["vid"]["frame_count"] == 2
    assert {i: got[i]["status"] for i in bad} == {"garbage": status.DECODE_ERROR, "truncated": status.DECODE_ERROR,
                                                  "empty": status.EMPTY_FILE, "null": status.INVALID_ROW}
    # The bytes never reach the scores.
    assert not any(t == pa.binary() or t == pa.large_binary() for t in pq.read_schema(
        next((tmp_path / "out_binary" / SCORES_DIR).glob("*.parquet"))).types)

    # {bytes, path} structs in a column named by --media-column, no id column: ids from file and row,
    # media_type from the path (the video's path) or the bytes (a path with no extension).
    paths = [str(media[n]) for n in names[:4]] + ["clips/vid.mp4"]
    paths[3] = "no_extension"
    structs = pa.array([{"bytes": raw[n], "path": p} for n, p in zip(names, paths)],
                       pa.struct([("bytes", pa.binary()), ("path", pa.string())]))
    folder = tmp_path / "hf"
    folder.mkdir()
    pq.write_table(pa.table({"picture": structs, "prompt": [PROMPT] * 5}), folder / "train-0.parquet",
                   row_group_size=2)
    cfg = _config(folder, tmp_path / "out_hf", demo_model_dir, media_column="picture")
    run_score_job(cfg, quiet=True)
    hf = _scores(tmp_path / "out_hf")
    assert sorted(hf) == [f"train-0.parquet#{k}" for k in range(5)]
    for k, n in enumerate(names):
        row = hf[f"train-0.parquet#{k}"]
        assert row["status"] == status.OK and row["p_yes"] == want[n]["p_yes"] and row["uri"] == paths[k], n
    job = json.loads((tmp_path / "out_hf" / JOB_FILE).read_text())
    assert job["id_column"] == GENERATED_IDS and job["media_column"] == "picture"

    # Resume: an output file and its commit lost (as after a kill), the same job run again
    # scores exactly the rows that were lost, each once.
    checkpoints = sorted((tmp_path / "out_hf" / CHECKPOINT_DIR).glob("*.parquet"))
    lost = checkpoints[0]
    lost_ids = set(pq.read_table(lost).column(0).to_pylist())
    base = lost.name[:-len(".parquet")]
    data = [p for p in (tmp_path / "out_hf" / SCORES_DIR).glob("*.parquet") if p.name.startswith(base)]
    assert lost_ids and data
    for p in [lost, *data]:
        p.unlink()
    kept = set(_scores(tmp_path / "out_hf"))
    assert kept.isdisjoint(lost_ids)
    run_score_job(cfg, quiet=True)
    again = _scores(tmp_path / "out_hf")
    assert set(again) == set(hf)
    # The lost rows are scored again in a forward batch of their own (a file holds rows_per_file
    # rows, fewer than a scorer batch): equal to float rounding, not bit for bit.
    for i in lost_ids:
        assert again[i]["p_yes"] == pytest.approx(hf[i]["p_yes"], abs=1e-6), i


def test_read_blocks_are_sized_by_bytes_and_ids_come_from_the_named_column(tmp_path):
    from pipeline.embedded_source import EmbeddedParquetSource
    from pipeline.manifest_files import open_manifest
    from schemas.embedded_media import MediaColumn
    from schemas.job_config import StorageConfig

    sizes = [300, 300, 300, 900, 100, 100, 100]
    table = pa.table({"key": [f"k{i}" for i in range(7)], "image": [b"\x89PNG\r\n\x1a\n" + bytes(s - 8) for s in sizes]})
    pq.write_table(table, tmp_path / "m.parquet", row_group_size=5)
    files = open_manifest(str(tmp_path / "m.parquet"), StorageConfig()).files  # footers read once, here
    source = EmbeddedParquetSource(files, None,
                                   MediaColumn("image", "binary", False), "key", [], block_bytes=650)
    tasks = source.get_read_tasks(1)
    assert [t.metadata.num_rows for t in tasks] == [5, 2]  # a task per row group
    blocks = [b for t in tasks for b in t()]
    # At most 650 bytes of media per block, a larger item alone; no row lost or repeated.
    assert [b.num_rows for b in blocks] == [2, 1, 1, 1, 2]
    assert sum((b["id"].to_pylist() for b in blocks), []) == [f"k{i}" for i in range(7)]
    assert all(b["uri"].null_count == b.num_rows and set(b["media_type"].to_pylist()) == {"image"} for b in blocks)
    # Control: generated ids number the rows across row groups.
    generated = EmbeddedParquetSource(files, None,
                                      MediaColumn("image", "binary", False), GENERATED_IDS, [], block_bytes=650)
    assert [i for t in generated.get_read_tasks(1) for b in t() for i in b["id"].to_pylist()] == \
        [f"m.parquet#{k}" for k in range(7)]


@pytest.mark.slow  # a job in a process of its own, with its own Ray
def test_embedded_manifest_on_s3(tmp_path, demo_model_dir, s3_endpoint, ray_tmp):  # noqa: F811
    """A folder of shards on S3: read by the workers through the job's storage options."""
    bucket = s3_endpoint.make_bucket()
    raw = [write_image(tmp_path / f"{k}.png", size=(96, 64), seed=k).read_bytes() for k in range(3)]
    for shard, rows in enumerate([raw[:2], raw[2:]]):
        pq.write_table(pa.table({"image": pa.array(rows, pa.binary()), "prompt": ["a fox"] * len(rows)}),
                       tmp_path / f"train-{shard}.parquet")
        s3_endpoint.upload(tmp_path / f"train-{shard}.parquet", f"s3://{bucket}/hf/train-{shard}.parquet")
    out = f"s3://{bucket}/out/hf"
    env = job_env(ray_tmp, s3_endpoint.profile_env(tmp_path, "vrscore-test"))
    proc = run_job(cli("score", "--manifest", f"s3://{bucket}/hf", "--model", str(demo_model_dir), "--out", out,
                       "--endpoint-url", s3_endpoint.url, "--profile", "vrscore-test"), env)
    assert proc.returncode == 0, proc.stderr[-4000:]
    fs = s3_endpoint.filesystem()
    table = pa.concat_tables(pq.read_table(fs.open(f, "rb")) for f in fs.find(f"{bucket}/out/hf/scores")
                             if f.endswith(".parquet"))
    assert sorted(table["id"].to_pylist()) == ["train-0.parquet#0", "train-0.parquet#1", "train-1.parquet#0"]
    assert set(table["status"].to_pylist()) == {status.OK}
