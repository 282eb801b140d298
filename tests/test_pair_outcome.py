"""The pure parts of pairwise judging: from both orders' distributions to p_a, and the job's plan
(units that keep a group's pairs together, decodes per item, the pairs file's checks)."""
from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet  # noqa: F401  (pa.parquet)
import pytest

from actors.pair_outcome import pair_outcome
from pipeline.judge_plan import (MAX_PARTITIONS, ROWS_PER_PARTITION, assign_units, build_plan, decode_counts,
                                 given_pairs, shuffle_partitions, unit_partitions)
from schemas.checklist import Checklist
from schemas.user_error import UserError


def test_p_a_averages_both_orders():
    ab = np.array([[0.8, 0.2], [0.3, 0.7]])
    ba = np.array([[0.4, 0.6], [0.9, 0.1]])  # b shown first
    o = pair_outcome(ab, ba)
    np.testing.assert_allclose(o.p_a, [(0.8 + 1 - 0.4) / 2, (0.3 + 1 - 0.9) / 2], rtol=1e-6)
    np.testing.assert_allclose(o.position_bias, [(0.8 + 0.4) / 2 - 0.5, (0.3 + 0.9) / 2 - 0.5], rtol=1e-6)
    # q0: a wins both orders; q1: the first slot wins in "ba" (b) but not in "ab" (a second): both say b
    assert o.consistent.tolist() == [True, True]
    assert o.p_tie is None
    # a judge that always says "first" prefers nobody and shows full position bias
    always_first = pair_outcome(np.array([[1.0, 0.0]]), np.array([[1.0, 0.0]]))
    assert always_first.p_a[0] == 0.5 and always_first.position_bias[0] == 0.5 and not always_first.consistent[0]


def test_ties_count_half_for_each_side():
    ab = np.array([[0.5, 0.2, 0.3]])
    ba = np.array([[0.1, 0.5, 0.4]])
    o = pair_outcome(ab, ba)
    np.testing.assert_allclose(o.p_a, [((0.5 + 0.15) + (0.5 + 0.2)) / 2], rtol=1e-6)
    np.testing.assert_allclose(o.p_tie, [0.35], rtol=1e-6)
    assert o.consistent[0]


def test_units_keep_a_group_together_and_cut_large_ones():
    units = assign_units(["g", "h", "g", None, "g", "h", None], unit_pairs=2)
    assert units.tolist() == [0, 2, 0, 3, 1, 2, 3]
    plan = build_plan(pa.table({"id": list("pqrs"), "a": ["x", "x", "y", "x"], "b": ["y", "z", "z", "w"],
                                "group": ["g", "g", "g", "h"], "prompt": [None] * 4}),
                      pa.table({"id": list("xyzw"), "uri": [f"/{c}.png" for c in "xyzw"]}))
    assert plan["unit"].to_pylist() == [0, 0, 0, 1]
    assert decode_counts(plan) == {"x": 2, "y": 1, "z": 1, "w": 1}  # x is in two groups
    assert plan["b_uri"].to_pylist() == ["/y.png", "/z.png", "/z.png", "/w.png"]


def test_pairs_file_is_checked():
    with pytest.raises(UserError, match="missing"):
        given_pairs(pa.table({"a": ["x"]}), "p.parquet")
    with pytest.raises(UserError, match="itself"):
        given_pairs(pa.table({"a": ["x"], "b": ["x"]}), "p.parquet")
    with pytest.raises(UserError, match="appears twice"):
        given_pairs(pa.table({"a": ["x", "x"], "b": ["y", "y"]}), "p.parquet")
    with pytest.raises(UserError, match="lacks"):
        build_plan(given_pairs(pa.table({"a": ["x"], "b": ["q"]}), "p"), pa.table({"id": ["x"], "uri": ["/x"]}))
    assert given_pairs(pa.table({"a": [1], "b": [2]}), "p")["id"].to_pylist() == ["1|2"]


PAIRWISE = dict(name="p", media_type="image", mode="pairwise", first_words=["1"], second_words=["2"],
                aggregation={"rule": "mean"}, questions=[{"id": "q", "text": "Which?", "dimension": "d"}])


def test_pairwise_checklists_are_checked():
    Checklist.model_validate(PAIRWISE)
    with pytest.raises(ValueError, match="second_words"):
        Checklist.model_validate({**PAIRWISE, "second_words": None})
    with pytest.raises(ValueError, match="share a word"):
        Checklist.model_validate({**PAIRWISE, "tie_words": ["One", "1"]})
    with pytest.raises(ValueError, match="pairwise"):
        Checklist.model_validate({**PAIRWISE, "mode": "pointwise"})
    with pytest.raises(ValueError, match="in that order"):
        Checklist.model_validate({**PAIRWISE, "prompt_template": "[[media_2]] [[media_1]] [[question]]"})
    c = Checklist.model_validate({**PAIRWISE, "prompt_template": "A: [[media_1]] B: [[media_2]] [[question]] 1 or 2?"})
    assert c.media_texts() == ("A: ", " B: ", " [[question]] 1 or 2?")
    assert c.render(None) == [" Which? 1 or 2?"]


def test_a_list_of_one_parquet_file_is_listed(tmp_path):
    # OUT/items/ is fitted from the committed pair files: often a list of one, which pyarrow's
    # ParquetDataset takes for a tuple it cannot open
    from pipeline.parquet_reader import parquet_files

    path = str(tmp_path / "one.parquet")
    pa.parquet.write_table(pa.table({"x": [1]}), path)
    assert parquet_files([path], None) == [path]
    assert parquet_files((path,), None) == [path]


def test_the_judge_groupings_scale_with_the_job():
    # Ray Data's default (200 partitions) makes a small job hundreds of near-empty tasks and files
    assert [shuffle_partitions(n) for n in (0, 1, ROWS_PER_PARTITION, ROWS_PER_PARTITION + 1)] == [1, 1, 1, 2]
    assert shuffle_partitions(10**12) == MAX_PARTITIONS
    plan = pa.table({"unit": pa.array([0, 0, 1, 2, 2, 2], pa.int64())})
    assert unit_partitions(plan) == 3  # one per unit, so every decode actor gets some
    many = pa.table({"unit": pa.array(np.arange(5 * MAX_PARTITIONS), pa.int64())})
    assert unit_partitions(many) == MAX_PARTITIONS
