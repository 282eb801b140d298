"""`vrscore fit --scores DIR --judgments FILE --out DIR`: checklist weights from human preferences.

Fits VisionReward's pairwise model (`pipeline/weight_fit.py`) on the stored p_yes of the
judged items, one fit per media type, and writes OUT/<media_type>.yaml (the checklist with
the fitted weights, for `vrscore score --checklist` and `vrscore rescore`), OUT/fit.json
(weights, solver status, pairs used and skipped, cross-validation, learning curve) and a
table on the console. Judgments and the join are `vrscore eval`'s.
"""
from __future__ import annotations

import argparse
import json
import time

import fsspec
import numpy as np
import pyarrow.compute as pc
import yaml

from jobs.eval_command import JUDGMENTS_HELP, load_judgments
from jobs.fit_data import MediaPairs, assemble, collect_judged_rows, source_alignment_column
from pipeline.output_lease import check_free, output_lease
from pipeline.fit_validation import (cross_validate, evaluate, grouped_folds, learning_curve, summarise,
                                     untrainable_folds)
from pipeline.preference_metrics import preference_metrics, score_differences
from pipeline.scores_input import add_ray_arguments, add_storage_arguments, open_scores, storage_from_args, write_text
from pipeline.storage import fsspec_filesystem, join
from pipeline.weight_fit import FeatureLayout, Pairs, fitted_checklist, has_alignment, item_features, solve
from schemas.checklist import Checklist
from schemas.user_error import UserError

FIT_FILE = "fit.json"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.formatter_class = argparse.RawDescriptionHelpFormatter
    p.epilog = JUDGMENTS_HELP
    p.add_argument("--scores", required=True, help="output of `vrscore score` (DIR or DIR/scores; local path or URI)")
    p.add_argument("--judgments", required=True, help="human judgments, the formats `vrscore eval` reads (below)")
    p.add_argument("--out", required=True, help="output directory: <media_type>.yaml per fit and fit.json")
    p.add_argument("--key-column", default="id", help="scores column holding the keys the judgments name")
    p.add_argument("--features", choices=("hard", "soft"), default="hard",
                   help="hard: the +1/-1 answers (the fitted checklist's `score`); soft: 2*p_yes-1 (its `score_soft`)")
    p.add_argument("--allow-negative", action="store_true",
                   help="let weights go negative (default: weights >= 0, as upstream keeps them)")
    p.add_argument("--l2", type=float, default=0.0, help="L2 penalty l2/2*|w|^2 added to the mean log-loss")
    p.add_argument("--folds", type=int, default=5, help="cross-validation folds, split by group (prompt)")
    p.add_argument("--max-pairs", type=int, default=2_000_000,
                   help="fit a seeded sample of this many scored pairs per media type when there are more")
    p.add_argument("--seed", type=int, default=0, help="seed of the folds, the --max-pairs sample and the curve")
    p.add_argument("--alignment-column", help="scores column holding the alignment probability of checklists "
                   "with an alignment term (default: the one the scoring job used, when the scores kept it)")
    add_storage_arguments(p)
    add_ray_arguments(p)


def _stored_figures(data: MediaPairs, column: str) -> dict:
    values = data.stored[column]
    return preference_metrics(data.pairs.y, score_differences(values[data.pairs.a], values[data.pairs.b])).to_dict()


def not_enough_groups(pairs: Pairs, folds: np.ndarray | None) -> str | None:
    """Why there can be no held-out figures, or None: folds hold out whole groups, and every
    fold must still leave untied pairs to train on. `folds`: None for a single group."""
    if folds is None:
        return "not enough groups: 1 (cross-validation holds out whole groups, and needs two)"
    empty = untrainable_folds(pairs, folds)
    if empty:
        return (f"not enough groups: fold {empty[0]} has no untied pair outside it to train on (the other groups' "
                "pairs are all human ties)")
    return None


def fit_media(kind: str, checklist: Checklist, data: MediaPairs, args: argparse.Namespace) -> tuple[Checklist, dict]:
    """One media type's fit, its held-out figures and the fitted checklist."""
    report: dict = {"checklist": checklist.name, "l2": args.l2,
                    "alignment_from": checklist.aggregation.alignment_from}
    n_scored = len(data.pairs)
    if n_scored > args.max_pairs:
        keep = np.sort(np.random.default_rng(args.seed).choice(n_scored, args.max_pairs, replace=False))
        data = MediaPairs(data.p_yes, data.alignment, data.stored, data.pairs.take(keep), data.group[keep])
        report["sampled_from"] = n_scored
        print(f"{kind}: {n_scored:,} scored pairs, more than --max-pairs: fitting a seeded sample of "
              f"{args.max_pairs:,} (--seed {args.seed})")
    x, layout = item_features(checklist, data.p_yes, args.features, data.alignment), FeatureLayout.of(checklist)
    if layout.alignment and np.ptp(x[:, 0]) == 0:
        # A constant alignment cancels in x_a - x_b: its weight cannot be learnt from pairs.
        report["alignment"] = (f"the same value ({x[0, 0] if len(x) else '-'}) for every item: not fitted, "
                               f"weight kept at {checklist.aggregation.alignment_weight}")
        x, layout = x[:, 1:], layout.without_alignment()
    t0 = time.perf_counter()
    fit = solve(x, data.pairs, l2=args.l2, nonnegative=not args.allow_negative)
    seconds = {"fit": time.perf_counter() - t0}
    out = fitted_checklist(checklist, layout, fit.weights)
    if out.media_type == "any":  # one fit per media type: each file is its own kind's checklist
        out = out.model_copy(update={"media_type": kind, "name": f"{out.name}:{kind}"})
    report.update(
        weights=layout.question_weights(fit.weights),
        alignment_weight=out.aggregation.alignment_weight if has_alignment(checklist) else None,
        zero_weight_questions=layout.zero_questions(fit.weights),
        solver={"method": "L-BFGS-B", "converged": fit.converged, "message": fit.message,
                "iterations": fit.iterations, "objective": fit.objective if np.isfinite(fit.objective) else None},
        pairs={"scored": len(data.pairs), "fitted": fit.pairs, "human_ties": int(np.sum(data.pairs.y == 0)),
               "groups": len(np.unique(data.group))},
        in_sample={"fitted": evaluate(x, data.pairs, fit.weights).to_dict(),
                   **{f"stored_{c}": _stored_figures(data, c) for c in data.stored}},
    )
    folds = grouped_folds(data.group, args.folds, args.seed) if report["pairs"]["groups"] >= 2 else None
    skipped = not_enough_groups(data.pairs, folds)
    if skipped is None:
        t0 = time.perf_counter()
        cv = cross_validate(x, data.pairs, folds, l2=args.l2, nonnegative=not args.allow_negative)
        seconds["cross_validation"] = time.perf_counter() - t0
        report["cross_validation"] = {**summarise(cv), "per_fold": [
            {"fold": r.fold, "train_pairs": r.train_pairs, "test_pairs": r.test_pairs, "converged": r.converged,
             **{k: getattr(r.metrics, k) for k in ("accuracy_ties_dropped", "tau_star")}} for r in cv]}
        report["learning_curve"] = learning_curve(x, data.pairs, folds, l2=args.l2,
                                                  nonnegative=not args.allow_negative, seed=args.seed)
        seconds["learning_curve"] = time.perf_counter() - t0 - seconds["cross_validation"]
    else:
        report["cross_validation"] = report["learning_curve"] = None
        report["cross_validation_skipped"] = skipped
    report["seconds"] = seconds
    return out, report


def _pct(spread: dict | None, key: str = "mean") -> str:
    return "-" if not spread or spread.get(key) is None else f"{100 * spread[key]:.2f}"


def format_report(kind: str, before: Checklist, r: dict, out_file: str) -> str:
    p, s = r["pairs"], r["solver"]
    loss = "-" if s["objective"] is None else f"{s['objective']:.6g}"
    lines = [f"== {kind}: {r['checklist']} -> {out_file}",
             f"pairs: {p['scored']:,} scored in {p['groups']:,} groups; fitted on {p['fitted']:,} "
             f"(human ties {p['human_ties']:,} held out for tau*)",
             f"solver: L-BFGS-B {'converged' if s['converged'] else 'DID NOT CONVERGE'} in {s['iterations']} "
             f"iterations, mean log-loss {loss} ({s['message']})"]
    w_before = {q.id: q.weight for q in before.questions}
    dims = {q.id: q.dimension for q in before.questions}
    lines += [f"{'question':<34} {'dimension':<16} {'before':>9} {'fitted':>9}"]
    lines += [f"{q:<34} {dims[q]!s:<16} {w_before[q]:>9.4g} {w:>9.4g}" for q, w in r["weights"].items()]
    if r.get("alignment"):
        lines.append(f"alignment: {r['alignment']}")
    elif r["alignment_weight"] is not None:
        lines.append(f"alignment weight: {before.aggregation.alignment_weight:.4g} -> {r['alignment_weight']:.4g}")
    cv = r["cross_validation"]
    if r.get("cross_validation_skipped"):
        lines.append(f"held-out: {r['cross_validation_skipped']}; no held-out figure")
    if cv:
        acc, tau = cv["accuracy_ties_dropped"], cv["tau_star"]
        lines.append(f"held-out ({cv['folds']}-fold by group): acc(-ties) {_pct(acc)} +/- {_pct(acc, 'sd')}   "
                     f"tau* {_pct(tau)} +/- {_pct(tau, 'sd')}")
        lines.append("learning curve, held-out acc(-ties): " + "  ".join(
            f"{pt['train_pairs']:,}: {_pct(pt['accuracy_ties_dropped'])}" for pt in r["learning_curve"]))
    ins = r["in_sample"]
    lines.append("in-sample: " + "   ".join(f"{name} acc(-ties) {_pct({'mean': m['accuracy_ties_dropped']})} "
                                             f"tau* {_pct({'mean': m['tau_star']})}" for name, m in ins.items()))
    if ins["fitted"]["accuracy_ties_dropped"] == 1.0 and not r["l2"]:
        lines.append("note: the fitted pairs are separable, so the optimum lies at infinite weights; "
                     "the weights are where the solver stopped: give --l2 for finite ones")
    zero = r["zero_weight_questions"]
    if len(zero) == len(r["weights"]) and not r.get("alignment_weight"):
        lines.append("note: every weight is 0: no pair differs in its features, or no weights >= 0 order the pairs "
                     "better than none; the fitted checklist ties every item")
    lines.append(f"zero weight ({len(zero)}): {', '.join(zero) if zero else 'none'}")
    return "\n".join(lines)


def refuse_existing_fit(fs: fsspec.AbstractFileSystem, out: str) -> None:
    """A fit writes into a fresh --out only: its checklists and fit.json belong together."""
    if fs.exists(join(out, FIT_FILE)):
        raise FileExistsError(f"{join(out, FIT_FILE)} exists; choose another --out")


def run(args: argparse.Namespace) -> int:
    from pipeline.ray_runtime import init_ray

    if args.folds < 2 or args.max_pairs < 1 or args.l2 < 0:
        raise UserError("--folds must be at least 2, --max-pairs at least 1 and --l2 at least 0")
    storage = storage_from_args(args)
    scores = open_scores(args.scores, storage)
    out_fs = fsspec_filesystem(args.out, storage)
    check_free(out_fs, args.out)  # refused before Ray starts; again under the lease
    refuse_existing_fit(out_fs, args.out)
    alignment = args.alignment_column or source_alignment_column(scores)
    pairs = load_judgments(args.judgments, storage)
    if not len(pairs.h):
        raise UserError(f"{args.judgments}: no judged pairs (every group has fewer than two items)")
    stored = ["score_soft" if args.features == "soft" else "score"]
    columns = ["status", "media_type", "p_yes", *stored, *([alignment] if alignment else [])]
    scores.require_columns([args.key_column, *columns], "fit")
    init_ray(args.ray_address, quiet=args.quiet)
    t0 = time.perf_counter()
    keys = pairs.keys
    table = collect_judged_rows(scores, args.key_column, keys, columns)
    join_s = time.perf_counter() - t0
    if not table.num_rows:
        raise UserError(f"none of the {len(keys)} judged items is in the scores' {args.key_column!r} column "
                         f"(judged keys look like {pc.min(keys).as_py()!r}); see `vrscore fit --help` for the join")
    data = assemble(pairs, table, args.key_column, list(scores.checklists), alignment, stored)
    print(f"{data.judged_pairs:,} judged pairs; {table.num_rows:,} judged items found in the scores; left out: "
          + ", ".join(f"{n:,} {reason.replace('_', ' ')}" for reason, n in data.skipped.items()))
    if not data.by_media:
        raise UserError("no judged pair has both items scored ok with one media type: nothing to fit")
    report = {"scores": scores.data_uri, "judgments": args.judgments, "key_column": args.key_column,
              "features": args.features, "nonnegative": not args.allow_negative, "l2": args.l2,
              "folds": args.folds, "seed": args.seed, "max_pairs": args.max_pairs, "alignment_column": alignment,
              "pairs": {"judged": data.judged_pairs, **data.skipped}, "join_seconds": join_s, "media_types": {}}
    with output_lease(out_fs, args.out, lambda: refuse_existing_fit(out_fs, args.out)):  # one run at a time
        for kind, media_data in data.by_media.items():
            before = scores.checklists[kind]
            fitted, r = fit_media(kind, before, media_data, args)
            out_file = join(args.out, f"{kind}.yaml")
            write_text(out_file, yaml.safe_dump(json.loads(fitted.to_json()), sort_keys=False, allow_unicode=True),
                       storage)
            report["media_types"][kind] = {"fitted_checklist": out_file, **r}
            print(format_report(kind, before, r, out_file))
        write_text(join(args.out, FIT_FILE), json.dumps(report, indent=2), storage)
    print(f"fit report: {join(args.out, FIT_FILE)}")
    return 0
