"""Our default checklists order planted answer patterns sensibly under the 'mean' rule.

Every scored question of the defaults is worded so that "yes" is the good answer; the
gating questions (image: has_person, has_visible_hands) only decide what counts.
"""
import itertools

import numpy as np
import pytest

from pipeline.weighting import aggregate
from schemas.checklist import default_checklist

YES, NO = 0.95, 0.05
GATES = ("has_person", "has_visible_hands")


def _item(checklist, no=(), gates_no=()):
    """p_yes of an item that answers yes everywhere except `no` and the gates in `gates_no`."""
    ids = checklist.question_ids
    unknown = (set(no) | set(gates_no)) - set(ids)
    assert not unknown, unknown
    return np.array([NO if q in no or q in gates_no else YES for q in ids])


def _scores(checklist, items):
    out = aggregate(checklist, np.stack(items))
    return out.score, out.score_soft


def test_flawless_no_person_image_ranks_above_people_with_flaws():
    # the reproduced defect: masks pulled the flawless no-person image below a wrong-hands one
    c = default_checklist("image")
    flawless_no_person = _item(c, gates_no=GATES)
    flawed_people = [_item(c, no=["hands_correct"]), _item(c, no=["faces_correct"]),
                     _item(c, no=["anatomy_correct"]), _item(c, no=["hands_correct", "faces_correct"])]
    score, soft = _scores(c, [flawless_no_person, *flawed_people])
    assert (score[0] > score[1:]).all(), score
    assert (soft[0] > soft[1:]).all(), soft


@pytest.mark.parametrize("gates_no", [(), ("has_visible_hands",), ("has_person",), GATES])
def test_flawless_image_scores_the_maximum_whatever_its_gates(gates_no):
    c = default_checklist("image")
    out = aggregate(c, _item(c, gates_no=gates_no)[None])
    assert out.score[0] == pytest.approx(1.0)
    assert all(v[0] == pytest.approx(1.0) for v in out.dimensions.values())


def _counted(checklist, gates_no):
    """Scored questions that count when the gates in `gates_no` say no."""
    masked = set()
    for m in checklist.masks:
        if m.question in gates_no or m.question in masked:
            masked |= set(m.zeroes)
    return [q.id for q in checklist.questions if q.weight != 0 and q.id not in masked]


@pytest.mark.parametrize("kind", ["image", "video"])
def test_more_good_answers_never_score_lower(kind):
    # random flaw patterns, every gate combination; flip one counted "no" to "yes" at a time
    c = default_checklist(kind)
    gate_sets = [()] if kind == "video" else [g for r in range(3) for g in itertools.combinations(GATES, r)]
    rng = np.random.default_rng(0)
    for gates_no in gate_sets:
        counted = _counted(c, gates_no)
        for _ in range(40):
            no = [q for q in counted if rng.random() < 0.4]
            base_score, base_soft = _scores(c, [_item(c, no=no, gates_no=gates_no)])
            base_dims = aggregate(c, _item(c, no=no, gates_no=gates_no)[None]).dimensions
            for fixed in no:
                better = _item(c, no=[q for q in no if q != fixed], gates_no=gates_no)
                out = aggregate(c, better[None])
                assert out.score[0] > base_score[0] and out.score_soft[0] > base_soft[0]
                assert all(out.dimensions[d][0] >= base_dims[d][0] for d in base_dims)


@pytest.mark.parametrize("kind", ["image", "video"])
def test_any_flaw_ranks_below_every_flawless_item(kind):
    # across gate patterns too: a no-person image with one small flaw must not outrank a
    # flawless image of a person (a plain count mean over unequal weights would do that)
    c = default_checklist(kind)
    gate_sets = [()] if kind == "video" else [g for r in range(3) for g in itertools.combinations(GATES, r)]
    flawless = [_item(c, gates_no=g) for g in gate_sets]
    flawed = [_item(c, no=[q], gates_no=g) for g in gate_sets for q in _counted(c, g)]
    score, soft = _scores(c, [*flawless, *flawed])
    k = len(flawless)
    assert score[:k].min() > score[k:].max() and soft[:k].min() > soft[k:].max()


@pytest.mark.parametrize("kind", ["image", "video"])
def test_a_flaw_on_a_heavier_question_costs_more(kind):
    c = default_checklist(kind)
    counted = _counted(c, ())
    weight = {q.id: q.weight for q in c.questions}
    score, _ = _scores(c, [_item(c, no=[q]) for q in counted])
    for (qa, sa), (qb, sb) in itertools.combinations(zip(counted, score), 2):
        if weight[qa] > weight[qb]:
            assert sa < sb, (qa, qb)
        elif weight[qa] == weight[qb]:
            assert sa == pytest.approx(sb)
