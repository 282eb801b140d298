"""The outputs of `vrscore judge`: judged pairs (`OUT/pairs/`) and item strengths (`OUT/items/`).

`OUT/pairs/` holds one row per pair (the pairs of a group together; files in no particular order):
  id        the pair's id (the pairs file's `id`, else "<a>|<b>"), unique in the job;
  a, b      the two items' manifest ids; a is shown first in order "ab", b first in order "ba";
  group     the pairs' group (the pairs file's or the manifest's `group`; null when neither has one);
  prompt    the text prompt the questions were asked about (null where the checklist needs none);
  status    `schemas/status.py`; a pair is `ok` only when both items decoded and the model answered;
            otherwise the first failing item's status, and `error` says which item and why;
  error     null for ok rows;
  per question, lists in the checklist's question order (as `p_yes` is in a scores output), null on
  failed rows:
  p_first_ab     P(first-position words | a shown first), renormalised over the answer word sets;
  p_first_ba     P(first-position words | b shown first), likewise;
  p_a            the probability that a is preferred, both orders averaged:
                 (p_first_ab + 1 - p_first_ba) / 2; with tie words, each order's tie mass counts
                 half for each side: (p_first_ab + p_tie_ab / 2 + p_second_ba + p_tie_ba / 2) / 2;
  position_bias  (p_first_ab + p_first_ba) / 2 - 0.5: > 0 where the judge leans to the first slot;
  consistent     both orders prefer the same item (p_first_ab > 0.5 and p_first_ba < 0.5, or the
                 reverse; with tie words, the first-vs-second comparison of each order);
  answer_mass_ab, answer_mass_ba
                 per order, the probability of all the position words (first, second and tie) under
                 the softmax over the whole vocabulary where they are read, as `answer_mass` is in a
                 scores output: low mass means the judge is not answering with a position there (a
                 thinking template, a wrong answer word or prefix), and p_first means nothing;
  p_tie          only where the checklist has tie words: the tie mass, both orders averaged;
  pair_score     the checklist's aggregation rule applied as `score_soft` is (pipeline/weighting.py),
                 with 2 p_a - 1 as each question's feature: > 0 prefers a;
  dim_<name>     the same rule restricted to one dimension's questions.
The checklist, model and job config travel in the Parquet schema metadata (as in scores.py).

`OUT/items/` holds one row per item that took part in a pair: its id and group, `log_strength`
(Bradley-Terry, fitted per group on the ok pairs, centred to mean 0 in the group; null where the
item has no ok pair), `rank` in its group (1 = strongest; null with the strength) and `n_pairs`
(its ok pairs).
"""
from __future__ import annotations

import pyarrow as pa

from schemas.scores import META_CHECKLISTS, META_JOB, META_MODEL, META_VERSION, dimension_columns

FORMAT_VERSION = "1"
META_KIND = b"vrscore.kind"  # b"judge": tells a judge output's files from a score output's
KIND_JUDGE = b"judge"
PAIRS_DIR = "pairs"
# the `--pairs` input: a Parquet of pairs with these columns (strings)
PAIRS_INPUT_REQUIRED = ("a", "b")
PAIRS_INPUT_OPTIONAL = ("id", "prompt", "group")
ITEMS_DIR = "items"

# per-question lists, in checklist order
QUESTION_FIELDS = ("p_first_ab", "p_first_ba", "p_a", "position_bias")
MASS_FIELDS = ("answer_mass_ab", "answer_mass_ba")

PAIR_BASE_FIELDS = [
    pa.field("id", pa.string(), nullable=False),
    pa.field("a", pa.string(), nullable=False),
    pa.field("b", pa.string(), nullable=False),
    pa.field("group", pa.string()),
    pa.field("prompt", pa.string()),
    pa.field("status", pa.string(), nullable=False),
    pa.field("error", pa.string()),
    *[pa.field(name, pa.list_(pa.float32())) for name in QUESTION_FIELDS],
    pa.field("consistent", pa.list_(pa.bool_())),
    *[pa.field(name, pa.list_(pa.float32())) for name in MASS_FIELDS],
]
P_TIE_FIELD = pa.field("p_tie", pa.list_(pa.float32()))
PAIR_SCORE_FIELD = pa.field("pair_score", pa.float64())

ITEM_FIELDS = [
    pa.field("id", pa.string(), nullable=False),
    pa.field("group", pa.string()),
    pa.field("log_strength", pa.float64()),
    pa.field("rank", pa.int32()),
    pa.field("n_pairs", pa.int32(), nullable=False),
]


def pairs_schema(dimensions: list[str], *, ties: bool = False, checklists_json: str | None = None,
                 model_id: str | None = None, job_json: str | None = None) -> pa.Schema:
    """The schema of `OUT/pairs/`: the base fields, `p_tie` after `consistent` when the checklist has
    tie words, `pair_score`, then one float64 `dim_<name>` per dimension."""
    fields = list(PAIR_BASE_FIELDS) + ([P_TIE_FIELD] if ties else []) + [PAIR_SCORE_FIELD]
    fields += [pa.field(c, pa.float64()) for c in dimension_columns(dimensions).values()]
    meta = {META_VERSION: FORMAT_VERSION.encode(), META_KIND: KIND_JUDGE}
    for key, value in ((META_CHECKLISTS, checklists_json), (META_MODEL, model_id), (META_JOB, job_json)):
        if value is not None:
            meta[key] = value.encode()
    return pa.schema(fields, metadata=meta)


def items_schema() -> pa.Schema:
    """The schema of `OUT/items/`."""
    return pa.schema(ITEM_FIELDS, metadata={META_VERSION: FORMAT_VERSION.encode(), META_KIND: KIND_JUDGE})


def is_judge_schema(schema: pa.Schema) -> bool:
    """Whether a Parquet file's schema is that of a judge output's pairs or items."""
    return (schema.metadata or {}).get(META_KIND) == KIND_JUDGE


def pair_id(a: str, b: str) -> str:
    """The id of a pair given without one."""
    return f"{a}|{b}"
