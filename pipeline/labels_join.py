"""Per-question labels joined to stored p_yes on Ray Data, for `vrscore calibrate`.

The labels (`id`, `question`, `label` 0/1; optional `checklist` and `text` naming what was
labelled) are read by Ray Data and kept in the object store; the driver holds only references
to their blocks. Two passes:
- `label_counts`: per block, per question, how many labels and how many are not 0/1 (or have a
  null id or question); the driver adds these up (one row per question and block).
- `labelled_answers`: a broadcast hash join. Each scores batch fetches the label blocks from the
  object store (zero-copy Arrow) and keeps the labels whose id is in the batch: O(labels + rows)
  per batch, and the scores are only read, never shuffled (labels are human-made and far fewer
  than scored rows). Out come compact rows: the row's checklist, the question, a fold key (CRC-32
  of the id: the same fold whatever order the rows arrive in), logit(p_yes), the label, and a
  `problem` when the pair cannot be used.
"""
from __future__ import annotations

import zlib

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from pipeline.calibration import logit
from schemas.checklist import Checklist
from schemas.status import OK

REQUIRED = ("id", "question", "label")
OPTIONAL = ("checklist", "text")  # what the labeller saw: refused when the scores asked otherwise

# problems of a labelled pair; the first five are refused, the last two only counted
NOT_IN_CHECKLIST = "question not in the checklist that scored the item"
OTHER_CHECKLIST = "labelled for another checklist than the one that scored the item"
OTHER_TEXT = "labelled question text differs from the checklist's"
RATING = "a rating question (calibrate reads yes/no questions)"
NO_ANSWER = "no p_yes for the question"
FAILED_ROW = "item failed to score"
REFUSED = (NOT_IN_CHECKLIST, OTHER_CHECKLIST, OTHER_TEXT, RATING, NO_ANSWER)

ANSWERS_SCHEMA = pa.schema([("checklist", pa.string()), ("question", pa.string()), ("key", pa.uint32()),
                            ("z", pa.float64()), ("label", pa.int8()), ("problem", pa.string())])


def label_counts(batch: pa.Table) -> pa.Table:
    """Per question in this block: labels, labels not 0/1, and labels with a null id or question."""
    label = pc.cast(batch["label"], pa.float64()) if batch.num_rows else pa.array([], pa.float64())
    bad = pc.invert(pc.fill_null(pc.is_in(label, value_set=pa.array([0.0, 1.0])), False))
    missing = pc.or_(pc.is_null(batch["id"]), pc.is_null(batch["question"]))
    table = pa.table({"question": pc.fill_null(pc.cast(batch["question"], pa.string()), ""),
                      "bad": pc.cast(bad, pa.int64()), "missing": pc.cast(missing, pa.int64())})
    out = table.group_by("question").aggregate([("bad", "count"), ("bad", "sum"), ("missing", "sum")])
    return pa.table({"question": out["question"], "labels": pc.cast(out["bad_count"], pa.int64()),
                     "bad_labels": out["bad_sum"], "null_keys": out["missing_sum"]})


def _norm(text: str | None) -> str | None:
    return None if text is None else " ".join(text.split())


def labelled_answers(batch: pa.Table, label_refs: list, checklists: dict[str, Checklist]) -> pa.Table:
    """The labelled (item, question) pairs of a scores batch (id, checklist, status, p_yes)."""
    import ray

    labels = pa.concat_tables(ray.get(list(label_refs)))
    rows = pc.index_in(pc.cast(labels["id"], pa.string()), value_set=pc.cast(batch["id"], pa.string()))
    hit = pc.is_valid(rows)
    labels, rows = labels.filter(hit), pc.drop_null(rows).to_numpy(zero_copy_only=False)
    ids, questions = labels["id"].to_pylist(), labels["question"].to_pylist()
    values = pc.cast(labels["label"], pa.float64()).to_numpy(zero_copy_only=False)
    named = labels["checklist"].to_pylist() if "checklist" in labels.column_names else [None] * len(ids)
    texts = labels["text"].to_pylist() if "text" in labels.column_names else [None] * len(ids)
    row_checklist, status = batch["checklist"].to_pylist(), batch["status"].to_pylist()
    p_yes = batch["p_yes"]
    columns = {f: [] for f in ANSWERS_SCHEMA.names}
    positions = {name: {q.id: j for j, q in enumerate(c.questions)} for name, c in checklists.items()}
    for k, r in enumerate(rows):
        name, question = row_checklist[r], questions[k]
        checklist, index = checklists.get(name), positions.get(name, {})
        z, problem = float("nan"), None
        if named[k] is not None and named[k] != name:
            problem = OTHER_CHECKLIST
        elif status[r] != OK:
            problem = FAILED_ROW
        elif question not in index:
            problem = NOT_IN_CHECKLIST
        elif checklist.questions[index[question]].answer != "yes_no":
            problem = RATING
        elif texts[k] is not None and _norm(texts[k]) != _norm(checklist.questions[index[question]].text):
            problem = OTHER_TEXT
        else:
            answers = p_yes[int(r)].as_py()
            p = answers[index[question]] if answers is not None and index[question] < len(answers) else None
            if p is None or np.isnan(p):
                problem = NO_ANSWER
            else:
                z = float(logit(np.float32(p)))
        columns["checklist"].append(name)
        columns["question"].append(question)
        columns["key"].append(zlib.crc32(str(ids[k]).encode()))
        columns["z"].append(z)
        columns["label"].append(int(values[k]))
        columns["problem"].append(problem)
    return pa.table(columns, schema=ANSWERS_SCHEMA)
