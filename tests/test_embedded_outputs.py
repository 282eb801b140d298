"""The same images scored from files, from a Parquet binary column, from `{bytes, path}` structs and
from WebDataset shards give identical p_yes (the same rows in the same order make the same
forward batches); and the commands that read scores (`filter`, `pairs`) work on the outputs of
manifests that held the media, whose rows have no uri (binary) or a `shard/key.ext` one."""
from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from actors.synthetic_media import write_image
from jobs.cli import main
from pipeline.output_dir import SCORES_DIR
from jobs.score_job import run_score_job
from schemas import status
from schemas.job_config import DecodeConfig, JobConfig, ModelConfig, ResourcesConfig
from tests.ray_fixtures import ray_session  # noqa: F401  (session fixture)

NAMES = [f"s{k}" for k in range(6)]
PROMPTS = ["a red fox in the snow", "a blue car"]  # two groups of three


def _config(manifest: str, out: Path, model: Path, **kw) -> JobConfig:
    return JobConfig(manifest=manifest, out=str(out), model=ModelConfig(model=str(model)),
                     decode=DecodeConfig(image_max_pixels=64 * 28 * 28),
                     resources=ResourcesConfig(batch_size=4, decode_batch_size=3, rows_per_file=2), **kw)


def _tar(path: Path, members: list[tuple[str, bytes]]) -> None:
    with tarfile.open(path, mode="w") as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


def _rows(out: Path) -> dict[str, dict]:
    rows = pq.read_table(out / SCORES_DIR).to_pylist()
    assert len({r["id"] for r in rows}) == len(rows)
    return {r["id"]: r for r in rows}


@pytest.fixture(scope="module")
def outputs(tmp_path_factory, demo_model_dir, ray_session) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("same_images")
    images = {n: write_image(d / f"{n}.{'jpg' if k % 2 else 'png'}", size=(96 + 16 * k, 80), seed=k)
              for k, n in enumerate(NAMES)}
    raw = {n: p.read_bytes() for n, p in images.items()}
    prompts = [PROMPTS[k // 3] for k in range(len(NAMES))]
    pq.write_table(pa.table({"id": NAMES, "uri": [str(p) for p in images.values()], "prompt": prompts}),
                   d / "files.parquet")
    pq.write_table(pa.table({"id": NAMES, "image": pa.array([raw[n] for n in NAMES], pa.binary()),
                             "prompt": prompts}), d / "binary.parquet", row_group_size=4)
    structs = pa.array([{"bytes": raw[n], "path": images[n].name} for n in NAMES],
                       pa.struct([("bytes", pa.large_binary()), ("path", pa.string())]))
    pq.write_table(pa.table({"key": NAMES, "picture": structs, "prompt": prompts}), d / "structs.parquet",
                   row_group_size=4)
    (d / "shards").mkdir()
    for shard, part in enumerate((NAMES[:4], NAMES[4:])):
        _tar(d / "shards" / f"{shard:05d}.tar",
             [m for n in part for m in ((images[n].name, raw[n]),
                                         (f"{n}.json", json.dumps({"caption": prompts[NAMES.index(n)],
                                                                   "group": f"g{NAMES.index(n) // 3}"}).encode()))])
    runs = {"files": (d / "files.parquet", {}), "binary": (d / "binary.parquet", {}),
            "structs": (d / "structs.parquet", {"media_column": "picture", "id_column": "key"}),
            "shards": (d / "shards", {"prompt_field": "caption"})}
    for name, (manifest, kw) in runs.items():
        run_score_job(_config(str(manifest), d / f"out_{name}", demo_model_dir, **kw), quiet=True)
    return {name: d / f"out_{name}" for name in runs}


def test_files_binary_structs_and_shards_give_identical_p_yes(outputs):
    want = _rows(outputs["files"])
    assert {r["status"] for r in want.values()} == {status.OK}
    # Control: the model tells the images apart, so equality below is not vacuous.
    assert len({tuple(r["p_yes"]) for r in want.values()}) == len(NAMES)
    for name in ("binary", "structs", "shards"):
        got = _rows(outputs[name])
        assert set(got) == set(NAMES), name
        for n in NAMES:
            assert got[n]["status"] == status.OK and got[n]["p_yes"] == want[n]["p_yes"], (name, n)
            assert got[n]["score"] == want[n]["score"] and got[n]["prompt"] == want[n]["prompt"], (name, n)
    assert {r["uri"] for r in _rows(outputs["binary"]).values()} == {None}
    assert _rows(outputs["shards"])["s4"]["uri"] == "00001.tar/s4.png"


@pytest.mark.parametrize("name", ["binary", "shards"])
def test_filter_and_pairs_read_outputs_of_manifests_that_held_the_media(outputs, tmp_path, name):
    rows = _rows(outputs[name])
    cut = sorted(r["score"] for r in rows.values())[len(rows) // 2]
    assert main(["filter", "--scores", str(outputs[name]), "--where", f"score >= {cut!r}", "--out",
                 str(tmp_path / "kept"), "--quiet"]) == 0
    kept = pq.read_table(tmp_path / "kept" / "scores").to_pylist()
    assert sorted(r["id"] for r in kept) == sorted(i for i, r in rows.items() if r["score"] >= cut)
    assert all(r["uri"] == rows[r["id"]]["uri"] and r["p_yes"] == rows[r["id"]]["p_yes"] for r in kept)

    assert main(["pairs", "--scores", str(outputs[name]), "--strategy", "margin", "--out", str(tmp_path / "pairs"),
                 "--quiet"]) == 0
    pairs = pq.read_table(tmp_path / "pairs" / "pairs").to_pylist()
    # margin: the best against the worst of each group (the prompt, or the shards' json 'group')
    groups: dict[str, list[dict]] = {}
    for r in rows.values():
        groups.setdefault(r["group"], []).append(r)
    assert len(groups) == 2 and len(pairs) == 2
    for p in pairs:
        members = groups[p["group"]]
        assert p["chosen_id"] == max(members, key=lambda r: r["score"])["id"]
        assert p["rejected_id"] == min(members, key=lambda r: r["score"])["id"]
        assert p["chosen_uri"] == rows[p["chosen_id"]]["uri"]
