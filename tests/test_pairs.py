"""Pair mining against a brute-force enumeration of every ordered pair, on random groups
(continuous and heavily tied scores, failed rows, images and videos in one group), and the
`vrscore pairs` command end to end on a local Ray."""
import itertools
import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from jobs.cli import main
from pipeline.pair_mining import mine_pairs
from schemas.pairs import gap_column
from tests.ray_fixtures import ray_session  # noqa: F401 - fixture
from tests.scores_fixtures import random_rows, scores_table, write_scores

DIMS = [f.name for f in scores_table([]).schema if f.name.startswith("dim_")]


def brute_candidates(rows: list[dict], strategy: str, score: str, margin: float, dims: list[str]) -> set:
    ok = [r for r in rows if r["status"] == "ok" and r[score] is not None]
    out = set()
    for a, b in itertools.permutations(ok, 2):
        if a["checklist"] != b["checklist"]:
            continue
        gap = a[score] - b[score]
        if strategy == "all" and gap > 0 and gap >= margin:
            out.add((a["id"], b["id"]))
        if strategy == "dominance" and gap >= margin:
            same = [r for r in ok if r["checklist"] == a["checklist"]]
            considered = [d for d in dims if any(r[d] is not None for r in same)]
            if any(a[d] is None or b[d] is None for d in considered):
                continue
            if all(a[d] >= b[d] for d in considered) and any(a[d] > b[d] for d in considered):
                out.add((a["id"], b["id"]))
    return out


def random_group(rng, levels) -> pa.Table:
    rows = random_rows(rng, 1, (2, 9), levels=levels, error_rate=0.15)
    if rng.random() < 0.4:  # a video in the same group: never paired with the images
        videos = random_rows(rng, 1, (1, 4), media_type="video", levels=levels, prefix="v")
        rows += [{**v, "group": rows[0]["group"], "prompt": rows[0]["prompt"]} for v in videos]
    return scores_table(rows)


@pytest.mark.parametrize("levels", [None, 2, 3])
@pytest.mark.parametrize("strategy", ["all", "dominance"])
def test_all_and_dominance_match_brute_force(strategy, levels):
    rng = np.random.default_rng(hash((strategy, levels)) % 2**32)
    for trial in range(25):
        table = random_group(rng, levels)
        rows = table.to_pylist()
        score = "score_soft" if trial % 2 else "score"
        margin = float(rng.choice([0.0, 0.05, 0.2]))
        dims = DIMS if trial % 3 else ["dim_quality", "dim_alignment", "dim_physics"]
        cap = int(rng.choice([0, 1, 3]))
        got = mine_pairs(table, strategy, dimension_columns=DIMS, dominance_columns=dims, score_column=score,
                         margin=margin, pairs_per_group=cap, seed=trial).to_pylist()
        expected = brute_candidates(rows, strategy, score, margin, dims)
        by_id = {r["id"]: r for r in rows}
        got_pairs = [(p["chosen_id"], p["rejected_id"]) for p in got]
        assert set(got_pairs) <= expected and len(set(got_pairs)) == len(got_pairs)
        assert len(got) == (min(cap, len(expected)) if cap else len(expected))
        # The cap keeps the largest gaps; which of equal gaps is the seed's choice.
        gaps = sorted((by_id[c][score] - by_id[r][score] for c, r in expected), reverse=True)
        kept_gaps = sorted((p["chosen_score"] - p["rejected_score"] for p in got), reverse=True)
        assert kept_gaps == pytest.approx(gaps[:len(got)])
        for p in got:
            c, r = by_id[p["chosen_id"]], by_id[p["rejected_id"]]
            assert (p["chosen_score"], p["rejected_score"], p["chosen_uri"]) == (c[score], r[score], c["uri"])
            for d in DIMS:
                want = None if c[d] is None or r[d] is None else c[d] - r[d]
                assert p[gap_column(d)] == pytest.approx(want)


@pytest.mark.parametrize("levels", [None, 2])
def test_margin_is_best_against_worst_per_checklist(levels):
    rng = np.random.default_rng(3)
    for trial in range(30):
        table = random_group(rng, levels)
        ok = [r for r in table.to_pylist() if r["status"] == "ok"]
        margin = float(rng.choice([0.0, 0.1]))
        got = mine_pairs(table, "margin", dimension_columns=DIMS, margin=margin, seed=trial).to_pylist()
        expected_pairs = 0
        for name in {r["checklist"] for r in ok}:
            scores = [r["score"] for r in ok if r["checklist"] == name]
            gap = max(scores) - min(scores) if scores else 0
            mine = [p for p in got if p["chosen_id"] in {r["id"] for r in ok if r["checklist"] == name}]
            if gap > 0 and gap >= margin:
                expected_pairs += 1
                assert [(p["chosen_score"], p["rejected_score"]) for p in mine] == [(max(scores), min(scores))]
        assert len(got) == expected_pairs


def test_result_does_not_depend_on_row_order_and_ties_follow_the_seed():
    rows = random_rows(np.random.default_rng(5), 1, (12, 12), levels=2)
    for r in rows[:4]:  # four items tie for best, four for worst
        r["p_yes"] = np.ones_like(r["p_yes"])
    for r in rows[-4:]:
        r["p_yes"] = np.zeros_like(r["p_yes"])
    table = scores_table(rows)
    shuffled = scores_table([rows[i] for i in np.random.default_rng(1).permutation(len(rows))])
    for strategy in ("margin", "all", "dominance"):
        kw = dict(dimension_columns=DIMS, pairs_per_group=2, seed=11)
        assert mine_pairs(table, strategy, **kw).equals(mine_pairs(shuffled, strategy, **kw))
    picks = {tuple(mine_pairs(table, "margin", dimension_columns=DIMS, seed=s).to_pylist()[0][k]
                   for k in ("chosen_id", "rejected_id")) for s in range(20)}
    best, worst = {r["id"] for r in rows[:4]}, {r["id"] for r in rows[-4:]}
    assert all(c in best and r in worst for c, r in picks) and len(picks) > 4


def test_pairs_command_matches_brute_force_and_writes_dpo_json(tmp_path: Path, ray_session):
    rng = np.random.default_rng(21)
    rows = random_rows(rng, 12, (1, 6), levels=3, error_rate=0.1)
    rows += random_rows(rng, 4, (2, 4), media_type="video", prefix="v")
    write_scores(tmp_path / "scores", rows)
    out = tmp_path / "pairs_out"
    assert main(["pairs", "--scores", str(tmp_path / "scores"), "--strategy", "all", "--margin", "0.05",
                 "--score-column", "score_soft", "--pairs-per-group", "0", "--out", str(out),
                 "--format", "parquet,diffusion-dpo,videodpo", "--quiet"]) == 0
    pairs = pq.read_table(out / "pairs").to_pylist()
    scored = scores_table(rows).to_pylist()
    expected = set()
    for group in {r["group"] for r in scored}:
        expected |= brute_candidates([r for r in scored if r["group"] == group], "all", "score_soft", 0.05, DIMS)
    assert {(p["chosen_id"], p["rejected_id"]) for p in pairs} == expected and len(pairs) == len(expected)
    prompts = {r["id"]: r["prompt"] for r in scored}
    assert all(p["prompt"] == prompts[p["chosen_id"]] and p["group"] == p["chosen_id"].split("/")[0] for p in pairs)

    def records(fmt: str) -> list[dict]:
        return [json.loads(line) for f in sorted((out / fmt).glob("*.jsonl")) for line in f.read_text().splitlines()]

    key = lambda r: json.dumps(r, sort_keys=True)  # noqa: E731
    want_dd = [{"caption": p["prompt"], "jpg_0": p["chosen_uri"], "jpg_1": p["rejected_uri"], "label_0": 1}
               for p in pairs]
    want_vd = [{"caption": p["prompt"], "chosen": p["chosen_uri"], "rejected": p["rejected_uri"]} for p in pairs]
    assert sorted(map(key, records("diffusion-dpo"))) == sorted(map(key, want_dd))
    assert sorted(map(key, records("videodpo"))) == sorted(map(key, want_vd))
    summary = json.loads((out / "pairs.json").read_text())
    assert summary["pairs"] == len(pairs) and summary["strategy"] == "all"
    # A second run into the same place would duplicate every pair: refused.
    assert main(["pairs", "--scores", str(tmp_path / "scores"), "--out", str(out), "--quiet"]) == 2
