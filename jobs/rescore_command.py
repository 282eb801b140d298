"""`vrscore rescore --scores DIR --checklist NEW --out DIR2`: new weights, aggregation or masks
applied to stored p_yes, on Ray Data, without a model.

The output is a scores output like any other (OUT/scores/*.parquet, OUT/checklist.json), so
`filter`, `pairs`, `eval` and `report` read it as they read `vrscore score`'s. Every column
but checklist, p_yes, answers, score, score_soft and dim_* is carried over as it is.
OUT/rescore.json (also in the Parquet metadata, `vrscore.rescore`) records the source.

`--normalize-from REF_OUT` rescores the reference output's p_yes with the same checklists, takes
each checklist's score and dimension moments over its ok rows in the cluster
(`pipeline/normalization.py`), stores them in the written checklists and adds `z_score` and
`z_dim_<name>`; `vrscore score` with such a checklist writes them too.
"""
from __future__ import annotations

import argparse
import functools
import json

import pyarrow as pa

from jobs.fit_data import source_alignment_column
from pipeline.normalization import reference_moments
from pipeline.output_lease import check_free, output_lease
from pipeline.rescore import META_RESCORE, Rescorer, match_questions, rescored_schema
from pipeline.scores_input import (CHECKLIST_FILE, SCORES_DIR, ScoresInput, add_ray_arguments, add_storage_arguments,
                                   open_scores, refuse_existing_output, storage_from_args, write_empty_if_missing,
                                   write_text)
from pipeline.storage import arrow_filesystem, fsspec_filesystem, join
from schemas.checklist import Checklist
from schemas.checklist_set import check_unique_names, checklists_to_json, resolve_checklist_sources
from schemas.scores import META_JOB
from schemas.user_error import UserError

RECORD_FILE = "rescore.json"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--scores", required=True, help="output of `vrscore score` (DIR or DIR/scores; local path or URI)")
    p.add_argument("--checklist", action="append",
                   help="the new checklist (our YAML/JSON, e.g. `vrscore fit`'s OUT/image.yaml, or a VisionReward "
                   "*_qa.txt with --weights); once per media type. Media types not given keep theirs. Optional with "
                   "--normalize-from (then the stored checklists are normalised)")
    p.add_argument("--weights", action="append", help="weight file of a VisionReward *_qa.txt checklist")
    p.add_argument("--dimensions", help="VisionReward dimensions.json (dimension of each published question)")
    p.add_argument("--alignment-column", help="scores column holding the alignment probability for checklists "
                   "with an alignment term (default: the one the scoring job used, when the scores kept it)")
    p.add_argument("--normalize-from", metavar="REF_OUT",
                   help="a reference scores output of the same model and questions (e.g. a validation set): each "
                   "checklist's score and dimension mean and standard deviation over its ok rows are stored in the "
                   "written checklists, and z_score and z_dim_<name> columns are added")
    p.add_argument("--out", required=True, help="output directory (local path or URI)")
    add_storage_arguments(p)
    add_ray_arguments(p)


def plan_checklists(scores: ScoresInput, new: dict[str, Checklist], alignment: str | None,
                    sources: dict[str, str] | None = None) -> dict[str, Checklist]:
    """The checklist of every media type after rescoring; refuses what cannot be rescored.
    `sources`: where each new checklist came from, for the messages."""
    sources = sources or {}
    unknown = [k for k in new if k not in scores.checklists]
    if new and len(unknown) == len(new):
        raise UserError(f"the scores hold no rows scored for {', '.join(unknown)} (their checklists: "
                         f"{', '.join(scores.checklists)}): nothing to rescore")
    after = dict(scores.checklists)
    for kind, checklist in new.items():
        if kind in after:
            match_questions(after[kind], checklist)  # refuses here, before Ray starts
            after[kind] = checklist
    # score's check on the output's checklists, with a kept one beside a new one
    check_unique_names(after, {k: sources.get(k, "the stored checklist") for k in after})
    job = json.loads((scores.schema.metadata or {}).get(META_JOB, b"{}"))
    used = job.get("alignment_column")
    needs = [c.name for c in after.values() if c.aggregation.rule == "linear" and c.aggregation.alignment_weight]
    if used and needs and not alignment:
        raise UserError(f"the scores were made with alignment from column {used!r}, which they do not keep, and "
                         f"{needs[0]!r} has an alignment term: pass --alignment-column with a column holding it "
                         "(keep it when scoring: --keep-columns)")
    return after


def plan_reference(ref: ScoresInput, scores: ScoresInput, after: dict[str, Checklist],
                   alignment: str | None) -> tuple[dict[str, Checklist], str | None]:
    """The checklists the reference is rescored with (those of the output, without a stored
    normalisation) and its alignment column; refuses a reference that cannot stand for the scores:
    another model, a media kind it did not score, questions it did not answer the same way."""
    where = f"--normalize-from {ref.data_uri}"
    if ref.model_id and scores.model_id and ref.model_id != scores.model_id:
        raise UserError(f"{where}: scored by model {ref.model_id!r}, the scores by {scores.model_id!r}; z-scores "
                         "take the scores' own model's reference")
    missing = [k for k in after if k not in ref.checklists]
    if missing:
        raise UserError(f"{where}: holds no {', '.join(missing)} rows (its checklists: "
                         f"{', '.join(ref.checklists) or 'none'}); a reference must score every media kind normalised")
    plan = {k: c.model_copy(update={"aggregation": c.aggregation.model_copy(update={"normalization": None})})
            for k, c in after.items()}
    try:
        for kind, checklist in plan.items():
            match_questions(ref.checklists[kind], checklist)
    except UserError as exc:
        raise UserError(f"{where}: the reference was scored on another checklist: {exc}") from None
    ref_alignment = alignment if alignment in ref.schema.names else source_alignment_column(ref)
    plan_checklists(ref, plan, ref_alignment)
    return plan, ref_alignment


def normalize(ref: ScoresInput, plan: dict[str, Checklist], alignment: str | None,
              after: dict[str, Checklist]) -> dict[str, Checklist]:
    """`after` with the reference's moments stored in each checklist (Ray is running)."""
    # only what the scores are recomputed from: a reference's other columns are never read
    needed = ["id", "media_type", "status", "checklist", "p_yes", *([alignment] if alignment else [])]
    schema = rescored_schema(pa.schema([ref.schema.field(c) for c in needed], metadata=ref.schema.metadata), plan, "{}")
    rescored = ref.read(needed).map_batches(Rescorer(ref.checklists, plan, schema, alignment), batch_format="pyarrow")
    moments = reference_moments(rescored, plan, ref.data_uri)
    return {k: c.model_copy(update={"aggregation": c.aggregation.model_copy(update={"normalization": moments[k]})})
            for k, c in after.items()}


def run(args: argparse.Namespace) -> int:
    from pipeline.ray_runtime import init_ray

    storage = storage_from_args(args)
    scores = open_scores(args.scores, storage, by_name=False)  # by media type: repairs colliding names too
    if not args.checklist and not args.normalize_from:
        raise UserError("give --checklist (the new checklist), --normalize-from (a reference output), or both")
    new, sources = resolve_checklist_sources(args.checklist, args.weights, args.dimensions) if args.checklist \
        else ({}, {})
    alignment = args.alignment_column or source_alignment_column(scores)
    if alignment:
        scores.require_columns([alignment], "--alignment-column")
    after = plan_checklists(scores, new, alignment, sources)
    if args.normalize_from:
        ref = open_scores(args.normalize_from, storage, by_name=False)
        ref_plan, ref_alignment = plan_reference(ref, scores, after, alignment)
    ignored = [k for k in new if k not in scores.checklists]
    if ignored:
        print(f"no {', '.join(ignored)} rows were scored in {scores.data_uri}: their checklist is not used")
    out_fs = fsspec_filesystem(args.out, storage)
    fresh = functools.partial(refuse_existing_output, args.out, storage, [SCORES_DIR])
    check_free(out_fs, args.out)  # refused before Ray starts; again under the lease
    fresh()
    init_ray(args.ray_address, quiet=args.quiet)
    if args.normalize_from:
        after = normalize(ref, ref_plan, ref_alignment, after)
    previous = (scores.schema.metadata or {}).get(META_RESCORE)
    # as stored, even two of one name (this rescore repairs them): not through checklists_to_json
    stored = {k: json.loads(c.to_json()) for k, c in scores.checklists.items()}
    record = {"source": scores.data_uri, "source_checklists": stored,
              "rescored": {k: after[k].name for k in new if k in scores.checklists},
              "alignment_column": alignment,
              "normalize_from": ref.data_uri if args.normalize_from else None,
              "normalization": {k: c.aggregation.normalization.model_dump() for k, c in after.items()
                                if c.aggregation.normalization is not None},
              "source_rescore": json.loads(previous) if previous else None}
    record_json = json.dumps(record, indent=2)
    schema = rescored_schema(scores.schema, after, record_json)

    with output_lease(out_fs, args.out, fresh):  # one run at a time
        fs, path = arrow_filesystem(join(args.out, SCORES_DIR), storage)
        stage = Rescorer(scores.checklists, after, schema, alignment)
        scores.read().map_batches(stage, batch_format="pyarrow").write_parquet(path, filesystem=fs, schema=schema)
        write_empty_if_missing(join(args.out, SCORES_DIR), schema, storage)
        write_text(join(args.out, CHECKLIST_FILE), checklists_to_json(after), storage)
        write_text(join(args.out, RECORD_FILE), record_json, storage)
    rows = open_scores(args.out, storage).count_rows()
    print(f"rescored {rows:,} rows of {scores.data_uri} with " + ", ".join(f"{k}: {c.name}" for k, c in after.items()))
    for kind, norm in record["normalization"].items():
        print(f"{kind}: z-scores from {norm['rows']:,} reference rows: score mean {norm['score']['mean']:.6g}, "
              f"std {norm['score']['std']:.6g}")
    print(f"scores: {join(args.out, SCORES_DIR)}/   record: {join(args.out, RECORD_FILE)}")
    return 0
