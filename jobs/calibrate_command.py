"""`vrscore calibrate --scores OUT --labels labels.parquet --out DIR`: per-question calibration of p_yes.

Fits, per yes/no question with labels, Platt scaling (a, b on logit(p_yes)) or temperature
scaling (a = 1/T) by maximum likelihood (`pipeline/calibration.py`), estimates held-out
log-loss and ECE before and after by k-fold cross-validation over items, and writes
OUT/<media_type>.yaml (the scores' checklist with each fitted question's `calibration`, for
`vrscore score --checklist` and `vrscore rescore`, which then write `p_cal`),
OUT/calibration.json (figures per question) and OUT/calibration.md (the table it prints).
The join is on Ray Data (`pipeline/labels_join.py`).
"""
from __future__ import annotations

import argparse
import json

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import yaml

from pipeline.output_lease import check_free, output_lease
from pipeline.calibration import ECE_BINS, calibrate_question
from pipeline.labels_join import FAILED_ROW, OPTIONAL, REFUSED, REQUIRED, label_counts, labelled_answers
from pipeline.parquet_reader import read_parquet
from pipeline.scores_input import add_ray_arguments, add_storage_arguments, open_scores, storage_from_args, write_text
from pipeline.storage import arrow_filesystem, fsspec_filesystem, join
from schemas.checklist import Checklist
from schemas.user_error import UserError

REPORT_FILE, TABLE_FILE = "calibration.json", "calibration.md"
EXAMPLE = """labels: Parquet with columns id (the scores' id), question (a question id), label (0 or 1);
optional checklist (the checklist name the labeller saw) and text (the question text), checked
against the scores. Example:
  vrscore calibrate --scores out/ --labels labels.parquet --out cal/
  vrscore rescore --scores out/ --checklist cal/image.yaml --out out_cal/   # adds p_cal
ECE: 10 equal-width bins of the probability. Held-out: k-fold (--folds) over items, fold =
CRC-32 of the id mod k (deterministic)."""


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.formatter_class = argparse.RawDescriptionHelpFormatter
    p.epilog = EXAMPLE
    p.add_argument("--scores", required=True, help="output of `vrscore score` (DIR or DIR/scores; local path or URI)")
    p.add_argument("--labels", required=True, help="labels Parquet file or directory (below)")
    p.add_argument("--out", required=True, help="output directory: <media_type>.yaml per calibrated checklist, "
                   f"{REPORT_FILE} and {TABLE_FILE}")
    p.add_argument("--method", choices=("platt", "temperature"), default="platt",
                   help="platt: p_cal = sigmoid(a*logit(p_yes)+b); temperature: b = 0, one T = 1/a")
    p.add_argument("--folds", type=int, default=5, help="cross-validation folds for the held-out figures")
    p.add_argument("--min-labels", type=int, default=20, help="refuse a question with fewer usable labels")
    add_storage_arguments(p)
    add_ray_arguments(p)


def labels_schema(uri: str, storage) -> tuple[pa.fs.FileSystem | None, str, list[str]]:
    """The labels' filesystem, path and the columns to read; refuses a file without id, question
    and a numeric label (from the footer: no data is read here)."""
    fs, path = arrow_filesystem(uri, storage)
    try:
        schema = pq.ParquetDataset(path, filesystem=fs).schema
    except (OSError, pa.ArrowInvalid) as exc:
        raise UserError(f"cannot read labels Parquet at {uri}: {exc}") from exc
    missing = [c for c in REQUIRED if c not in schema.names]
    if missing:
        raise UserError(f"{uri}: labels need columns {', '.join(REQUIRED)}; missing {', '.join(missing)}")
    for c in ("id", "question", *(c for c in OPTIONAL if c in schema.names)):
        if not (pa.types.is_string(schema.field(c).type) or pa.types.is_large_string(schema.field(c).type)):
            raise UserError(f"{uri}: column {c!r} must hold text, not {schema.field(c).type}")
    label = schema.field("label").type
    if not (pa.types.is_integer(label) or pa.types.is_floating(label) or pa.types.is_boolean(label)):
        raise UserError(f"{uri}: column 'label' must hold 0 or 1, not {label}")
    return fs, path, [*REQUIRED, *(c for c in OPTIONAL if c in schema.names)]


def check_counts(counts: pa.Table, checklists: dict[str, Checklist], uri: str) -> None:
    """Refuse labels that are not 0/1, without an id or question, or for questions the scores lack."""
    bad, null = pc.sum(counts["bad_labels"]).as_py() or 0, pc.sum(counts["null_keys"]).as_py() or 0
    if null:
        raise UserError(f"{uri}: {null:,} labels have a null id or question")
    if bad:
        raise UserError(f"{uri}: {bad:,} labels are not 0 or 1 (null included); labels must be 0 (no) or 1 (yes)")
    known = {q.id for c in checklists.values() for q in c.questions}
    unknown = sorted(set(counts["question"].to_pylist()) - known)
    if unknown:
        raise UserError(f"{uri}: unknown question ids {unknown[:5]}{' ...' if len(unknown) > 5 else ''}: not in the "
                         f"scores' checklists ({', '.join(checklists)})")


def gather(answers, label_refs: list, checklists: dict[str, Checklist]) -> pa.Table:
    """The labelled pairs, compact. What reaches the driver is one row per label whose item is in
    the scores (checklist and question as dictionary codes, a 4-byte fold key, the logit, the
    label, a problem code): bounded by the number of labels, which a per-question Platt fit needs
    point by point (it has no sufficient statistics), and never by the size of the scores."""
    ds = answers.map_batches(labelled_answers, fn_kwargs={"label_refs": label_refs, "checklists": checklists},
                             batch_format="pyarrow")
    batches = [b.select(["checklist", "question", "key", "z", "label", "problem"])
               for b in ds.iter_batches(batch_format="pyarrow", batch_size=None)]
    compact = [pa.table({c: (pc.dictionary_encode(b[c]) if c in ("checklist", "question", "problem") else b[c])
                         for c in b.column_names}) for b in batches]
    return pa.concat_tables(compact, promote_options="permissive") if compact else pa.table({})


def fit_all(pairs: pa.Table, checklists: dict[str, Checklist], args: argparse.Namespace) -> dict[str, dict]:
    """Per checklist, per question: its fit and figures; refuses what cannot be calibrated."""
    if not pairs.num_rows:
        raise UserError(f"none of the labelled items of {args.labels} is in the scores' id column")
    name = np.asarray(pc.cast(pairs["checklist"], pa.string()).to_pylist(), dtype=object)
    question = np.asarray(pc.cast(pairs["question"], pa.string()).to_pylist(), dtype=object)
    problem = np.asarray(pc.cast(pairs["problem"], pa.string()).to_pylist(), dtype=object)
    key, z = pairs["key"].to_numpy().astype(np.int64), pairs["z"].to_numpy()
    label = pairs["label"].to_numpy().astype(np.int64)
    refusals, out = [], {}
    for c, q in sorted(set(zip(name, question))):
        rows = (name == c) & (question == q)
        found = {p: int(np.sum(problem[rows] == p)) for p in set(problem[rows]) if p is not None}
        refusals += [f"{c}/{q}: {n:,} labels: {p}" for p, n in found.items() if p in REFUSED]
        use = rows & np.array([p is None for p in problem], dtype=bool)
        n, pos = int(use.sum()), int(np.sum(label[use] == 1))
        if not found.keys() & set(REFUSED):
            if n < args.min_labels:
                refusals.append(f"{c}/{q}: {n} usable labels, fewer than --min-labels {args.min_labels}")
            elif pos in (0, n):
                refusals.append(f"{c}/{q}: every label is {label[use][0]} (one class only): nothing to calibrate on")
            elif np.ptp(z[use]) == 0:
                refusals.append(f"{c}/{q}: every labelled item has the same p_yes: nothing to scale")
            elif len(np.unique(key[use] % args.folds)) < 2:
                refusals.append(f"{c}/{q}: every label falls in one fold (one item?): no held-out estimate")
        if refusals:
            continue
        try:
            fitted, report = calibrate_question(key[use], z[use], label[use], args.method, args.folds)
        except ValueError as exc:
            refusals.append(f"{c}/{q}: {exc}")
            continue
        report["failed_items"] = found.get(FAILED_ROW, 0)
        out.setdefault(c, {})[q] = (fitted, report)
    if refusals:
        raise UserError(f"cannot calibrate: {'; '.join(refusals[:8])}{' ...' if len(refusals) > 8 else ''}")
    return out


def format_table(name: str, fits: dict, out_file: str) -> str:
    lines = [f"== {name} -> {out_file}",
             f"{'question':<30} {'labels':>6} {'pos':>5} {'a':>8} {'b':>8}   held-out log-loss    held-out ECE",
             f"{'':<30} {'':>6} {'':>5} {'':>8} {'':>8}   {'before':>8} {'after':>8}   {'before':>6} {'after':>6}"]
    for q, (_, r) in fits.items():
        h = r["held_out"]
        lines.append(f"{q:<30} {r['labels']:>6} {r['positives']:>5} {r['a']:>8.4g} {r['b']:>8.4g}   "
                     f"{h['before']['log_loss']:>8.4f} {h['after']['log_loss']:>8.4f}   "
                     f"{h['before']['ece']:>6.4f} {h['after']['ece']:>6.4f}"
                     + ("" if r["converged"] else "   (did not converge)"))
    return "\n".join(lines)


def calibrated_checklist(checklist: Checklist, fits: dict) -> Checklist:
    questions = [q.model_copy(update={"calibration": fits[q.id][0].calibration}) if q.id in fits else q
                 for q in checklist.questions]
    return Checklist.model_validate({**json.loads(checklist.to_json()),
                                     "questions": [json.loads(q.model_dump_json()) for q in questions]})


def run(args: argparse.Namespace) -> int:
    from pipeline.ray_runtime import init_ray

    if args.folds < 2 or args.min_labels < args.folds:
        raise UserError("--folds must be at least 2 and --min-labels at least --folds")
    storage = storage_from_args(args)
    scores = open_scores(args.scores, storage)
    checklists = scores.checklists_by_name
    scores.require_columns(["id", "checklist", "status", "p_yes"], "calibrate")
    out_fs = fsspec_filesystem(args.out, storage)

    def fresh() -> None:
        if out_fs.exists(join(args.out, REPORT_FILE)):
            raise FileExistsError(f"{join(args.out, REPORT_FILE)} exists; choose another --out")

    check_free(out_fs, args.out)  # refused before Ray starts; again under the lease
    fresh()
    fs, path, columns = labels_schema(args.labels, storage)
    init_ray(args.ray_address, quiet=args.quiet)
    labels = read_parquet(path, fs, columns).materialize()  # blocks in the object store, refs on the driver
    blocks = list(labels.map_batches(label_counts, batch_format="pyarrow").iter_batches(batch_format="pyarrow",
                                                                                        batch_size=None))
    if not sum(b.num_rows for b in blocks):
        raise UserError(f"{args.labels}: no labels")
    counts = pa.concat_tables(blocks)
    counts = counts.group_by("question").aggregate([(c, "sum") for c in ("labels", "bad_labels", "null_keys")])
    counts = pa.table({c: counts[f"{c}_sum"] if c != "question" else counts[c]
                       for c in ("question", "labels", "bad_labels", "null_keys")})
    check_counts(counts, checklists, args.labels)
    pairs = gather(scores.read(["id", "checklist", "status", "p_yes"]), labels.to_arrow_refs(), checklists)
    fits = fit_all(pairs, checklists, args)
    total = int(pc.sum(counts["labels"]).as_py())
    report = {"scores": scores.data_uri, "labels": args.labels, "method": args.method, "folds": args.folds,
              "ece_bins": ECE_BINS, "label_rows": total, "labels_without_scored_item": total - pairs.num_rows,
              "checklists": {}}
    tables = []
    with output_lease(out_fs, args.out, fresh):  # one run at a time
        for name, question_fits in fits.items():
            out = calibrated_checklist(checklists[name], question_fits)
            out_file = join(args.out, f"{out.media_type}.yaml")
            write_text(out_file, yaml.safe_dump(json.loads(out.to_json()), sort_keys=False, allow_unicode=True),
                       storage)
            report["checklists"][name] = {"calibrated_checklist": out_file,
                                          "questions": {q: r for q, (_, r) in question_fits.items()}}
            tables.append(format_table(name, question_fits, out_file))
            print(tables[-1])
        write_text(join(args.out, REPORT_FILE), json.dumps(report, indent=2), storage)
        write_text(join(args.out, TABLE_FILE), "# vrscore calibrate\n\n" + "\n\n".join(
            f"```\n{t}\n```" for t in tables) + f"\n\nECE: {ECE_BINS} equal-width bins; held-out: {args.folds}-fold "
            "cross-validation over items.\n", storage)
    if report["labels_without_scored_item"]:
        print(f"{report['labels_without_scored_item']:,} labels name an id the scores do not hold: left out")
    print(f"calibration report: {join(args.out, REPORT_FILE)}")
    return 0
