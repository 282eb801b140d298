"""The downstream commands read the columns of rating questions, calibrated and normalised checklists:
`filter` on z_score, a rating's level probability (`l.<id>["<level>"]`) and a calibrated question's
p_cal (`c.<id>`, no value for an uncalibrated one), `pairs --score-column
z_score`, `eval`'s z measures, the report's rating section and z histograms, the Python API's
level_probs and z-scores. The scores are assembled by the pipeline's own ScoreAssembler from
made-up answers; each figure is recomputed here."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from jobs.cli import main
from jobs.reward_api import _item
from pipeline.assemble import ScoreAssembler
from pipeline.report_stats import batch_partial, level_means, merge
from schemas import status
from schemas.checklist import Checklist
from schemas.checklist_set import checklists_to_json
from schemas.scores import scores_schema
from tests.ray_fixtures import ray_session  # noqa: F401 - fixture

LEVELS = ["bad", "poor", "fair", "good", "excellent"]
CHECKLIST = Checklist.model_validate({
    "name": "rated", "media_type": "image",
    "questions": [{"id": "sharp", "text": "Is it sharp?", "dimension": "quality",
                   "calibration": {"method": "platt", "a": 2.0, "b": 0.5}},
                  {"id": "bright", "text": "Is it bright?", "dimension": "quality", "weight": 0.5},
                  {"id": "overall", "text": "How good is it?", "dimension": "overall", "answer": "rating",
                   "levels": LEVELS}],
    "aggregation": {"rule": "mean", "normalization": {
        "score": {"mean": 0.1, "std": 0.4}, "dims": {"quality": {"mean": -0.2, "std": 0.8},
                                                     "overall": {"mean": 0.3, "std": 0.25}},
        "reference": "/ref/scores", "rows": 100}}})
CHECKLISTS = {"image": CHECKLIST}


def _table(n: int = 40, seed: int = 0) -> pa.Table:
    rng = np.random.default_rng(seed)
    schema = scores_schema(CHECKLIST.dimensions, checklists_json=checklists_to_json(CHECKLISTS), model_id="made-up",
                           level_probs=True, normalized=True, p_cal=True)
    levels = rng.dirichlet(np.ones(5), n).astype(np.float32)
    p = np.column_stack([rng.random((n, 2)), levels @ np.linspace(0, 1, 5)]).astype(np.float32)
    failed = np.arange(n) % 7 == 3
    batch = {"id": np.array([f"i{k:02d}" for k in range(n)], dtype=object),
             "uri": np.array([f"/m/{k}.png" for k in range(n)], dtype=object),
             "media_type": np.array(["image"] * n, dtype=object),
             "prompt": np.array([f"prompt {k % 4}" for k in range(n)], dtype=object),
             "group": np.array([f"g{k % 4}" for k in range(n)], dtype=object),
             "status": np.array([status.DECODE_ERROR if f else status.OK for f in failed], dtype=object),
             "error": np.array(["made up" if f else None for f in failed], dtype=object)}
    for name, values in (("p_yes", p), ("answer_mass", np.ones_like(p)), ("level_probs", levels)):
        batch[name] = np.array([b"" if f else v.tobytes() for f, v in zip(failed, values)], dtype=object)
    return ScoreAssembler(CHECKLISTS, schema)(batch)


@pytest.fixture(scope="module")
def scores(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("rated") / "out"
    (out / "scores").mkdir(parents=True)
    (out / "checklist.json").write_text(checklists_to_json(CHECKLISTS))
    table = _table()
    pq.write_table(table.slice(0, 20), out / "scores" / "a.parquet")
    pq.write_table(table.slice(20), out / "scores" / "b.parquet")
    return out


def _ok_rows() -> list[dict]:
    return [r for r in _table().to_pylist() if r["status"] == status.OK]


def test_assembled_z_scores_and_levels():
    for r in _ok_rows():
        assert r["z_score"] == pytest.approx((r["score"] - 0.1) / 0.4)
        assert r["z_dim_overall"] == pytest.approx((r["dim_overall"] - 0.3) / 0.25)
        assert r["level_probs"][:2] == [None, None] and len(r["level_probs"][2]) == 5


def test_filter_on_z_score_and_a_level_probability(scores, tmp_path, ray_session, capsys):
    where = 'z_score > 0 and l.overall["excellent"] >= 0.2'
    assert main(["filter", "--scores", str(scores), "--where", where, "--out", str(tmp_path / "f"), "--quiet"]) == 0
    kept = sorted(pq.read_table(tmp_path / "f" / "scores")["id"].to_pylist())
    expected = sorted(r["id"] for r in _ok_rows() if r["z_score"] > 0
                      and float(np.float32(r["level_probs"][2][4]).astype(str)) >= 0.2)
    assert kept == expected and 0 < len(kept) < len(_ok_rows())  # the level term decides some rows
    assert expected != sorted(r["id"] for r in _ok_rows() if r["z_score"] > 0)
    where = "c.sharp > 0.6"
    assert main(["filter", "--scores", str(scores), "--where", where, "--out", str(tmp_path / "c"), "--quiet"]) == 0
    kept = sorted(pq.read_table(tmp_path / "c" / "scores")["id"].to_pylist())
    expected = sorted(r["id"] for r in _ok_rows() if float(np.float32(r["p_cal"][0]).astype(str)) > 0.6)
    assert kept == expected and 0 < len(kept) < len(_ok_rows())
    assert main(["filter", "--scores", str(scores), "--where", "not c.bright < 0", "--out", str(tmp_path / "u"),
                 "--quiet"]) == 0
    assert pq.read_table(tmp_path / "u" / "scores").num_rows == 0  # no calibration, no value: not NaN, not kept
    for bad, message in (('l.overall["superb"] > 0', "has levels"), ('l.sharp["bad"] > 0', "rates"),
                         ("l.overall[4] > 0", "quoted word")):
        assert main(["filter", "--scores", str(scores), "--where", bad, "--out", str(tmp_path / "x"), "--quiet"]) == 2
        assert message in capsys.readouterr().err


def test_pairs_eval_and_report_take_the_z_columns(scores, tmp_path, ray_session):
    runs = {}
    for column in ("score", "z_score"):
        out = tmp_path / f"p_{column}"
        assert main(["pairs", "--scores", str(scores), "--strategy", "margin", "--score-column", column,
                     "--out", str(out), "--quiet"]) == 0
        runs[column] = pq.read_table(out / "pairs").sort_by("chosen_id").to_pylist()
    # z is increasing in the score within a checklist: the same pairs, the gap in standard deviations
    assert [(r["chosen_id"], r["rejected_id"]) for r in runs["z_score"]] == \
        [(r["chosen_id"], r["rejected_id"]) for r in runs["score"]]
    assert [r["chosen_score"] for r in runs["z_score"]] == pytest.approx(
        [(r["chosen_score"] - 0.1) / 0.4 for r in runs["score"]])

    ok = _ok_rows()
    ids = [r["id"] for r in ok]
    rank = np.argsort(np.argsort([-r["dim_quality"] for r in ok]))  # humans follow the quality dimension
    pq.write_table(pa.table({"group": ["all"] * len(ids), "id": ids, "rank": rank.tolist()}), tmp_path / "j.parquet")
    assert main(["eval", "--scores", str(scores), "--judgments", str(tmp_path / "j.parquet"),
                 "--json", str(tmp_path / "eval.json"), "--quiet"]) == 0
    measures = json.loads((tmp_path / "eval.json").read_text())["measures"]
    assert measures["z_score"] == measures["score"] and measures["z_dim_quality"] == measures["dim_quality"]
    assert measures["z_dim_quality"] != measures["z_score"]  # negative control: another column, other figures

    assert main(["report", "--scores", str(scores), "--out", str(tmp_path / "r.html"), "--quiet"]) == 0
    page = (tmp_path / "r.html").read_text()
    assert "Rating questions" in page and "excellent: " in page and "<h3>z_score</h3>" in page


def test_report_level_means_match_direct_computation():
    table = _table(seed=3)
    edges = {"score": [-1.0, 0.0, 1.0]}
    partials = [batch_partial(table.slice(k, 9), edges, {"rated": CHECKLIST}, 2) for k in range(0, 40, 9)]
    got = level_means(merge(partials, edges, 2))["rated"]["overall"]
    ok = [r for r in table.to_pylist() if r["status"] == status.OK]
    np.testing.assert_allclose(got, np.mean([r["level_probs"][2] for r in ok], axis=0), rtol=1e-6)


def test_the_python_api_exposes_levels_and_z_scores():
    row = _ok_rows()[0]
    item = _item(0, row, {"rated": CHECKLIST})
    assert list(item.level_probs) == ["overall"] and list(item.level_probs["overall"]) == LEVELS
    assert list(item.level_probs["overall"].values()) == row["level_probs"][2]
    assert item.z_score == row["z_score"] and item.z_dimensions == {"quality": row["z_dim_quality"],
                                                                     "overall": row["z_dim_overall"]}
