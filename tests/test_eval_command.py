"""`vrscore eval`: the three judgment formats, the join on a key column, and the figures
against the brute-force metrics of tests/test_preference_metrics.py, on the real
ImageReward test split with made-up (heavily tied) scores."""
import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from jobs.cli import main
from jobs.eval_command import load_judgments
from schemas.job_config import StorageConfig
from schemas.user_error import UserError
from tests.paths import PREFERENCES, require
from tests.ray_fixtures import ray_session  # noqa: F401 - fixture
from tests.scores_fixtures import CHECKLISTS, scores_table, write_scores
from tests.test_preference_metrics import brute_imagereward, brute_tau

N_Q = len(CHECKLISTS["image"].questions)


def made_up_rows(items: list[dict], rng: np.random.Generator, key: str = "id") -> list[dict]:
    """Discrete p_yes loosely following the human ranking; a few items missing or failed."""
    rows = []
    for it in items:
        for gen, rank in zip(it["generations"], it["ranking"]):
            if rng.random() < 0.02:
                continue  # never scored
            p = np.clip(0.75 - 0.08 * rank + rng.normal(0, 0.25, N_Q), 0, 1).round(1)
            row = {"id": f"{it['id']}/{gen}", "uri": f"/data/{gen}", "media_type": "image", "prompt": it["prompt"],
                   "group": it["id"], "p_yes": p.astype(np.float32), "ir_key": f"{it['id']}/{gen}"}
            if key != "id":
                row["id"] = f"row-{len(rows)}"
            if rng.random() < 0.02:
                row.update(status="decode_error", error="made-up", p_yes=None)
            rows.append(row)
    return rows


def expected_figures(items: list[dict], table: pa.Table, measure: str, key: str = "id") -> dict:
    value = {r[key]: (r[measure] if r["status"] == "ok" else None) for r in table.to_pylist()}
    h, m = [], []
    for it in items:
        keys = [f"{it['id']}/{g}" for g in it["generations"]]
        for i in range(len(keys)):
            for j in range(i + 1, len(keys)):
                h.append(int(np.sign(it["ranking"][j] - it["ranking"][i])))
                a, b = value.get(keys[i]), value.get(keys[j])
                m.append(np.nan if a is None or b is None else round(a - b, 9))
    tau, eps = brute_tau(h, m)
    untied_scored = [(x, y) for x, y in zip(h, m) if x != 0 and not np.isnan(y)]
    return {"pairs": len(h), "human_ties": h.count(0), "scored": int(np.sum(~np.isnan(m))),
            "accuracy_imagereward": brute_imagereward(h, m), "tau_star": tau, "eps_star": eps,
            "accuracy_ties_dropped": sum(x * y > 0 for x, y in untied_scored) / len(untied_scored)}


def test_eval_on_the_imagereward_test_split(tmp_path: Path, ray_session):
    path = require(PREFERENCES / "imagereward_test.json")
    items = json.loads(path.read_text())
    table = scores_table(made_up_rows(items, np.random.default_rng(0)))
    write_scores(tmp_path / "s", made_up_rows(items, np.random.default_rng(0)))
    out = tmp_path / "eval.json"
    assert main(["eval", "--scores", str(tmp_path / "s"), "--judgments", str(path), "--json", str(out), "--quiet"]) == 0
    report = json.loads(out.read_text())
    assert report["items_judged"] == sum(len(it["generations"]) for it in items)
    assert set(report["measures"]) == {"score", "score_soft", "dim_alignment", "dim_composition", "dim_quality",
                                       "dim_fidelity", "dim_safety_emotion"}  # no video dimension without scores
    for measure in ("score", "dim_quality"):  # score_soft is checked on fewer pairs below: the brute force is slow
        got, want = report["measures"][measure], expected_figures(items, table, measure)
        assert got["pairs"] - got["human_ties"] == 6399
        assert got == pytest.approx(want), measure


def test_eval_joins_parquet_pairs_through_a_key_column(tmp_path: Path, ray_session):
    items = json.loads(require(PREFERENCES / "imagereward_test.json").read_text())[:40]
    rows = made_up_rows(items, np.random.default_rng(1), key="ir_key")
    write_scores(tmp_path / "s", rows, keep_fields=[pa.field("ir_key", pa.string())])
    pairs = {"group": [], "a_id": [], "b_id": [], "preference": []}
    for it in items:
        for i in range(len(it["generations"])):
            for j in range(i + 1, len(it["generations"])):
                pairs["group"].append(it["id"])
                pairs["a_id"].append(f"{it['id']}/{it['generations'][i]}")
                pairs["b_id"].append(f"{it['id']}/{it['generations'][j]}")
                pairs["preference"].append(int(np.sign(it["ranking"][j] - it["ranking"][i])))
    pq.write_table(pa.table(pairs), tmp_path / "pairs.parquet")
    out = tmp_path / "eval.json"
    args = ["eval", "--scores", str(tmp_path / "s"), "--judgments", str(tmp_path / "pairs.parquet"),
            "--json", str(out), "--quiet"]
    assert main(args) == 2  # by the default key (id = "row-N") nothing matches: a clear error, not zeros
    assert main([*args, "--key-column", "ir_key"]) == 0
    table = scores_table(rows, [pa.field("ir_key", pa.string())])
    for measure in ("score", "score_soft"):
        got = json.loads(out.read_text())["measures"][measure]
        assert got == pytest.approx(expected_figures(items, table, measure, "ir_key")), measure


def test_eval_shows_the_judged_items_answer_mass_and_reads_outputs_without_it(tmp_path: Path, ray_session, capsys):
    path = require(PREFERENCES / "imagereward_test.json")
    items = json.loads(path.read_text())[:10]
    rows = made_up_rows(items, np.random.default_rng(2))
    masses = np.random.default_rng(3)
    for r in rows:
        if r["p_yes"] is not None:
            r["answer_mass"] = masses.uniform(0.05, 0.6, N_Q)
    write_scores(tmp_path / "s", rows)
    out = tmp_path / "eval.json"
    assert main(["eval", "--scores", str(tmp_path / "s"), "--judgments", str(path), "--json", str(out), "--quiet"]) == 0
    got = json.loads(out.read_text())["answer_mass"][CHECKLISTS["image"].name]
    judged = {f"{it['id']}/{g}" for it in items for g in it["generations"]}
    want = np.mean([r["answer_mass"] for r in rows if r["p_yes"] is not None and r["id"] in judged], axis=0)
    assert list(got) == CHECKLISTS["image"].question_ids
    np.testing.assert_allclose(list(got.values()), want, rtol=1e-6)
    printed = capsys.readouterr().out
    assert "mean answer mass per question" in printed and sum(line.startswith("warning:")
                                                               for line in printed.splitlines()) == 1
    # an output of a version before the column: the same figures, no answer mass
    table = pq.read_table(tmp_path / "s" / "scores")
    old = tmp_path / "old"
    (old / "scores").mkdir(parents=True)
    pq.write_table(table.drop_columns(["answer_mass"]), old / "scores" / "part-0.parquet")
    assert main(["eval", "--scores", str(old), "--judgments", str(path), "--json", str(tmp_path / "o.json"),
                 "--quiet"]) == 0
    old_report, report = json.loads((tmp_path / "o.json").read_text()), json.loads(out.read_text())
    assert old_report["answer_mass"] == {} and old_report["measures"] == report["measures"]


def test_judgment_formats_agree(tmp_path: Path):
    items = [{"id": "p1", "prompt": "x", "generations": ["a.png", "b.png", "c.png"], "ranking": [2, 1, 2]}]
    (tmp_path / "ir.json").write_text(json.dumps(items))
    pq.write_table(pa.table({"group": ["p1"] * 3, "id": ["p1/a.png", "p1/b.png", "p1/c.png"], "rank": [2, 1, 2]}),
                   tmp_path / "ranks.parquet")
    pq.write_table(pa.table({"group": ["p1"] * 3, "a_id": ["p1/a.png", "p1/a.png", "p1/b.png"],
                             "b_id": ["p1/b.png", "p1/c.png", "p1/c.png"], "preference": [-1, 0, 1]}),
                   tmp_path / "pairs.parquet")
    loaded = [load_judgments(str(tmp_path / f), StorageConfig()) for f in ("ir.json", "ranks.parquet", "pairs.parquet")]
    for j in loaded:
        _, a, b, h = j.to_lists()
        assert list(zip(a, b, h)) == [("p1/a.png", "p1/b.png", -1), ("p1/a.png", "p1/c.png", 0),
                                                     ("p1/b.png", "p1/c.png", 1)]
    bad = pa.table({"group": ["p1"], "a_id": ["x"], "b_id": ["y"], "preference": [2]})
    pq.write_table(bad, tmp_path / "bad.parquet")
    with pytest.raises(ValueError, match="preference must be"):
        load_judgments(str(tmp_path / "bad.parquet"), StorageConfig())


@pytest.mark.parametrize("groups", [[2, 10], [10, 2], [2.5, 10.0], ["b", "a"], [True, False]], ids=str)
def test_ranking_groups_of_any_type_stay_apart(tmp_path: Path, groups):
    # integer groups [2, 10] were merged into one group "2", with pairs across groups
    g1, g2 = groups
    table = pa.table({"group": [g1, g2, g1, g2, g2], "id": ["a1", "b1", "a2", "b2", "b3"], "rank": [1, 1, 2, 3, 2]})
    pq.write_table(table, tmp_path / "ranks.parquet")
    j = load_judgments(str(tmp_path / "ranks.parquet"), StorageConfig())
    got = sorted(zip(*j.to_lists()))
    key1, key2 = pa.array([g1, g2]).cast(pa.string()).to_pylist()
    assert got == sorted([(key1, "a1", "a2", 1), (key2, "b1", "b2", 1), (key2, "b1", "b3", 1), (key2, "b2", "b3", -1)])


def test_ranking_rows_without_a_group_are_refused(tmp_path: Path):
    pq.write_table(pa.table({"group": [1, None, 1], "id": ["a", "b", "c"], "rank": [1, 2, 3]}), tmp_path / "r.parquet")
    with pytest.raises(ValueError, match="1 ranking rows have no group"):
        load_judgments(str(tmp_path / "r.parquet"), StorageConfig())


@pytest.mark.parametrize("column", ["group", "id", "a_id"])
@pytest.mark.parametrize(("bad", "kind"), [(pa.array([{"x": 1}] * 2), "struct"), (pa.array([[1, 2]] * 2), "list")],
                         ids=["struct", "list"])
def test_groups_and_ids_that_are_not_text_are_a_user_error(tmp_path: Path, column, bad, kind):
    if column == "a_id":
        table = pa.table({"group": ["g", "g"], "a_id": ["a", "b"], "b_id": ["b", "c"], "preference": [1, -1]})
    else:
        table = pa.table({"group": ["g", "g"], "id": ["a", "b"], "rank": [1, 2]})
    assert len(load_judgments(_written(tmp_path, table), StorageConfig()).h) > 0  # negative control: text loads
    table = table.set_column(table.column_names.index(column), column, bad)
    with pytest.raises(UserError, match=f"column '{column}' has type {kind}<"):
        load_judgments(_written(tmp_path, table), StorageConfig())


def _written(tmp_path: Path, table: pa.Table) -> str:
    pq.write_table(table, tmp_path / "j.parquet")
    return str(tmp_path / "j.parquet")


@pytest.mark.parametrize("values, kind", [([True, False], "bool"), ([1.0, -1.0], "double"), (["1", "-1"], "string")],
                         ids=["bool", "float", "string"])
def test_a_preference_column_that_is_not_integer_is_refused(tmp_path: Path, values, kind):
    # A boolean column passed the value check (True == 1, False == 0): every False became a tie.
    table = pa.table({"group": ["g", "g"], "a_id": ["a", "b"], "b_id": ["b", "c"], "preference": [1, -1]})
    assert load_judgments(_written(tmp_path, table), StorageConfig()).h.tolist() == [1, -1]  # negative control
    table = table.set_column(3, "preference", pa.array(values))
    with pytest.raises(UserError, match=rf"'preference' has type {kind}.*1 \(humans prefer a\), -1 \(b\), 0 \(tie\)"):
        load_judgments(_written(tmp_path, table), StorageConfig())
