"""`vrscore fit` end to end on a local Ray: planted weights behind made-up scores and Parquet
pairs, every left-out pair counted, the fitted checklist loadable and scoring as the model;
the ImageReward JSON format through a key column; --max-pairs; fit and rescore on S3."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from jobs.cli import main
from pipeline.weight_fit import FeatureLayout, item_features
from pipeline.weighting import aggregate
from schemas.checklist_set import resolve_checklists
from tests.job_process import job_env, ray_tmp, run_job  # noqa: F401 - fixture
from tests.paths import PREFERENCES, require
from tests.ray_fixtures import ray_session  # noqa: F401 - fixture
from tests.s3_fixtures import s3_endpoint  # noqa: F401 - fixture
from tests.scores_fixtures import CHECKLISTS, random_rows, write_scores
from tests.test_eval_command import made_up_rows

IMAGE = CHECKLISTS["image"]


def planted_case(tmp: Path, seed: int = 0) -> dict:
    """Image groups scored with made-up p_yes (a few failed), some video groups, and Parquet
    pairs drawn from known weights, with ties, missing items and image-video pairs."""
    rng = np.random.default_rng(seed)
    rows = random_rows(rng, 700, (4, 6), error_rate=0.02) + random_rows(rng, 20, (3, 3), media_type="video", prefix="v")
    write_scores(tmp / "s", rows)
    ok = {r["id"]: r for r in rows if r.get("p_yes") is not None}
    names = FeatureLayout.of(IMAGE).questions
    w = rng.uniform(0.3, 1.5, len(names))
    w[[1, 4, 9, 12]] = 0.0
    utility = {k: float(item_features(IMAGE, r["p_yes"][None, :].astype(np.float64))[0] @ w)
               for k, r in ok.items() if r["media_type"] == "image"}
    pairs, expect = [], {"missing_item": 0, "failed_item": 0, "mixed_media": 0, "human_ties": 0, "fitted": 0}
    by_group: dict[str, list[str]] = {}
    for r in rows:
        by_group.setdefault(r["group"], []).append(r["id"])
    for g, ids in by_group.items():
        for i in range(len(ids)):
            for j in range(i + 1, len(ids)):
                a, b = ids[i], ids[j]
                if a not in ok or b not in ok:
                    pref = int(rng.choice([-1, 0, 1]))
                    expect["failed_item"] += 1
                elif rng.random() < 0.05:
                    pref = 0
                    expect["human_ties"] += a in utility
                else:
                    if a in utility:
                        pref = 1 if rng.random() < 1 / (1 + np.exp(utility[b] - utility[a])) else -1
                        expect["fitted"] += 1
                    else:
                        pref = int(rng.choice([-1, 1]))
                pairs.append({"group": g, "a_id": a, "b_id": b, "preference": pref})
    images, videos = sorted(utility), [k for k in ok if k.startswith("v")]
    for k in range(30):
        pairs.append({"group": "cross", "a_id": images[k], "b_id": videos[k], "preference": 1})
        pairs.append({"group": "lost", "a_id": images[k], "b_id": f"nowhere/{k}", "preference": -1})
    expect["mixed_media"] = expect["missing_item"] = 30
    pq.write_table(pa.Table.from_pylist(pairs), tmp / "pairs.parquet")
    return {"w": w, "names": names, "expect": expect, "rows": rows, "judged": len(pairs)}


def test_fit_recovers_planted_weights_and_writes_a_usable_checklist(tmp_path: Path, ray_session, capsys):
    case = planted_case(tmp_path)
    args = ["fit", "--scores", str(tmp_path / "s"), "--judgments", str(tmp_path / "pairs.parquet"),
            "--out", str(tmp_path / "fit"), "--quiet"]
    assert main(args) == 0
    printed = capsys.readouterr().out
    report = json.loads((tmp_path / "fit" / "fit.json").read_text())
    e = case["expect"]
    assert report["pairs"] == {"judged": case["judged"], "missing_item": e["missing_item"],
                               "failed_item": e["failed_item"], "mixed_media": e["mixed_media"]}
    image = report["media_types"]["image"]
    assert image["pairs"]["fitted"] == e["fitted"] and image["pairs"]["human_ties"] == e["human_ties"]
    assert image["solver"]["converged"] and "converged in" in printed
    w = np.array([image["weights"][n] for n in case["names"]])
    assert w @ case["w"] / np.linalg.norm(w) / np.linalg.norm(case["w"]) >= 0.95
    assert np.all(w[case["w"] == 0] <= 0.1 * w.max())
    assert set(image["zero_weight_questions"]) <= {n for n, v in zip(case["names"], case["w"]) if v == 0}
    cv = image["cross_validation"]
    assert cv["folds"] == 5 and len(cv["per_fold"]) == 5 and cv["all_converged"]
    assert 0.6 < cv["accuracy_ties_dropped"]["mean"] < 1 and cv["accuracy_ties_dropped"]["sd"] > 0
    curve = image["learning_curve"]
    assert [p["train_pairs"] for p in curve][:4] == [100, 200, 500, 1000]
    assert curve[-1]["accuracy_ties_dropped"]["mean"] > curve[0]["accuracy_ties_dropped"]["mean"]
    assert "video" in report["media_types"]  # one fit per media type

    # The fitted checklist loads as `vrscore score --checklist` loads it and scores as the model.
    fitted = resolve_checklists([str(tmp_path / "fit" / "image.yaml")])["image"]
    assert [q.weight for q in fitted.questions if q.id in image["weights"]] == list(image["weights"].values())
    p = np.stack([r["p_yes"] for r in case["rows"][:50] if r.get("p_yes") is not None and r["media_type"] == "image"])
    np.testing.assert_allclose(aggregate(fitted, p).score, item_features(IMAGE, p.astype(np.float64)) @ w,
                               rtol=1e-12, atol=1e-12)

    assert main(args) == 2  # a second fit into the same --out is refused
    assert "exists" in capsys.readouterr().err


def test_fit_on_imagereward_json_through_a_key_column_with_max_pairs(tmp_path: Path, ray_session, capsys):
    items = json.loads(require(PREFERENCES / "imagereward_test.json").read_text())[:120]
    rows = made_up_rows(items, np.random.default_rng(3), key="ir_key")
    write_scores(tmp_path / "s", rows, keep_fields=[pa.field("ir_key", pa.string())])
    judged = sum(len(it["generations"]) * (len(it["generations"]) - 1) // 2 for it in items)
    assert main(["fit", "--scores", str(tmp_path / "s"), "--judgments", str(PREFERENCES / "imagereward_test.json"),
                 "--key-column", "ir_key", "--features", "soft", "--max-pairs", "500", "--folds", "3",
                 "--out", str(tmp_path / "fit"), "--quiet"]) == 0
    printed = capsys.readouterr().out
    report = json.loads((tmp_path / "fit" / "fit.json").read_text())
    image = report["media_types"]["image"]
    assert report["pairs"]["judged"] > judged  # the whole test split is judged; only 120 prompts are scored
    assert report["pairs"]["missing_item"] > 0 and report["pairs"]["failed_item"] > 0
    assert image["sampled_from"] > 500 and image["pairs"]["scored"] == 500
    assert "more than --max-pairs: fitting a seeded sample of 500" in printed
    assert image["cross_validation"]["folds"] == 3
    assert image["in_sample"]["stored_score_soft"]["pairs"] == 500
    # made_up_rows follow the human ranking: the fitted soft score agrees with it.
    assert image["cross_validation"]["accuracy_ties_dropped"]["mean"] > 0.55


@pytest.mark.parametrize("judgments, message", [
    ({"group": ["g"], "a_id": ["x"], "b_id": ["y"], "preference": [1]}, "none of the 2 judged items"),
])
def test_fit_refuses_judgments_that_match_nothing(tmp_path: Path, ray_session, capsys, judgments, message):
    write_scores(tmp_path / "s", random_rows(np.random.default_rng(0), 3, (2, 2)))
    pq.write_table(pa.table(judgments), tmp_path / "j.parquet")
    assert main(["fit", "--scores", str(tmp_path / "s"), "--judgments", str(tmp_path / "j.parquet"),
                 "--out", str(tmp_path / "fit"), "--quiet"]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "fit").exists()


@pytest.mark.slow
def test_rescore_and_fit_on_s3(tmp_path: Path, s3_endpoint, ray_tmp):  # noqa: F811
    """Both commands read and write s3:// through the downstream commands' storage flags."""
    bucket = s3_endpoint.make_bucket()
    rows = random_rows(np.random.default_rng(5), 40, (3, 5))
    write_scores(tmp_path / "s", rows)
    for f in sorted((tmp_path / "s").rglob("*.*")):
        s3_endpoint.upload(f, f"s3://{bucket}/s/{f.relative_to(tmp_path / 's')}")
    ids = [r["id"] for r in rows]
    pq.write_table(pa.table({"group": [i.split("/")[0] for i in ids], "id": ids,
                             "rank": [int(i.split("/")[1]) for i in ids]}), tmp_path / "j.parquet")
    judgments = s3_endpoint.upload(tmp_path / "j.parquet", f"s3://{bucket}/j.parquet")
    flags = ["--endpoint-url", s3_endpoint.url, "--quiet"]
    commands = [["rescore", "--scores", f"s3://{bucket}/s", "--checklist", "default", "--out", f"s3://{bucket}/r",
                 *flags],
                ["fit", "--scores", f"s3://{bucket}/r", "--judgments", judgments, "--out", f"s3://{bucket}/fit",
                 *flags]]
    script = f"import sys; from jobs.cli import main; sys.exit(max(main(c) for c in {commands!r}))"
    proc = run_job([sys.executable, "-c", script], job_env(ray_tmp, s3_endpoint.env))
    assert proc.returncode == 0, proc.stderr[-4000:]
    fs = s3_endpoint.filesystem()
    rescored = pa.concat_tables(pq.read_table(fs.open(f, "rb")) for f in fs.find(f"{bucket}/r/scores"))
    original = pq.read_table(tmp_path / "s" / "scores")
    assert rescored.sort_by("id").select(original.column_names).equals(original.sort_by("id"))
    assert fs.exists(f"{bucket}/r/rescore.json") and fs.exists(f"{bucket}/fit/image.yaml")
    report = json.loads(fs.cat_file(f"{bucket}/fit/fit.json"))
    assert report["pairs"]["judged"] == sum(len(g) * (len(g) - 1) // 2 for g in
                                            _groups(ids).values())
    assert report["media_types"]["image"]["solver"]["converged"]


def _groups(ids: list[str]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for i in ids:
        out.setdefault(i.split("/")[0], []).append(i)
    return out


def test_a_checklist_for_any_media_is_written_per_kind(tmp_path: Path):
    """fit_media without Ray: each kind's file names its own kind, so both load side by side."""
    import argparse

    import yaml

    from jobs.fit_command import fit_media
    from jobs.fit_data import MediaPairs
    from pipeline.weight_fit import Pairs

    anyone = IMAGE.model_copy(update={"media_type": "any"})
    rng = np.random.default_rng(0)
    p = rng.random((40, len(IMAGE.questions))).astype(np.float32)
    a, b = np.arange(0, 40, 2), np.arange(1, 40, 2)
    data = MediaPairs(p, None, {"score": np.zeros(40)}, Pairs(a, b, rng.choice([-1, 1], 20)), a // 4)
    args = argparse.Namespace(max_pairs=100, seed=0, features="hard", l2=0.1, allow_negative=False, folds=2)
    paths = []
    for kind in ("image", "video"):
        fitted, _ = fit_media(kind, anyone, data, args)
        assert fitted.media_type == kind and fitted.name == f"{IMAGE.name}+fit:{kind}"
        paths.append(tmp_path / f"{kind}.yaml")
        paths[-1].write_text(yaml.safe_dump(json.loads(fitted.to_json())))
    assert set(resolve_checklists([str(x) for x in paths])) == {"image", "video"}


def _fit_args(**over):
    import argparse
    return argparse.Namespace(**{**dict(max_pairs=100_000, seed=0, features="hard", l2=0.01, allow_negative=False,
                                        folds=2), **over})


def test_a_question_named_alignment_is_fitted_as_a_question_beside_the_alignment_term():
    """The alignment term is not a question: a question whose id is `alignment` keeps its own
    weight in the report, fit.json and the fitted checklist, apart from alignment_weight."""
    from jobs.fit_command import fit_media, format_report
    from jobs.fit_data import MediaPairs
    from pipeline.weight_fit import Pairs
    from schemas.checklist import Aggregation, Checklist, Question

    ids = ["alignment", "sharp", "bright"]
    checklist = Checklist(name="named", media_type="image", aggregation=Aggregation(rule="linear", alignment_weight=1),
                          questions=[Question(id=q, text=f"Is it {q}?", dimension=q) for q in ids])
    rng = np.random.default_rng(1)
    n = 400
    p = rng.random((n, 3)).astype(np.float32)
    align = rng.random(n)
    answers = np.where(p >= 0.5, 1.0, -1.0)
    utility = 4.0 * align + answers @ np.array([0.0, 1.0, 0.5])  # the term weighs 4, the question 0
    a, b = np.arange(0, n, 2), np.arange(1, n, 2)
    y = np.where(rng.random(len(a)) < 1 / (1 + np.exp(utility[b] - utility[a])), 1, -1)
    data = MediaPairs(p, align, {"score": np.zeros(n)}, Pairs(a, b, y), a // 8)
    fitted, r = fit_media("image", checklist, data, _fit_args())

    assert list(r["weights"]) == ids  # the question is reported (it was left out)
    assert [q.weight for q in fitted.questions] == [r["weights"][q] for q in ids]
    assert fitted.aggregation.alignment_weight == r["alignment_weight"]
    assert r["alignment_weight"] > 2.0 and r["weights"]["alignment"] < 0.5  # not one weight copied into the other
    # The fitted checklist scores items as the fitted model: term and question each with its own weight.
    expected = r["alignment_weight"] * align + answers @ np.array([r["weights"][q] for q in ids])
    np.testing.assert_allclose(aggregate(fitted, p, align).score, expected, rtol=1e-9, atol=1e-9)
    assert any(line.startswith("alignment ") for line in format_report("image", checklist, r, "x").splitlines())


def _tiny_pairs(sizes: list[int], tied_groups: tuple[int, ...] = (), seed: int = 0):
    """Image items in groups of pairs (sizes[g] pairs in group g), preferences from the
    default checklist's uniform weights; the pairs of `tied_groups` are human ties."""
    from jobs.fit_data import MediaPairs
    from pipeline.weight_fit import Pairs

    rng = np.random.default_rng(seed)
    n = 2 * sum(sizes)
    p = rng.random((n, len(IMAGE.questions))).astype(np.float32)
    a, b = np.arange(0, n, 2), np.arange(1, n, 2)
    group = np.repeat(np.arange(len(sizes)), sizes)
    s = item_features(IMAGE, p.astype(np.float64)).sum(axis=1)
    y = np.where(s[a] >= s[b], 1, -1)
    y[np.isin(group, tied_groups)] = 0
    return MediaPairs(p, None, {"score": s}, Pairs(a, b, y), group)


@pytest.mark.parametrize("seed", [3, 5])  # seeds whose shuffle put the large group last
def test_cross_validation_with_one_dominant_group_trains_every_fold(seed):
    from jobs.fit_command import fit_media, format_report

    _, r = fit_media("image", IMAGE, _tiny_pairs([100, 1, 1, 1, 1]), _fit_args(folds=5, seed=seed))
    cv = r["cross_validation"]
    assert cv["folds"] == 5 and all(f["train_pairs"] > 0 for f in cv["per_fold"])
    assert "+/- 0.00" not in format_report("image", IMAGE, r, "x")


def test_held_out_figures_need_groups_with_untied_pairs_to_train_on():
    from jobs.fit_command import fit_media, format_report

    # Negative control: two groups with untied pairs give held-out figures.
    _, r = fit_media("image", IMAGE, _tiny_pairs([20, 20]), _fit_args())
    assert r["cross_validation"]["folds"] == 2 and "held-out (2-fold" in format_report("image", IMAGE, r, "x")
    # Group 1 all human ties: the fold holding out group 0 has nothing to train on.
    for data in (_tiny_pairs([20, 20], tied_groups=(1,)), _tiny_pairs([20])):
        _, r = fit_media("image", IMAGE, data, _fit_args())
        printed = format_report("image", IMAGE, r, "x")
        assert r["cross_validation"] is None and r["learning_curve"] is None
        assert r["cross_validation_skipped"].startswith("not enough groups")
        assert "held-out: not enough groups" in printed and "acc(-ties) 0.00" not in printed
