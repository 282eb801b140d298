"""WebDataset tar shards as a manifest: ids from the sample keys, prompts from txt or json
members, the same p_yes as the same images from files, and a corrupt member or a truncated
tar as error rows while the rest of the shard is scored."""
from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from actors.synthetic_media import write_image
from jobs.score_job import run_score_job
from pipeline.output_dir import SCORES_DIR
from pipeline.webdataset_shards import expand_braces
from schemas import status
from schemas.job_config import DecodeConfig, JobConfig, ModelConfig, ResourcesConfig
from schemas.manifest import ManifestError
from tests.job_process import cli, job_env, ray_tmp, run_job  # noqa: F401  (fixture)
from tests.ray_fixtures import ray_session  # noqa: F401  (session fixture)
from tests.s3_fixtures import s3_endpoint  # noqa: F401  (fixture)

PROMPT = "a red fox in the snow"


def _tar(path: Path, members: list[tuple[str, bytes]]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    path.write_bytes(buf.getvalue())
    return buf.getvalue()


def _config(manifest: str, out: Path, model: Path, **kw) -> JobConfig:
    return JobConfig(manifest=manifest, out=str(out), model=ModelConfig(model=str(model)),
                     decode=DecodeConfig(frames="uniform:2", image_max_pixels=64 * 28 * 28),
                     resources=ResourcesConfig(batch_size=4, decode_batch_size=3, rows_per_file=2), **kw)


def test_brace_patterns():
    assert expand_braces("s/{00008..00010}.tar") == ["s/00008.tar", "s/00009.tar", "s/00010.tar"]
    assert expand_braces("{a,b}/{1..2}.tar") == ["a/1.tar", "a/2.tar", "b/1.tar", "b/2.tar"]
    assert expand_braces("plain.tar") == ["plain.tar"]


def test_shards_score_like_files_and_bad_members_are_rows(tmp_path, demo_model_dir):
    images = {f"s{k}": write_image(tmp_path / f"s{k}.png", size=(96 + 32 * k, 80), seed=k) for k in range(4)}
    pq.write_table(pa.table({"id": list(images), "uri": [str(p) for p in images.values()],
                             "prompt": [PROMPT] * 4}), tmp_path / "files.parquet")
    run_score_job(_config(str(tmp_path / "files.parquet"), tmp_path / "out_files", demo_model_dir), quiet=True)
    want = {r["id"]: r for r in pq.read_table(tmp_path / "out_files" / SCORES_DIR).to_pylist()}
    # Control: the model tells the images apart, by far more than the tolerance below.
    assert max(abs(a - b) for a, b in zip(want["s0"]["p_yes"], want["s1"]["p_yes"])) > 1e-3

    shards = tmp_path / "shards"
    shards.mkdir()
    meta = json.dumps({"caption": PROMPT}).encode()
    _tar(shards / "00000.tar", [("s0.png", images["s0"].read_bytes()), ("s0.json", meta),
                                ("s1.png", images["s1"].read_bytes()), ("s1.json", meta),
                                ("junk.png", b"not a png"), ("junk.json", meta),
                                ("nomedia.json", meta)])
    whole = _tar(shards / "00001.tar", [("s2.png", images["s2"].read_bytes()), ("s2.json", meta),
                                        ("s3.png", images["s3"].read_bytes()), ("s3.json", meta)])
    # Truncated inside s3's image: s2 is whole and scored, s3 is an error row.
    (shards / "00001.tar").write_bytes(whole[:512 * 3 + len(images["s2"].read_bytes()) + 1024])
    run_score_job(_config(str(shards / "{00000..00001}.tar"), tmp_path / "out_wds", demo_model_dir,
                          prompt_field="caption"), quiet=True)
    got = {r["id"]: r for r in pq.read_table(tmp_path / "out_wds" / SCORES_DIR).to_pylist()}
    assert sorted(got) == ["junk", "nomedia", "s0", "s1", "s2", "s3"]  # every sample once
    for k in ("s0", "s1", "s2"):
        # Not bit for bit: the error rows change which images share a padded batch (1e-7 noise).
        assert got[k]["status"] == status.OK and got[k]["p_yes"] == pytest.approx(want[k]["p_yes"], abs=1e-6), k
        assert got[k]["prompt"] == PROMPT and got[k]["uri"].endswith(f"{k}.png")
    assert got["junk"]["status"] == status.DECODE_ERROR
    assert got["nomedia"]["status"] == status.READ_ERROR and "no image or video member" in got["nomedia"]["error"]
    assert got["s3"]["status"] == status.READ_ERROR and "truncated" in got["s3"]["error"]
    # A pattern naming a shard that is not there is refused before any work, in one line.
    with pytest.raises(ManifestError, match="1 of the 3 shards"):
        run_score_job(_config(str(shards / "{00000..00002}.tar"), tmp_path / "out_missing", demo_model_dir),
                      quiet=True)


@pytest.mark.slow  # a job in a process of its own, with its own Ray
def test_shards_on_s3(tmp_path, demo_model_dir, s3_endpoint, ray_tmp):  # noqa: F811
    bucket = s3_endpoint.make_bucket()
    for shard in range(2):
        members = []
        for k in range(2):
            key = f"{shard:05d}{k:04d}"
            members += [(f"{key}.jpg", write_image(tmp_path / f"{key}.jpg", size=(96, 64), seed=k).read_bytes()),
                        (f"{key}.txt", b"a fox")]
        _tar(tmp_path / f"{shard:05d}.tar", members)
        s3_endpoint.upload(tmp_path / f"{shard:05d}.tar", f"s3://{bucket}/wds/{shard:05d}.tar")
    out = f"s3://{bucket}/out/wds"
    env = job_env(ray_tmp, s3_endpoint.profile_env(tmp_path, "vrscore-test"))
    proc = run_job(cli("score", "--manifest", f"s3://{bucket}/wds/{{00000..00001}}.tar", "--model", str(demo_model_dir),
                       "--out", out, "--endpoint-url", s3_endpoint.url, "--profile", "vrscore-test"), env)
    assert proc.returncode == 0, proc.stderr[-4000:]
    fs = s3_endpoint.filesystem()
    table = pa.concat_tables(pq.read_table(fs.open(f, "rb")) for f in fs.find(f"{bucket}/out/wds/scores")
                             if f.endswith(".parquet"))
    assert sorted(table["id"].to_pylist()) == ["000000000", "000000001", "000010000", "000010001"]
    assert set(table["status"].to_pylist()) == {status.OK} and set(table["prompt"].to_pylist()) == {"a fox"}


def test_media_extensions_choose_the_member(tmp_path):
    import fsspec

    from pipeline.webdataset_source import ShardReader
    from schemas.job_config import WEBDATASET_MEDIA_EXTENSIONS

    _tar(tmp_path / "0.tar", [("k.jpg", b"\xff\xd8\xffjpeg"), ("k.png", b"\x89PNG\r\n\x1a\npng"), ("k.txt", b"p")])
    fs = fsspec.filesystem("file")

    def chosen(extensions):
        reader = ShardReader(fs, str(tmp_path), None, list(extensions), 1 << 20)
        return [r["uri"] for t in reader.read(str(tmp_path / "0.tar")) for r in t.to_pylist()]

    assert chosen(WEBDATASET_MEDIA_EXTENSIONS) == ["0.tar/k.jpg"]
    assert chosen(["png", "jpg"]) == ["0.tar/k.png"]
    with pytest.raises(ValueError, match="media_extensions"):
        JobConfig(manifest="x.tar", out="o", model=ModelConfig(model="m"), media_extensions=["txt"])
