"""`vrscore judge` over every kind of manifest `score` reads: the same pictures as URI files, as
`{bytes, path}` structs in Parquet (two files, several row groups each; its columns named by
the CLI's --media-column and --id-column) and as WebDataset shards
(json `group`, txt prompt) give identical pairs and identical judgements, pairs scheduled from
the groups in each. Negative control: the same Parquet with two items' bytes swapped changes
exactly their pairs; a corrupt item's pairs are error rows there. A plan written before the
places were recorded (a URI manifest) still resumes. One module fixture judges each manifest once."""
from __future__ import annotations

import io
import json
import shutil
import tarfile
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from actors.synthetic_media import write_image
from jobs.cli import main
from jobs.judge_job import PLAN_DIR, PLAN_FILE, JudgeOptions, run_judge_job
from pipeline.output_dir import CHECKPOINT_DIR
from schemas.job_config import JobConfig, ModelConfig, ResourcesConfig
from schemas.judge_output import PAIRS_DIR
from tests.job_process import REPO
from tests.ray_fixtures import ray_session  # noqa: F401  (session fixture)

pytestmark = pytest.mark.slow  # four judge jobs and a resumed one
CHECKLIST = REPO / "schemas" / "checklists" / "image_pair_rank.yaml"
GROUPS = {"g0": ["g0_a", "g0_b", "g0_c"], "g1": ["g1_a", "g1_b", "g1_c", "g1_d"]}
PROMPTS = {"g0": "a red fox in the snow", "g1": "a lighthouse at dusk"}
SWAPPED = ("g0_a", "g0_b")
STRUCT = pa.struct([("bytes", pa.binary()), ("path", pa.string())])


def _config(manifest: str, out: Path, model: Path) -> JobConfig:
    return JobConfig(manifest=manifest, checklist=[str(CHECKLIST)], out=str(out), model=ModelConfig(model=str(model)),
                     resources=ResourcesConfig(rows_per_file=4))


def _rows(pictures: dict[str, bytes]) -> list[dict]:
    return [{"id": key, "group": g, "prompt": PROMPTS[g], "data": pictures[key]} for g, keys in GROUPS.items()
            for key in keys]


def _embedded(root: Path, rows: list[dict]) -> str:
    """Two files (g0 and one g1 item, the rest of g1), row groups of 2 rows: a group spans files."""
    root.mkdir()
    table = pa.table({"key": [r["id"] for r in rows], "group": [r["group"] for r in rows],
                      "prompt": [r["prompt"] for r in rows],  # media_type from the struct's path
                      "picture": pa.array([{"bytes": r["data"], "path": f"{r['id']}.png"} for r in rows], STRUCT)})
    pq.write_table(table.slice(0, 4), root / "part-0.parquet", row_group_size=2)
    pq.write_table(table.slice(4), root / "part-1.parquet", row_group_size=2)
    return str(root)


def _shards(root: Path, rows: list[dict]) -> str:
    root.mkdir()
    for k, part in enumerate((rows[:3], rows[3:])):
        with tarfile.open(root / f"{k:05d}.tar", mode="w") as tar:
            for r in part:
                for name, data in ((f"{r['id']}.png", r["data"]), (f"{r['id']}.txt", r["prompt"].encode()),
                                   (f"{r['id']}.json", json.dumps({"group": r["group"]}).encode())):
                    info = tarfile.TarInfo(name)
                    info.size = len(data)
                    tar.addfile(info, io.BytesIO(data))
    return str(root / "{00000..00001}.tar")


def _pairs(out: Path) -> dict[str, dict]:
    return {r["id"]: r for r in pq.read_table(out / PAIRS_DIR).to_pylist()}


@pytest.fixture(scope="module")
def judged(tmp_path_factory, demo_model_dir, ray_session) -> dict[str, Path]:  # noqa: F811
    tmp = tmp_path_factory.mktemp("judge_sources")
    files = {key: write_image(tmp / f"{key}.png", size=(48 + 8 * k, 40), seed=k)
             for k, key in enumerate(k for keys in GROUPS.values() for k in keys)}
    pictures = {key: p.read_bytes() for key, p in files.items()}
    rows = _rows(pictures)
    pq.write_table(pa.Table.from_pylist([{"id": r["id"], "uri": str(files[r["id"]]), "group": r["group"],
                                          "prompt": r["prompt"]} for r in rows]), tmp / "uri.parquet")
    swapped = {**pictures, SWAPPED[0]: pictures[SWAPPED[1]], SWAPPED[1]: pictures[SWAPPED[0]]}
    controls = _rows(swapped) + [{"id": "g1_bad", "group": "g1", "prompt": PROMPTS["g1"],
                                  "data": pictures["g1_a"][:60]}]  # a truncated PNG
    manifests = {"uri": str(tmp / "uri.parquet"), "embedded": _embedded(tmp / "embedded", rows),
                 "webdataset": _shards(tmp / "shards", rows), "control": _embedded(tmp / "control", controls)}
    outs = {kind: tmp / f"out_{kind}" for kind in manifests}
    for kind in ("uri", "webdataset"):
        run_judge_job(_config(manifests[kind], outs[kind], demo_model_dir), JudgeOptions(), quiet=True)
    for kind in ("embedded", "control"):  # through the CLI: its flags name the columns
        assert main(["judge", "--manifest", manifests[kind], "--media-column", "picture", "--id-column", "key",
                     "--model", str(demo_model_dir), "--checklist", str(CHECKLIST), "--out", str(outs[kind]),
                     "--set", "resources.rows_per_file=4", "--quiet", "--max-error-fraction", "1"]) == 0
    outs["model"] = demo_model_dir
    return outs


def _judgement(row: dict) -> tuple:
    return row["a"], row["b"], row["group"], row["prompt"], row["status"], row["p_first_ab"], row["p_first_ba"], \
        row["p_a"], row["pair_score"]


def test_media_in_the_manifest_is_judged_as_from_files(judged):
    want = _pairs(judged["uri"])
    assert len(want) == 3 + 6 and {r["status"] for r in want.values()} == {"ok"}  # every pair of each group
    for kind in ("embedded", "webdataset"):
        got = _pairs(judged[kind])
        assert {k: _judgement(r) for k, r in got.items()} == {k: _judgement(r) for k, r in want.items()}, kind


def test_swapped_bytes_change_exactly_their_pairs_and_a_corrupt_item_is_an_error_row(judged):
    want, got = _pairs(judged["uri"]), _pairs(judged["control"])
    bad = {k: r for k, r in got.items() if "g1_bad" in (r["a"], r["b"])}
    assert len(bad) == len(GROUPS["g1"])
    assert all(r["status"] == "decode_error" and "g1_bad" in r["error"] and r["p_a"] is None for r in bad.values())
    assert set(got) - set(bad) == set(want)
    for key, row in want.items():
        touched = bool({row["a"], row["b"]} & set(SWAPPED))
        if row["a"] in SWAPPED and row["b"] in SWAPPED:  # the pair itself, in the other order: p_a mirrors
            assert got[key]["p_first_ab"] == row["p_first_ba"] and got[key]["p_first_ba"] == row["p_first_ab"]
        elif touched:
            assert abs(got[key]["p_a"][0] - row["p_a"][0]) > 1e-4, key
        else:
            assert _judgement(got[key]) == _judgement(row), key


def test_plans_without_places_still_resume(judged, tmp_path):
    """A URI job whose plan predates the place columns: its pairs are judged as before."""
    out = tmp_path / "old"
    shutil.copytree(judged["uri"], out, ignore=shutil.ignore_patterns(PAIRS_DIR, CHECKPOINT_DIR, "items"))
    plan = pq.read_table(out / PLAN_DIR / PLAN_FILE)
    old = plan.drop_columns([c for c in plan.column_names if c.endswith(("_file", "_row_group"))])
    assert old.num_columns == plan.num_columns - 4
    pq.write_table(old, out / PLAN_DIR / PLAN_FILE)
    cfg = _config(json.loads((out / "job.json").read_text())["manifest"], out, judged["model"])
    summary = run_judge_job(cfg, JudgeOptions(), quiet=True)
    assert summary.ok == summary.pairs == 9
    want = {k: _judgement(r) for k, r in _pairs(judged["uri"]).items()}
    assert {k: _judgement(r) for k, r in _pairs(out).items()} == want
