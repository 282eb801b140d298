"""The filter language against a plain-Python, three-valued evaluation of the same
conditions row by row, its refusals, and `vrscore filter` end to end on a local Ray."""
import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from jobs.cli import main
from jobs.filter_command import drop_reasons
from pipeline.filter_expr import FilterError, parse_filter
from schemas.scores import read_checklists_metadata
from tests.ray_fixtures import ray_session  # noqa: F401 - fixture
from tests.scores_fixtures import CHECKLISTS, random_rows, scores_table, write_scores

BY_NAME = {c.name: c for c in CHECKLISTS.values()}


def q(row: dict, qid: str, column: str = "p_yes"):
    ids = BY_NAME[row["checklist"]].question_ids
    if row[column] is None or qid not in ids:
        return None
    return float(np.format_float_positional(np.float32(row[column][ids.index(qid)]), unique=True))


def m(row: dict, qid: str):
    return q(row, qid, "answer_mass")


def cmp(a, op, b):
    if a is None or b is None:
        return None
    return {"<": a < b, "<=": a <= b, ">": a > b, ">=": a >= b, "==": a == b, "!=": a != b}[op]


def and_(*xs):
    return False if any(x is False for x in xs) else (None if any(x is None for x in xs) else True)


def or_(*xs):
    return True if any(x is True for x in xs) else (None if any(x is None for x in xs) else False)


def not_(x):
    return None if x is None else not x


CASES = {
    "score >= 0": lambda r: cmp(r["score"], ">=", 0),
    "dim_quality >= 0.2 and q.hands_correct >= 0.5":
        lambda r: and_(cmp(r["dim_quality"], ">=", 0.2), cmp(q(r, "hands_correct"), ">=", 0.5)),
    # `sharp` is question 10 of the image checklist and 5 of the video one.
    "q.sharp > 0.5 or q.has_motion < 0.25":
        lambda r: or_(cmp(q(r, "sharp"), ">", 0.5), cmp(q(r, "has_motion"), "<", 0.25)),
    "not (score < 0 or media_type == 'video')":
        lambda r: not_(or_(cmp(r["score"], "<", 0), cmp(r["media_type"], "==", "video"))),
    # m.<id>: the answer mass of that question, independent of its p_yes here
    "m.hands_correct >= 0.5 and q.hands_correct >= 0.5":
        lambda r: and_(cmp(m(r, "hands_correct"), ">=", 0.5), cmp(q(r, "hands_correct"), ">=", 0.5)),
    "m.sharp < 0.3 or m.has_motion >= 0.7":
        lambda r: or_(cmp(m(r, "sharp"), "<", 0.3), cmp(m(r, "has_motion"), ">=", 0.7)),
    "-0.05 < score_soft <= 0.1": lambda r: and_(cmp(-0.05, "<", r["score_soft"]), cmp(r["score_soft"], "<=", 0.1)),
    "status == \"ok\" and dim_physics != 0 and dim_physics > dim_dynamic":
        lambda r: and_(cmp(r["status"], "==", "ok"), cmp(r["dim_physics"], "!=", 0),
                       cmp(r["dim_physics"], ">", r["dim_dynamic"])),
}


@pytest.fixture(scope="module")
def table():
    rng = np.random.default_rng(0)
    rows = random_rows(rng, 10, (3, 6), levels=3, error_rate=0.15)
    rows += random_rows(rng, 6, (2, 4), media_type="video", prefix="v")
    masses = np.random.default_rng(1)
    for row in rows:
        if row.get("p_yes") is not None:
            row["answer_mass"] = masses.random(len(row["p_yes"]))
    return scores_table(rows)


@pytest.mark.parametrize("text", list(CASES))
def test_filter_matches_three_valued_python_evaluation(table, text):
    f = parse_filter(text, table.schema, BY_NAME)
    expected = [CASES[text](r) is True for r in table.to_pylist()]
    assert f.keep_mask(table).tolist() == expected
    assert 0 < sum(expected) < table.num_rows  # each case keeps some rows and drops some


def test_drop_reasons_name_the_first_condition_not_true(table):
    f = parse_filter("score >= 0 and q.hands_correct >= 0.5", table.schema, BY_NAME)
    reasons = f.drop_reasons(table)
    for r, why in zip(table.to_pylist(), reasons):
        first, second = cmp(r["score"], ">=", 0), cmp(q(r, "hands_correct"), ">=", 0.5)
        if first is not True:
            want = "score >= 0" if first is False else "score >= 0 (no value)"
        elif second is not True:
            want = "q.hands_correct >= 0.5" if second is False else "q.hands_correct >= 0.5 (no value)"
        else:
            want = None
        assert why == want
    assert f.columns == ["checklist", "p_yes", "score"]


def test_errors_kept_on_request_bypass_the_condition(table):
    f = parse_filter("score > 100", table.schema, BY_NAME)
    failed = [r["status"] != "ok" for r in table.to_pylist()]
    assert [r is None for r in drop_reasons(table, f, keep_errors=True)] == failed
    assert {r for r, bad in zip(drop_reasons(table, f, keep_errors=False), failed) if bad} == {"status decode_error"}


def test_stored_float32_p_yes_compares_as_typed():
    rows = random_rows(np.random.default_rng(1), 1, (1, 1))
    rows[0]["p_yes"][rows[0]["p_yes"].size - 1] = 0.3  # positive_impression, stored as float32
    t = scores_table(rows)
    assert parse_filter("q.positive_impression == 0.3", t.schema, BY_NAME).keep_mask(t).tolist() == [True]
    assert parse_filter("q.positive_impression <= 0.3", t.schema, BY_NAME).keep_mask(t).tolist() == [True]


@pytest.mark.parametrize("text, message", [
    ("dim_qualty > 0", "unknown column 'dim_qualty' (did you mean 'dim_quality'?)"),
    ("q.hand_correct > 0.5", "unknown question q.hand_correct (did you mean q.hands_correct?)"),
    ("__import__('os').system('true')", "is not a condition"),
    ("score.real > 0", "is not allowed"),
    ("score + 1 > 0", "is not allowed"),
    ("score > abs(-1)", "is not allowed"),
    ("media_type > 1", "compares a text with a number"),
    ("p_yes > 0.5", "use q.<question_id>"),
    ("m.hand_correct > 0.5", "unknown question m.hand_correct (did you mean m.hands_correct?)"),
    ("answer_mass > 0.5", "use m.<question_id> for one question's answer_mass"),
    ("score", "is not a condition"),
    ("score >", "cannot parse"),
    ("score > True", "only numbers and quoted strings"),
    ("score in (1, 2)", "operator In"),
    ("1 < 2", "compares constants only"),
])
def test_refusals_name_the_problem(table, text, message):
    with pytest.raises(FilterError) as exc:
        parse_filter(text, table.schema, BY_NAME)
    assert message in str(exc.value)


def test_scores_without_answer_mass_filter_on_p_yes_and_refuse_m(table):
    old = table.drop_columns(["answer_mass"])  # an output of a version before the answer mass
    f = parse_filter("q.hands_correct >= 0.5", old.schema, BY_NAME)
    new = parse_filter("q.hands_correct >= 0.5", table.schema, BY_NAME)
    assert f.keep_mask(old).tolist() == new.keep_mask(table).tolist()
    with pytest.raises(FilterError, match="m.hands_correct reads the answer_mass column, which these scores do not have"):
        parse_filter("m.hands_correct >= 0.5", old.schema, BY_NAME)


def test_filter_command_writes_a_scores_output_and_accounts_for_every_row(tmp_path: Path, ray_session):
    rng = np.random.default_rng(4)
    rows = random_rows(rng, 8, (2, 5), error_rate=0.2) + random_rows(rng, 4, (2, 3), media_type="video", prefix="v")
    write_scores(tmp_path / "s", rows)
    where = "dim_quality >= 0 and q.sharp >= 0.3"
    assert main(["filter", "--scores", str(tmp_path / "s"), "--where", where, "--out", str(tmp_path / "f"),
                 "--quiet"]) == 0
    kept = pq.ParquetDataset(tmp_path / "f" / "scores")
    source = scores_table(rows)
    expected = [r["id"] for r in source.to_pylist()
                if r["status"] == "ok" and and_(cmp(r["dim_quality"], ">=", 0), cmp(q(r, "sharp"), ">=", 0.3))]
    assert sorted(kept.read()["id"].to_pylist()) == sorted(expected)
    assert kept.schema.remove_metadata() == source.schema.remove_metadata()  # manifest columns + scores, unchanged
    assert read_checklists_metadata(kept.schema).keys() == {"image", "video"}  # still a scores output
    summary = json.loads((tmp_path / "f" / "filter.json").read_text())
    assert summary["kept"] == len(expected) and summary["rows"] == len(rows)
    assert summary["kept"] + sum(summary["dropped"].values()) == len(rows)
    assert summary["dropped"]["status decode_error"] == sum(r["status"] != "ok" for r in source.to_pylist())

    # Nothing kept: an empty output that still opens with the schema (and feeds other jobs).
    assert main(["filter", "--scores", str(tmp_path / "f"), "--where", "score > 100", "--out", str(tmp_path / "e"),
                 "--quiet"]) == 0
    empty = pq.ParquetDataset(tmp_path / "e" / "scores")
    assert empty.read().num_rows == 0 and read_checklists_metadata(empty.schema)
