"""`vrscore calibrate` end to end on Ray Data: made-up scores with a planted miscalibration, labels
for some items; the calibrated checklist, applied by `rescore`, lowers log-loss and ECE on items
whose labels calibrate never saw. `score` with a calibrated checklist writes p_cal, and `rescore`
reproduces it bit for bit (from an output without p_cal, so nothing is carried); another or no
calibration changes it. Bad labels are refused in one line."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from actors.synthetic_media import write_image
from jobs.calibrate_command import fit_all
from jobs.cli import main
from jobs.score_job import run_score_job
from pipeline.calibration import figures, logit, sigmoid
from pipeline.labels_join import labelled_answers
from schemas import status
from pipeline.rescore import Rescorer, rescored_schema
from schemas.checklist import Checklist, load_checklist_file
from schemas.job_config import DecodeConfig, JobConfig, ModelConfig, ResourcesConfig
from schemas.user_error import UserError
from tests.ray_fixtures import ray_session  # noqa: F401 - fixture
from tests.scores_fixtures import CHECKLISTS, write_scores

QUESTIONS = ["sharp", "no_artifacts"]  # labelled; the planted truth is sigmoid(logit(p_yes) / 3)
N_ITEMS, N_SEEN = 240, 120  # items 0..119 are labelled for calibrate; the rest only judge it


@pytest.fixture(scope="module")
def made_up(tmp_path_factory) -> tuple[Path, pa.Table]:
    rng = np.random.default_rng(7)
    n_q = len(CHECKLISTS["image"].questions)
    rows = [{"id": f"i{k}", "uri": f"/m/{k}.png", "media_type": "image", "prompt": "p", "group": "g",
             "p_yes": sigmoid(rng.normal(0, 4, n_q)).astype(np.float32)} for k in range(N_ITEMS)]
    rows[3].update(status=status.DECODE_ERROR, error="made-up failure", p_yes=None)
    tmp = tmp_path_factory.mktemp("calibrate")
    write_scores(tmp / "out", rows)
    ids = CHECKLISTS["image"].question_ids
    labels = []
    for k, row in enumerate(rows):
        for q in QUESTIONS:
            truth = 0.5 if row["p_yes"] is None else sigmoid(logit(row["p_yes"][ids.index(q)]) / 3)
            labels.append({"id": row["id"], "question": q, "label": int(rng.random() < truth), "seen": k < N_SEEN})
    return tmp / "out", pa.Table.from_pylist(labels)


def _labels(tmp: Path, table: pa.Table, name: str = "labels.parquet") -> str:
    pq.write_table(table, tmp / name)
    return str(tmp / name)


def test_calibration_lowers_log_loss_and_ece_on_items_it_never_saw(made_up, tmp_path, ray_session, capsys):
    out, labels = made_up
    seen = labels.filter(labels["seen"]).drop_columns(["seen"])
    assert main(["calibrate", "--scores", str(out), "--labels", _labels(tmp_path, seen), "--out",
                 str(tmp_path / "cal"), "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert "sharp" in printed and "held-out" in printed
    fitted = Checklist.model_validate(yaml.safe_load((tmp_path / "cal" / "image.yaml").read_text()))
    assert [q.id for q in fitted.questions if q.calibration] == QUESTIONS
    assert all(0.1 < q.calibration.a < 0.6 for q in fitted.questions if q.calibration)  # 1/3 planted, 119 labels
    report = json.loads((tmp_path / "cal" / "calibration.json").read_text())
    assert "sharp" in (tmp_path / "cal" / "calibration.md").read_text()
    for q in QUESTIONS:
        r = report["checklists"][fitted.name]["questions"][q]
        assert r["labels"] == N_SEEN - 1 and r["failed_items"] == 1  # the failed item's label is left out
        assert r["held_out"]["after"]["log_loss"] < r["held_out"]["before"]["log_loss"]
        assert r["held_out"]["after"]["ece"] < r["held_out"]["before"]["ece"]

    assert main(["rescore", "--scores", str(out), "--checklist", str(tmp_path / "cal" / "image.yaml"),
                 "--out", str(tmp_path / "r"), "--quiet"]) == 0
    table = pq.read_table(tmp_path / "r" / "scores").sort_by("id")
    source = pq.read_table(out / "scores").sort_by("id")
    assert "p_cal" not in source.column_names and table["p_yes"].equals(source["p_yes"])
    by_id = {r["id"]: r for r in table.select(["id", "p_yes", "p_cal"]).to_pylist()}
    ids = CHECKLISTS["image"].question_ids
    unseen = labels.filter(pa.compute.invert(labels["seen"])).to_pylist()
    for q in QUESTIONS:
        j = ids.index(q)
        y = np.array([r["label"] for r in unseen if r["question"] == q])
        raw = np.array([by_id[r["id"]]["p_yes"][j] for r in unseen if r["question"] == q])
        cal = np.array([by_id[r["id"]]["p_cal"][j] for r in unseen if r["question"] == q])
        before, after = figures(raw, y), figures(cal, y)
        assert after["log_loss"] < before["log_loss"] and after["ece"] < before["ece"], (q, before, after)
    assert all(by_id["i0"]["p_cal"][j] is None for j, i in enumerate(ids) if i not in QUESTIONS)


def _refusal(made_up, tmp_path, capsys, table: pa.Table, *extra: str) -> str:
    out, _ = made_up
    code = main(["calibrate", "--scores", str(out), "--labels", _labels(tmp_path, table), "--out",
                 str(tmp_path / "cal"), "--quiet", *extra])
    assert code == 2 and not (tmp_path / "cal" / "calibration.json").exists()
    return capsys.readouterr().err


@pytest.mark.parametrize("change, extra, message", [
    (lambda t: t.set_column(1, "question", pa.array(["nope"] * t.num_rows)), [], "unknown question ids ['nope']"),
    (lambda t: t.set_column(2, "label", pa.array([2] * t.num_rows)), [], "are not 0 or 1"),
    (lambda t: t, ["--min-labels", "500"], "fewer than --min-labels 500"),
    (lambda t: t.set_column(2, "label", pa.array([1] * t.num_rows)), [], "one class only"),
    (lambda t: t.append_column("checklist", pa.array(["another"] * t.num_rows)), [], "another checklist"),
    (lambda t: t.append_column("text", pa.array(["Is it a cat?"] * t.num_rows)), [], "question text differs"),
])
def test_bad_labels_are_refused_in_one_line(made_up, tmp_path, ray_session, capsys, change, extra, message):
    _, labels = made_up
    err = _refusal(made_up, tmp_path, capsys, change(labels.drop_columns(["seen"])), *extra)
    assert message in err and err.count("\n") == 1, err


def test_a_rating_question_is_refused(ray_session):
    rated = Checklist.model_validate({
        "name": "rated", "media_type": "image", "aggregation": {"rule": "mean"},
        "questions": [{"id": "good", "text": "How good?", "dimension": "d", "answer": "rating", "levels": ["1", "2"]}]})
    batch = pa.table({"id": ["a"], "checklist": ["rated"], "status": [status.OK],
                      "p_yes": pa.array([[0.7]], pa.list_(pa.float32()))})
    labels = ray_session.put(pa.table({"id": ["a"], "question": ["good"], "label": [1]}))
    pairs = labelled_answers(batch, [labels], {"rated": rated})
    args = argparse.Namespace(labels="labels.parquet", min_labels=1, folds=2, method="platt")
    with pytest.raises(UserError, match="a rating question"):
        fit_all(pairs, {"rated": rated}, args)


SMALL = {"name": "small", "media_type": "image", "aggregation": {"rule": "mean"},
         "questions": [{"id": "cat", "text": "Is there a cat?", "dimension": "content"},
                       {"id": "sharp", "text": "Is it sharp?", "dimension": "quality"},
                       {"id": "red", "text": "Is it red?", "dimension": "quality"}]}


def _with(tmp: Path, name: str, calibrations: dict) -> str:
    data = json.loads(json.dumps(SMALL))
    for q in data["questions"]:
        if q["id"] in calibrations:
            q["calibration"] = calibrations[q["id"]]
    (tmp / name).write_text(yaml.safe_dump(data))
    return str(tmp / name)


def test_rescore_reproduces_the_p_cal_of_score_bit_for_bit(tmp_path, demo_model_dir, ray_session):
    cal = {"cat": {"method": "platt", "a": 0.37, "b": -0.21}, "red": {"method": "temperature", "a": 0.5}}
    calibrated = _with(tmp_path, "cal.yaml", cal)
    rows = []
    for k in range(5):
        write_image(tmp_path / f"i{k}.png", size=(64 + 8 * k, 64), seed=k)
        rows.append({"id": f"i{k}", "uri": str(tmp_path / f"i{k}.png"), "prompt": "a cat"})
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "manifest.parquet")
    run_score_job(JobConfig(manifest=str(tmp_path / "manifest.parquet"), out=str(tmp_path / "scored"),
                            model=ModelConfig(model=str(demo_model_dir)), checklist=[calibrated],
                            decode=DecodeConfig(image_max_pixels=64 * 28 * 28),
                            resources=ResourcesConfig(batch_size=2, decode_batch_size=2)), quiet=True)
    scored = pq.read_table(tmp_path / "scored" / "scores").sort_by("id")
    p_cal = scored["p_cal"].to_pylist()
    assert all(row[1] is None and None not in (row[0], row[2]) for row in p_cal)

    assert main(["rescore", "--scores", str(tmp_path / "scored"), "--checklist", _with(tmp_path, "plain.yaml", {}),
                 "--out", str(tmp_path / "plain"), "--quiet"]) == 0
    plain = pq.read_table(tmp_path / "plain" / "scores").sort_by("id")
    assert "p_cal" not in plain.column_names  # negative control: no calibration, no p_cal

    def rescored(checklist: str) -> pa.Table:
        """`rescore`'s stage on the output without p_cal: p_cal is recomputed, not carried."""
        source, new = {"image": Checklist.model_validate(SMALL)}, {"image": load_checklist_file(checklist)}
        schema = rescored_schema(plain.schema, new, "{}")
        return Rescorer(source, new, schema)(plain)

    def bits(column: pa.ChunkedArray) -> list:
        return [[None if v is None else np.float32(v).view(np.uint32) for v in row] for row in column.to_pylist()]

    again = rescored(calibrated)
    assert bits(again["p_cal"]) == bits(scored["p_cal"]) and again["p_yes"].equals(scored["p_yes"])
    other = rescored(_with(tmp_path, "other.yaml", {**cal, "cat": {"method": "platt", "a": 0.37, "b": -0.2}}))
    assert all(a[0] != b[0] and a[2] == b[2] for a, b in zip(bits(other["p_cal"]), bits(scored["p_cal"])))
