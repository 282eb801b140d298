"""`vrscore rescore` on a real scored output (the tiny demo model, the published VisionReward
image and video checklists, an alignment column): the original checklists give back every
column bit for bit; new weights give the upstream formulas, recomputed here from `answers`;
questions are matched by id or text and refused when missing; the downstream commands read
the result."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from actors.synthetic_media import write_image, write_video
from jobs.cli import main
from jobs.score_job import run_score_job
from pipeline.preference_metrics import preference_metrics, score_differences
from pipeline.rescore import META_RESCORE
from schemas import status
from schemas.job_config import DecodeConfig, JobConfig, ModelConfig, ResourcesConfig
from tests.paths import VR_DIMS, VR_IMAGE_QA, VR_IMAGE_W, VR_VIDEO_QA, VR_VIDEO_W, require
from tests.ray_fixtures import ray_session  # noqa: F401 - fixture

ORIGINAL = ["--checklist", str(VR_IMAGE_QA), "--weights", str(VR_IMAGE_W),
            "--checklist", str(VR_VIDEO_QA), "--weights", str(VR_VIDEO_W), "--dimensions", str(VR_DIMS)]
# Upstream image masks (VisionReward README): gate line -> zeroed lines of the select list.
UPSTREAM_MASKS = {0: [22, 23, 24, 28, 29], 1: [25, 26], 2: [27]}


@pytest.fixture(scope="module")
def scored(tmp_path_factory, demo_model_dir, ray_session) -> Path:
    require(VR_IMAGE_QA)
    tmp = tmp_path_factory.mktemp("rescore")
    rows = []
    for k in range(6):
        write_image(tmp / f"i{k}.png", size=(96 + 16 * k, 80), seed=k)
        rows.append({"id": f"g{k % 2}/i{k}", "uri": str(tmp / f"i{k}.png"), "prompt": f"prompt {k % 2}",
                     "vqa": [0.2, None, 0.9, 0.5, 0.7, 0.1][k]})
    for k in range(3):
        write_video(tmp / f"v{k}.mp4", n_frames=12, size=(64, 64), fps=8, seed=10 + k)
        rows.append({"id": f"g{k % 2}/v{k}", "uri": str(tmp / f"v{k}.mp4"), "prompt": f"prompt {k % 2}", "vqa": 0.5})
    rows.append({"id": "g0/missing", "uri": str(tmp / "nope.png"), "prompt": "prompt 0", "vqa": 0.3})
    pq.write_table(pa.Table.from_pylist(rows), tmp / "manifest.parquet")
    cfg = JobConfig(manifest=str(tmp / "manifest.parquet"), out=str(tmp / "out"),
                    model=ModelConfig(model=str(demo_model_dir)), checklist=[str(VR_IMAGE_QA), str(VR_VIDEO_QA)],
                    weights=[str(VR_IMAGE_W), str(VR_VIDEO_W)], dimensions=str(VR_DIMS),
                    alignment_column="vqa", keep_columns=["vqa"],
                    decode=DecodeConfig(frames="uniform:2", image_max_pixels=64 * 28 * 28,
                                        video_max_pixels=32 * 28 * 28),
                    resources=ResourcesConfig(batch_size=4, decode_batch_size=4))
    run_score_job(cfg, quiet=True)
    return tmp / "out"


def _table(out: Path) -> pa.Table:
    return pq.read_table(out / "scores").sort_by("id")


def _bits(column: pa.ChunkedArray) -> list:
    """Exact float bits (None for nulls), so equality means bit for bit."""
    return [None if v is None else np.float64(v).view(np.uint64) for v in column.to_pylist()]


def test_original_checklists_reproduce_every_column_bit_for_bit(scored: Path, tmp_path: Path):
    assert main(["rescore", "--scores", str(scored), *ORIGINAL, "--out", str(tmp_path / "r"), "--quiet"]) == 0
    before, after = _table(scored), _table(tmp_path / "r")
    assert set(before["status"].to_pylist()) == {status.OK, status.MISSING_FILE}
    assert after.schema.remove_metadata().equals(before.schema.remove_metadata())
    for name in before.column_names:
        assert after[name].equals(before[name]), name
        if pa.types.is_floating(before.schema.field(name).type):
            assert _bits(after[name]) == _bits(before[name]), name
    checklists = json.loads((tmp_path / "r" / "checklist.json").read_text())
    assert checklists == json.loads((scored / "checklist.json").read_text())
    record = json.loads(pq.read_schema(next((tmp_path / "r" / "scores").glob("*.parquet"))).metadata[META_RESCORE])
    assert record["source"] == str(scored / "scores") and record["alignment_column"] == "vqa"
    assert record == json.loads((tmp_path / "r" / "rescore.json").read_text())


def test_new_weights_give_the_upstream_formulas(scored: Path, tmp_path: Path):
    rng = np.random.default_rng(0)
    video_w = rng.uniform(-1, 2, len(json.loads(VR_VIDEO_W.read_text()))).tolist()
    coef = rng.uniform(-1, 2, len(json.loads(VR_IMAGE_W.read_text())["coef"])).tolist()
    (tmp_path / "video_w.json").write_text(json.dumps(video_w))
    (tmp_path / "image_w.json").write_text(json.dumps({"coef": coef, "intercept": [0.25]}))
    assert main(["rescore", "--scores", str(scored), "--checklist", str(VR_IMAGE_QA), "--weights",
                 str(tmp_path / "image_w.json"), "--checklist", str(VR_VIDEO_QA), "--weights",
                 str(tmp_path / "video_w.json"), "--dimensions", str(VR_DIMS), "--out", str(tmp_path / "r"),
                 "--quiet"]) == 0
    before, after = _table(scored), _table(tmp_path / "r")
    changed = 0
    for old, new in zip(before.to_pylist(), after.to_pylist()):
        assert new["p_yes"] == old["p_yes"] and new["answers"] == old["answers"]
        if new["status"] != status.OK:
            assert new["score"] is None and new["score_soft"] is None
            continue
        hard, soft = np.array(new["answers"], float), 2 * np.array(new["p_yes"]) - 1
        for kind, values in (("score", hard), ("score_soft", soft)):
            if new["media_type"] == "video":  # upstream: mean over questions of answer * weight
                want = float(np.mean(values * np.array(video_w)))
            else:  # upstream: gates zero their lines, then coef . [alignment, answers[3:]] + intercept
                a = values.copy()
                for gate, lines in UPSTREAM_MASKS.items():
                    if new["answers"][gate] < 0:
                        a[lines] = 0.0
                align = 0.7 if new["vqa"] is None else new["vqa"]
                want = float(np.dot(coef, [align, *a[3:]]) + 0.25)
            assert new[kind] == pytest.approx(want, rel=1e-12, abs=1e-12), (new["id"], kind)
        changed += new["score"] != old["score"]
    assert changed >= 5  # negative control: the new weights did change the scores
    gates = [r["answers"][:3] for r in after.to_pylist() if r["media_type"] == "image" and r["answers"]]
    assert {-1, 1} <= {a for g in gates for a in g}  # the masks really gate here (seeded demo model)


def test_renamed_and_reordered_questions_match_by_text_and_a_missing_one_is_refused(scored: Path, tmp_path: Path,
                                                                                   capsys):
    source = json.loads((scored / "checklist.json").read_text())["video"]
    new = dict(source, name="video-reordered", questions=source["questions"][::-1])
    new["questions"][0] = dict(new["questions"][0], id="renamed_question", weight=5.0)
    (tmp_path / "v.yaml").write_text(yaml.safe_dump(new))
    assert main(["rescore", "--scores", str(scored), "--checklist", str(tmp_path / "v.yaml"),
                 "--out", str(tmp_path / "r"), "--quiet"]) == 0
    before, after = _table(scored), _table(tmp_path / "r")
    for old, row in zip(before.to_pylist(), after.to_pylist()):
        if row["media_type"] == "video":
            assert row["checklist"] == "video-reordered" and row["p_yes"] == old["p_yes"][::-1]
            assert row["answer_mass"] == old["answer_mass"][::-1] != old["answer_mass"]
            weights = np.array([q["weight"] for q in new["questions"]])
            assert row["score"] == pytest.approx(np.mean(np.array(row["answers"]) * weights), rel=1e-12)
        else:  # image rows keep their checklist and every bit
            assert row == old

    missing = dict(source, questions=[*source["questions"][:-1], dict(source["questions"][-1], text="Is it blue?")])
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump(missing))
    assert main(["rescore", "--scores", str(scored), "--checklist", str(tmp_path / "bad.yaml"),
                 "--out", str(tmp_path / "bad"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert repr(source["questions"][-1]["id"]) in err and "Is it blue?" in err
    assert not (tmp_path / "bad").exists()


def test_filter_eval_pairs_and_report_read_a_rescored_output(scored: Path, tmp_path: Path):
    source = json.loads((scored / "checklist.json").read_text())["image"]
    source["questions"] = [dict(q, weight=float(k % 3)) for k, q in enumerate(source["questions"])]
    (tmp_path / "i.yaml").write_text(yaml.safe_dump(source))
    assert main(["rescore", "--scores", str(scored), "--checklist", str(tmp_path / "i.yaml"),
                 "--out", str(tmp_path / "r"), "--quiet"]) == 0
    table = _table(tmp_path / "r")
    ok = [r for r in table.to_pylist() if r["status"] == status.OK and r["media_type"] == "image"]
    cut = float(np.median([r["score"] for r in ok]))
    assert main(["filter", "--scores", str(tmp_path / "r"), "--where", f"score > {cut!r}",
                 "--out", str(tmp_path / "f"), "--quiet"]) == 0
    kept = pq.read_table(tmp_path / "f" / "scores")
    assert sorted(kept["id"].to_pylist()) == sorted(r["id"] for r in table.to_pylist()
                                                   if r["score"] is not None and r["score"] > cut)

    ids = [r["id"] for r in ok]
    ranks = list(range(len(ids)))
    pq.write_table(pa.table({"group": ["all"] * len(ids), "id": ids, "rank": ranks}), tmp_path / "j.parquet")
    assert main(["eval", "--scores", str(tmp_path / "r"), "--judgments", str(tmp_path / "j.parquet"),
                 "--json", str(tmp_path / "eval.json"), "--quiet"]) == 0
    got = json.loads((tmp_path / "eval.json").read_text())["measures"]["score"]
    i, j = np.triu_indices(len(ids), k=1)
    s = np.array([r["score"] for r in ok])
    assert got == pytest.approx(preference_metrics(np.sign(np.array(ranks)[j] - np.array(ranks)[i]),
                                                   score_differences(s[i], s[j])).to_dict())

    assert main(["pairs", "--scores", str(tmp_path / "r"), "--strategy", "margin",
                 "--out", str(tmp_path / "p"), "--quiet"]) == 0
    assert main(["report", "--scores", str(tmp_path / "r"), "--out", str(tmp_path / "report.html"), "--quiet"]) == 0
    assert (tmp_path / "report.html").stat().st_size > 0


def test_fit_then_rescore_on_the_scored_output_learns_the_alignment_weight(scored: Path, tmp_path: Path, capsys):
    """fit -> rescore on the VisionReward image checklist: masks, alignment from the kept
    `vqa` column; the rescored score is the upstream linear formula with the fitted weights."""
    before = _table(scored)
    images = [r for r in before.to_pylist() if r["media_type"] == "image"]
    align = {r["id"]: 0.7 if r["vqa"] is None else r["vqa"] for r in images}
    # humans follow the alignment here, so its weight must come out positive
    ranks = {i: rank for g in ("g0", "g1") for rank, i in
             enumerate(sorted((r["id"] for r in images if r["group"] == f"prompt {g[1]}"), key=lambda i: -align[i]))}
    judged = {"group": [i.split("/")[0] for i in ranks], "id": list(ranks), "rank": list(ranks.values())}
    pq.write_table(pa.table(judged), tmp_path / "j.parquet")
    assert main(["fit", "--scores", str(scored), "--judgments", str(tmp_path / "j.parquet"), "--l2", "0.1",
                 "--out", str(tmp_path / "fit"), "--quiet"]) == 0
    report = json.loads((tmp_path / "fit" / "fit.json").read_text())
    assert report["alignment_column"] == "vqa"
    image = report["media_types"]["image"]
    assert image["alignment_weight"] > 0 and "alignment" not in image  # fitted, not kept
    assert main(["rescore", "--scores", str(scored), "--checklist", str(tmp_path / "fit" / "image.yaml"),
                 "--out", str(tmp_path / "r"), "--quiet"]) == 0
    ids = [q["id"] for q in json.loads((scored / "checklist.json").read_text())["image"]["questions"]]
    for row in _table(tmp_path / "r").to_pylist():
        if row["media_type"] != "image" or row["status"] != status.OK:
            continue
        a = np.array(row["answers"], dtype=float)
        for gate, lines in UPSTREAM_MASKS.items():
            if row["answers"][gate] < 0:
                a[lines] = 0.0
        want = image["alignment_weight"] * align[row["id"]] + sum(image["weights"][q] * a[k] for k, q in enumerate(ids)
                                                                  if q in image["weights"])
        assert row["score"] == pytest.approx(want, rel=1e-12, abs=1e-12)
        assert row["checklist"].endswith("+fit")
