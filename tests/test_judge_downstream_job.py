"""End to end on a tiny random model: `vrscore judge` with a random:K schedule, then `pairs`,
`eval` and `report` read its output (the README's worked example, in small)."""
from __future__ import annotations

import collections
import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from actors.demo_model import build_demo_model
from jobs.cli import main
from schemas.checklist import DEFAULTS_DIR
from tests.ray_fixtures import ray_session  # noqa: F401 - fixture

CHECKLIST = DEFAULTS_DIR / "image_pair_rank.yaml"


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return build_demo_model(tmp_path_factory.mktemp("judge_model"), family="qwen2_vl")


@pytest.mark.slow
def test_judge_then_pairs_eval_and_report(tmp_path: Path, model, ray_session):
    rng = np.random.default_rng(0)
    rows = []
    for g in range(2):
        for k in range(5):
            path = tmp_path / f"g{g}_{k}.png"
            Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(path)
            rows.append({"id": f"g{g}/{k}", "uri": str(path), "prompt": f"a picture number {g}", "group": f"g{g}"})
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "m.parquet")
    judged = tmp_path / "judged"
    assert main(["judge", "--manifest", str(tmp_path / "m.parquet"), "--model", str(model), "--checklist",
                 str(CHECKLIST), "--schedule", "random:3", "--seed", "3", "--out", str(judged), "--quiet"]) == 0
    pairs = pq.read_table(judged / "pairs").to_pylist()
    assert all(p["status"] == "ok" for p in pairs)
    times = collections.Counter(x for p in pairs for x in (p["a"], p["b"]))
    assert sorted(times.values()) == [3] * 8 + [4] * 2  # 5 x 3 is odd: one item per group judged 4 times
    assert len(pairs) == 16
    items = pq.read_table(judged / "items").to_pylist()
    assert sorted(r["n_pairs"] for r in items) == sorted(times.values())
    assert sorted(r["rank"] for r in items) == [1, 1, 2, 2, 3, 3, 4, 4, 5, 5]

    weights = [1.0]  # the checklist's one question
    expected = {}
    for p in pairs:
        y = p["p_a"][0]
        if p["consistent"][0] and y != 0.5:
            expected[(p["a"], p["b"]) if y > 0.5 else (p["b"], p["a"])] = max(y, 1 - y)
    dpo = tmp_path / "dpo"
    assert main(["pairs", "--scores", str(judged), "--out", str(dpo), "--format", "parquet,diffusion-dpo",
                 "--quiet"]) == 0
    got = pq.read_table(dpo / "pairs").to_pylist()
    assert {(p["chosen_id"], p["rejected_id"]): p["chosen_score"] for p in got} == pytest.approx(expected)
    uris = {r["id"]: r["uri"] for r in rows}  # from the judge job's own manifest
    assert all(p["chosen_uri"] == uris[p["chosen_id"]] and p["rejected_uri"] == uris[p["rejected_id"]] for p in got)

    human = pa.table({"group": ["h"] * len(pairs), "a_id": [p["b"] for p in pairs], "b_id": [p["a"] for p in pairs],
                      "preference": pa.array([1] * len(pairs), pa.int64())})
    pq.write_table(human, tmp_path / "human.parquet")
    assert main(["eval", "--scores", str(judged), "--judgments", str(tmp_path / "human.parquet"),
                 "--json", str(tmp_path / "eval.json"), "--quiet"]) == 0
    figures = json.loads((tmp_path / "eval.json").read_text())["measures"]["p_a"]
    b_wins = np.mean([sum(w * x for w, x in zip(weights, p["p_a"])) < 0.5 for p in pairs])
    assert figures["scored"] == len(pairs) and figures["accuracy_imagereward"] == pytest.approx(b_wins)

    assert main(["report", "--scores", str(judged), "--out", str(tmp_path / "r.html"), "--quiet"]) == 0
    assert "Position bias and consistency per question" in (tmp_path / "r.html").read_text()
