"""`vrscore pairs` on a judge output: a judged pair becomes a DPO pair exactly when it is ok,
both orders agree on every weighted question and its margin reaches --min-margin (checked
row by row here), with the manifest's uris joined in the cluster."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from jobs.cli import main
from pipeline.judged_pairs import dpo_candidates
from tests.judge_fixtures import CHECKLIST, judged_row, random_judged, write_judged
from tests.ray_fixtures import ray_session  # noqa: F401 - fixture
from tests.scores_fixtures import random_rows, write_scores

WEIGHTS = [q.weight for q in CHECKLIST.questions]


def expected_pairs(rows: list[dict], min_margin: float) -> dict:
    """(chosen, rejected) -> P(chosen preferred), from the rule written out per row."""
    out = {}
    for r in rows:
        if r["status"] != "ok":
            continue
        y = sum(abs(w) * p for w, p in zip(WEIGHTS, r["p_a"])) / sum(abs(w) for w in WEIGHTS)
        agree = all(c for w, c in zip(WEIGHTS, r["consistent"]) if w != 0)
        if agree and y != 0.5 and abs(2 * y - 1) >= min_margin:
            out[(r["a"], r["b"]) if y > 0.5 else (r["b"], r["a"])] = max(y, 1 - y)
    return out


def as_table(rows: list[dict]) -> pa.Table:
    from schemas.judge_output import pairs_schema

    return pa.Table.from_pylist(rows, schema=pairs_schema(CHECKLIST.dimensions))


def test_candidates_follow_the_rule_row_by_row():
    rows = random_judged(np.random.default_rng(3), groups=3, per_group=6, bias=0.15)
    for min_margin in (0.0, 0.3):
        got = dpo_candidates(as_table(rows), WEIGHTS, min_margin, ["dim_alignment", "dim_quality"]).to_pylist()
        want = expected_pairs(rows, min_margin)
        assert {(p["chosen_id"], p["rejected_id"]): p["chosen_score"] for p in got} == pytest.approx(want)
        assert 0 < len(want) < len(rows)
        by_id = {r["id"]: r for r in rows}
        for p in got:
            sign = 1 if by_id[p["pair"]]["a"] == p["chosen_id"] else -1
            assert p["gap_quality"] == pytest.approx(sign * by_id[p["pair"]]["dim_quality"])


def test_a_question_the_orders_disagree_on_drops_the_pair_unless_it_weighs_nothing():
    agree = judged_row("x", "y", "g", [0.9, 0.8, 0.3], [0.2, 0.1, 0.4])  # third question: both say first
    disagree = judged_row("x", "y", "g", [0.9, 0.8, 0.3], [0.2, 0.7, 0.4])  # second question flips with the order
    assert agree["consistent"] == [True, True, False]
    assert len(dpo_candidates(as_table([agree]), WEIGHTS, 0.0, [])) == 1
    assert len(dpo_candidates(as_table([disagree]), WEIGHTS, 0.0, [])) == 0


def test_pairs_command_on_a_judge_output(tmp_path: Path, ray_session):
    rows = random_judged(np.random.default_rng(8), groups=4, per_group=5)
    write_judged(tmp_path / "judged", rows)
    items = sorted({x for r in rows for x in (r["a"], r["b"])})
    manifest = tmp_path / "manifest.parquet"
    pq.write_table(pa.table({"id": items, "uri": [f"/media/{i.replace('/', '_')}.png" for i in items],
                             "media_type": ["image"] * len(items)}), manifest)
    out = tmp_path / "dpo"
    assert main(["pairs", "--scores", str(tmp_path / "judged"), "--min-margin", "0.2", "--manifest", str(manifest),
                 "--out", str(out), "--format", "parquet,diffusion-dpo", "--quiet"]) == 0
    pairs = pq.read_table(out / "pairs").to_pylist()
    want = expected_pairs(rows, 0.2)
    assert {(p["chosen_id"], p["rejected_id"]): p["chosen_score"] for p in pairs} == pytest.approx(want)
    for p in pairs:
        assert p["chosen_uri"] == f"/media/{p['chosen_id'].replace('/', '_')}.png" and p["media_type"] == "image"
        assert p["rejected_uri"] == f"/media/{p['rejected_id'].replace('/', '_')}.png"
        assert p["group"] == p["chosen_id"].split("/")[0] and p["prompt"] == f"prompt {p['group']}"
    records = [json.loads(line) for f in (out / "diffusion-dpo").glob("*.jsonl") for line in f.read_text().splitlines()]
    assert sorted((r["jpg_0"], r["jpg_1"], r["label_0"]) for r in records) == sorted(
        (p["chosen_uri"], p["rejected_uri"], 1) for p in pairs)
    assert json.loads((out / "pairs.json").read_text())["pairs"] == len(pairs)
    # score-only options are refused for a judge output, and the judge's for scores
    assert main(["pairs", "--scores", str(tmp_path / "judged"), "--strategy", "all", "--out",
                 str(tmp_path / "x"), "--quiet"]) == 2
    write_scores(tmp_path / "scores", random_rows(np.random.default_rng(1), 2, (2, 3)))
    assert main(["pairs", "--scores", str(tmp_path / "scores"), "--min-margin", "0.1", "--out",
                 str(tmp_path / "y"), "--quiet"]) == 2


def test_no_pair_kept_writes_an_empty_output(tmp_path: Path, ray_session):
    """A judge that always picks the first slot agrees with itself on no pair (a tiny random
    model does this): the job writes an empty, readable pairs output instead of failing."""
    rows = random_judged(np.random.default_rng(2), groups=2, per_group=4, error_rate=0.0, bias=0.9)
    assert not any(any(r["consistent"]) for r in rows)
    write_judged(tmp_path / "judged", rows)
    manifest = tmp_path / "manifest.parquet"
    items = sorted({x for r in rows for x in (r["a"], r["b"])})
    pq.write_table(pa.table({"id": items, "uri": [f"/media/{i}" for i in items]}), manifest)
    out = tmp_path / "dpo"
    assert main(["pairs", "--scores", str(tmp_path / "judged"), "--manifest", str(manifest), "--out", str(out),
                 "--format", "parquet,diffusion-dpo", "--quiet"]) == 0
    assert pq.read_table(out / "pairs").num_rows == 0
    assert json.loads((out / "pairs.json").read_text())["pairs"] == 0
