"""`vrscore eval` on a judge output: each human pair is matched with the judged pair of the
same two items in either order, its difference oriented towards the human's A, and the
figures equal pipeline/preference_metrics.py's on differences computed here row by row."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from jobs.cli import main
from pipeline.judged_eval import three_way_accuracy
from pipeline.preference_metrics import preference_metrics
from tests.judge_fixtures import CHECKLIST, random_judged, write_judged
from tests.ray_fixtures import ray_session  # noqa: F401 - fixture

WEIGHTS = [q.weight for q in CHECKLIST.questions]


def expected_differences(rows: list[dict], human: list[tuple[str, str, int]], items: list[dict]):
    """(m of p_a, m of log_strength) per human pair, found by scanning the judged rows."""
    m_pa, m_bt = [], []
    strength = {r["id"]: (r["group"], r["log_strength"]) for r in items}
    for a, b, _ in human:
        found = [r for r in rows if {r["a"], r["b"]} == {a, b} and r["status"] == "ok"]
        if found:
            y = sum(abs(w) * p for w, p in zip(WEIGHTS, found[0]["p_a"])) / sum(map(abs, WEIGHTS))
            m_pa.append((2 * y - 1) * (1 if found[0]["a"] == a else -1))
        else:
            m_pa.append(np.nan)
        (ga, sa), (gb, sb) = strength.get(a, (None, None)), strength.get(b, (None, None))
        m_bt.append(sa - sb if ga == gb and sa is not None and sb is not None else np.nan)
    return np.array(m_pa), np.array(m_bt)


def test_eval_on_a_judge_output(tmp_path: Path, ray_session):
    rng = np.random.default_rng(12)
    rows = random_judged(rng, groups=3, per_group=5, error_rate=0.15)
    write_judged(tmp_path / "judged", rows)
    items = pq.read_table(tmp_path / "judged" / "items").to_pylist()
    human = []
    for r in rows:  # half the pairs in the judged order, half reversed; humans mostly agree; some ties
        a, b = (r["a"], r["b"]) if rng.random() < 0.5 else (r["b"], r["a"])
        agree = 1 if r["status"] != "ok" else np.sign(np.dot(np.abs(WEIGHTS), r["p_a"]) / 3 - 0.5)
        h = int(agree * (1 if a == r["a"] else -1) * (1 if rng.random() < 0.8 else -1))
        human.append((a, b, 0 if rng.random() < 0.15 else h))
    human += [("g0/0", "g1/0", 1), ("g0/1", "g2/3", -1)]  # never judged: items of different groups
    table = pa.table({"group": ["h"] * len(human), "a_id": [h[0] for h in human], "b_id": [h[1] for h in human],
                      "preference": pa.array([h[2] for h in human], pa.int64())})
    pq.write_table(table, tmp_path / "human.parquet")
    out = tmp_path / "eval.json"
    assert main(["eval", "--scores", str(tmp_path / "judged"), "--judgments", str(tmp_path / "human.parquet"),
                 "--json", str(out), "--quiet"]) == 0
    got = json.loads(out.read_text())["measures"]
    h = np.array([x[2] for x in human])
    m_pa, m_bt = expected_differences(rows, human, items)
    assert got["p_a"] == pytest.approx(preference_metrics(h, m_pa).to_dict())
    assert got["log_strength"] == pytest.approx(preference_metrics(h, m_bt).to_dict())
    assert got["p_a"]["scored"] == sum(r["status"] == "ok" for r in rows)
    assert 0.6 < got["p_a"]["accuracy_ties_dropped"] < 1
    flipped = preference_metrics(-h, m_pa).to_dict()  # negative control: the orientation matters
    assert flipped["accuracy_ties_dropped"] != pytest.approx(got["p_a"]["accuracy_ties_dropped"])
    assert main(["eval", "--scores", str(tmp_path / "judged"), "--judgments", str(tmp_path / "human.parquet"),
                 "--key-column", "ir_key", "--quiet"]) == 2


def test_three_way_accuracy_counts_ties_as_genai_bench_does():
    h = np.array([1, -1, 0, 0, 1, 1])
    y = np.array([0.7, 0.45, 0.5, 0.8, np.nan, 0.55])  # y: P(A preferred), each side taking half the tie mass
    tie = np.array([0.1, 0.0, 0.6, 0.1, np.nan, 0.5])
    # answers: A (0.65 > 0.25, 0.1); B (0.55 > 0.45); tie (0.6 > 0.2, 0.2); A; unjudged; tie (0.5 > 0.3, 0.2)
    assert three_way_accuracy(h, y, tie) == pytest.approx(3 / 6)


def test_tie_word_accuracy_turns_each_pair_towards_the_human_a():
    from jobs.eval_command import HumanPairs
    from jobs.judged_eval_command import evaluate_judged
    from pipeline.judge_input import JudgeInput
    from schemas.checklist import Checklist
    from schemas.job_config import StorageConfig
    from schemas.judge_output import pairs_schema

    checklist = Checklist.model_validate({
        "name": "ties", "media_type": "image", "mode": "pairwise", "first_words": ["1"], "second_words": ["2"],
        "tie_words": ["tie"], "aggregation": {"rule": "mean"},
        "questions": [{"id": "q", "text": "Which is better?", "dimension": "overall"}]})
    schema = pairs_schema(checklist.dimensions, ties=True)
    judged = pa.Table.from_pylist([
        {"id": "x|y", "a": "x", "b": "y", "status": "ok", "p_a": [0.8], "p_tie": [0.1], "pair_score": 0.6,
         "dim_overall": 0.6},
        {"id": "z|w", "a": "z", "b": "w", "status": "ok", "p_a": [0.5], "p_tie": [0.6], "pair_score": 0.0,
         "dim_overall": 0.0}], schema=schema)
    keys = pa.array(["x", "y", "z", "w"])
    # human pairs: (y, x) prefers x = the judged a; (x, y) prefers x; (w, z) tie; (z, w) prefers z
    human = HumanPairs(keys, np.array([1, 0, 3, 2]), np.array([0, 1, 2, 3]), np.array([-1, 1, 0, 1]),
                       np.zeros(4, dtype=np.int64), pa.array(["h"]))
    info = JudgeInput("out", "out/pairs", schema, checklist, StorageConfig())
    results, ties = evaluate_judged(human, judged, None, info)
    assert ties == pytest.approx(3 / 4)  # only (z, w) is wrong: the judge says tie
    assert results["p_a"].accuracy_ties_dropped == pytest.approx(2 / 3)  # z-w: m = 0 counts as D
