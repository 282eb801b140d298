"""`vrscore rescore --normalize-from REF_OUT`: each checklist's score and dimension moments over the
reference's ok rows, computed in the cluster, stored in the written checklist, and z-scores equal to
(value - mean) / std recomputed here with numpy; `score`'s assembler and a plain rescore with the
stored checklist write the same z-scores; a constant reference, another checklist and another
model are refused in one line."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from jobs.cli import main
from pipeline.assemble import ScoreAssembler
from pipeline.weighting import aggregate
from schemas import status
from schemas.checklist import Checklist, dimension_column
from schemas.checklist_set import all_dimensions, checklists_from_json, checklists_to_json
from schemas.scores import scores_schema
from tests.ray_fixtures import ray_session  # noqa: F401 - fixture
from tests.scores_fixtures import CHECKLISTS, random_rows, write_scores


def _rows(seed: int, error_rate: float = 0.2) -> list[dict]:
    rng = np.random.default_rng(seed)
    return (random_rows(rng, 4, (3, 5), error_rate=error_rate, prefix=f"s{seed}i")
            + random_rows(rng, 3, (3, 4), media_type="video", error_rate=error_rate, prefix=f"s{seed}v"))


@pytest.fixture(scope="module")
def outputs(tmp_path_factory) -> dict[str, Path]:
    tmp = tmp_path_factory.mktemp("normalize")
    return {"scores": write_scores(tmp / "scores", _rows(1)), "ref": write_scores(tmp / "ref", _rows(2), files=3),
            "ref2": write_scores(tmp / "ref2", _rows(3))}


def _ok(out: Path, kind: str) -> list[dict]:
    rows = pq.read_table(out / "scores").sort_by("id").to_pylist()
    return [r for r in rows if r["status"] == status.OK and r["media_type"] == kind]


def _expected_moments(ref: Path, checklist: Checklist, kind: str) -> dict[str, tuple[float, float]]:
    """Recomputed here: the reference's p_yes aggregated with `checklist`, then numpy's mean/std."""
    p = np.array([r["p_yes"] for r in _ok(ref, kind)], dtype=np.float64)
    agg = aggregate(checklist, p)
    cols = {"score": agg.score, **{dimension_column(d): v for d, v in agg.dimensions.items()}}
    return {c: (float(np.mean(v)), float(np.std(v))) for c, v in cols.items()}


def _check_z(out: Path, moments: dict[str, dict[str, tuple[float, float]]]) -> None:
    for kind, by_col in moments.items():
        rows = _ok(out, kind)
        assert rows
        for col, (mean, std) in by_col.items():
            got = np.array([r[f"z_{col}"] for r in rows])
            assert got == pytest.approx((np.array([r[col] for r in rows]) - mean) / std, rel=1e-9, abs=1e-9)
    failed = [r for r in pq.read_table(out / "scores").to_pylist() if r["status"] != status.OK]
    assert failed and all(r["z_score"] is None for r in failed)


def test_normalize_from_stores_the_reference_moments_and_writes_z_scores(outputs, tmp_path, ray_session):
    assert main(["rescore", "--scores", str(outputs["scores"]), "--normalize-from", str(outputs["ref"]),
                 "--out", str(tmp_path / "z"), "--quiet"]) == 0
    written = checklists_from_json((tmp_path / "z" / "checklist.json").read_text())
    moments = {}
    for kind in ("image", "video"):
        expected = _expected_moments(outputs["ref"], CHECKLISTS[kind], kind)
        norm = written[kind].aggregation.normalization
        assert norm.rows == len(_ok(outputs["ref"], kind)) and norm.reference.endswith("ref/scores")
        got = {"score": norm.score, **{dimension_column(d): m for d, m in norm.dims.items()}}
        assert sorted(got) == sorted(expected)
        for c, m in got.items():
            assert (m.mean, m.std) == pytest.approx(expected[c], rel=1e-12, abs=1e-15), c
        moments[kind] = expected
    _check_z(tmp_path / "z", moments)
    record = json.loads((tmp_path / "z" / "rescore.json").read_text())
    assert record["normalize_from"].endswith("ref/scores") and record["normalization"]["image"]["rows"] > 1

    # negative control: another reference set gives other z-scores for the same rows
    assert main(["rescore", "--scores", str(outputs["scores"]), "--normalize-from", str(outputs["ref2"]),
                 "--out", str(tmp_path / "z2"), "--quiet"]) == 0
    z1 = [r["z_score"] for r in _ok(tmp_path / "z", "image")]
    z2 = [r["z_score"] for r in _ok(tmp_path / "z2", "image")]
    assert not np.allclose(z1, z2)

    # a plain rescore with the stored (normalised) checklists gives back the z-scores bit for bit
    specs = []
    for kind, checklist in json.loads((tmp_path / "z" / "checklist.json").read_text()).items():
        (tmp_path / f"{kind}.json").write_text(json.dumps(checklist))
        specs += ["--checklist", str(tmp_path / f"{kind}.json")]
    assert main(["rescore", "--scores", str(tmp_path / "z"), *specs, "--out", str(tmp_path / "again"), "--quiet"]) == 0
    assert pq.read_table(tmp_path / "again" / "scores").sort_by("id").select(["id", "z_score", "z_dim_quality"]) == \
        pq.read_table(tmp_path / "z" / "scores").sort_by("id").select(["id", "z_score", "z_dim_quality"])


def test_new_weights_are_normalised_over_the_reference_rescored_with_them(outputs, tmp_path, ray_session):
    data = json.loads(CHECKLISTS["image"].to_json())
    data["name"] = "reweighted"
    data["questions"] = [dict(q, weight=float(1 + k % 4)) for k, q in enumerate(data["questions"])]
    (tmp_path / "i.yaml").write_text(yaml.safe_dump(data))
    new = Checklist.model_validate(data)
    assert main(["rescore", "--scores", str(outputs["scores"]), "--checklist", str(tmp_path / "i.yaml"),
                 "--normalize-from", str(outputs["ref"]), "--out", str(tmp_path / "z"), "--quiet"]) == 0
    norm = checklists_from_json((tmp_path / "z" / "checklist.json").read_text())["image"].aggregation.normalization
    expected = _expected_moments(outputs["ref"], new, "image")
    assert (norm.score.mean, norm.score.std) == pytest.approx(expected["score"], rel=1e-12)
    # negative control: the reference's stored scores (old weights) have other moments
    stored = np.array([r["score"] for r in _ok(outputs["ref"], "image")])
    assert not np.isclose(norm.score.std, np.std(stored))
    _check_z(tmp_path / "z", {"image": expected})


def test_score_writes_z_scores_with_a_normalised_checklist(outputs, tmp_path, ray_session):
    assert main(["rescore", "--scores", str(outputs["scores"]), "--normalize-from", str(outputs["ref"]),
                 "--out", str(tmp_path / "z"), "--quiet"]) == 0
    checklists = checklists_from_json((tmp_path / "z" / "checklist.json").read_text())
    schema = scores_schema(all_dimensions(checklists), checklists_json=checklists_to_json(checklists),
                           normalized=True)
    rows = _ok(outputs["scores"], "image")[:3]
    batch = {k: np.array([r[k] for r in rows], dtype=object) for k in ("id", "uri", "media_type", "prompt", "group",
                                                                       "status", "error")}
    for k in ("p_yes", "answer_mass"):
        batch[k] = np.array([np.asarray(r[k], np.float32).tobytes() for r in rows], dtype=object)
    table = ScoreAssembler(checklists, schema)(batch).to_pylist()
    expected = {r["id"]: r for r in _ok(tmp_path / "z", "image")}
    assert [t["z_score"] for t in table] == [expected[t["id"]]["z_score"] for t in table]
    assert [t["z_dim_quality"] for t in table] == [expected[t["id"]]["z_dim_quality"] for t in table]


def test_refusals(outputs, tmp_path, ray_session, capsys):
    flat = [dict(r, p_yes=np.full(len(r["p_yes"]), 0.3, np.float32)) if r["p_yes"] is not None else r
            for r in _rows(4)]
    write_scores(tmp_path / "flat", flat)
    assert main(["rescore", "--scores", str(outputs["scores"]), "--normalize-from", str(tmp_path / "flat"),
                 "--out", str(tmp_path / "a"), "--quiet"]) == 2
    assert "standard deviation" in capsys.readouterr().err

    other = json.loads(CHECKLISTS["image"].to_json())
    other["questions"][0]["text"] = "Is this a completely different question?"
    (tmp_path / "other.yaml").write_text(yaml.safe_dump(other))
    assert main(["rescore", "--scores", str(outputs["ref"]), "--checklist", str(tmp_path / "other.yaml"),
                 "--out", str(tmp_path / "other"), "--quiet"]) == 2  # a question the reference never answered
    table = pq.read_table(outputs["ref"] / "scores")
    meta = dict(table.schema.metadata)
    meta[b"vrscore.checklists"] = json.dumps({"image": other, "video": json.loads(CHECKLISTS["video"].to_json())})
    (tmp_path / "o" / "scores").mkdir(parents=True)
    pq.write_table(table.replace_schema_metadata(meta), tmp_path / "o" / "scores" / "part-0.parquet")
    capsys.readouterr()
    assert main(["rescore", "--scores", str(outputs["scores"]), "--normalize-from", str(tmp_path / "o"),
                 "--out", str(tmp_path / "b"), "--quiet"]) == 2
    assert "another checklist" in capsys.readouterr().err

    meta = {**table.schema.metadata, b"vrscore.model": b"another-model"}
    (tmp_path / "m" / "scores").mkdir(parents=True)
    pq.write_table(table.replace_schema_metadata(meta), tmp_path / "m" / "scores" / "part-0.parquet")
    assert main(["rescore", "--scores", str(outputs["scores"]), "--normalize-from", str(tmp_path / "m"),
                 "--out", str(tmp_path / "c"), "--quiet"]) == 2
    assert "another-model" in capsys.readouterr().err
    assert not (tmp_path / "c").exists() and not (tmp_path / "b" / "scores").exists()
    assert main(["rescore", "--scores", str(outputs["scores"]), "--out", str(tmp_path / "d"), "--quiet"]) == 2
    assert "--normalize-from" in capsys.readouterr().err
