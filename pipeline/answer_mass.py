"""How the job summary, `vrscore eval` and the report show the answer mass (pure functions).

The answer mass of a question is P(yes words) + P(no words) under the softmax over the whole
vocabulary, where p_yes is read (the `answer_mass` column). A model that answers yes or no
there puts most of its probability on those words; a mean under LOW_MASS means that p_yes,
renormalised over the yes and no words, is read where the model is doing something else
(thinking, writing "The", answering " Yes" with a space), and looks normal all the same.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from schemas.checklist import Checklist

LOW_MASS = 0.5
# the settings a user can change, named in the one-line warning
CAUSES = ("the chat template (model.chat_template, model.chat_template_kwargs: a thinking prefix), "
          "model.answer_prefix, and the answer words (model.yes_words/no_words, model.answer_leading_space)")
HEADING = "mean answer mass per question (P(yes words) + P(no words)):"
# the same for a pairwise judge (`vrscore judge`), whose answer words are positions
JUDGE_CAUSES = ("the chat template (model.chat_template, model.chat_template_kwargs: a thinking prefix), the "
                "checklist's answer_prefix and position words (first_words/second_words, model.answer_leading_space)")
JUDGE_HEADING = "mean answer mass per question and order (P(position words)):"


def mass_by_question(question_ids: Sequence[str], means: Sequence[float]) -> dict[str, float]:
    """Question id -> mean answer mass, in checklist order."""
    if len(question_ids) != len(means):
        raise ValueError(f"{len(means)} answer-mass means for {len(question_ids)} questions")
    return dict(zip(question_ids, (float(m) for m in means)))


def table_mass_means(table: pa.Table, checklists: dict[str, Checklist]) -> dict[str, dict[str, float]]:
    """Checklist name -> question id -> mean answer_mass over the ok rows of `table` (columns
    status, checklist, answer_mass) that have one; {} for a table without the column."""
    if "answer_mass" not in table.column_names:
        return {}
    out = {}
    for name, checklist in checklists.items():
        rows = table.filter(pc.and_(pc.equal(table["status"], "ok"), pc.equal(table["checklist"], name)))
        masses = pc.drop_null(rows["answer_mass"]).combine_chunks()
        if len(masses):
            values = pc.list_flatten(masses).to_numpy(zero_copy_only=False).astype(np.float64)
            out[name] = mass_by_question(checklist.question_ids, values.reshape(len(masses), -1).mean(axis=0))
    return out


def mass_lines(means: dict[str, dict[str, float]], width: int = 100, heading: str = HEADING) -> list[str]:
    """The mean answer mass of every question, per checklist (or media type, or a judge's order):
    `heading`, then `id value` pairs wrapped at `width` characters."""
    if not means:
        return []
    lines = [heading]
    for name, by_question in means.items():
        line = f"  {name}:"
        for qid, value in by_question.items():
            cell = f"  {qid} {value:.3f}"
            if len(line) + len(cell) > width:
                lines.append(line)
                line = " " * (len(name) + 3)
            line += cell
        lines.append(line)
    return lines


def low_mass_warning(means: dict[str, dict[str, float]], threshold: float = LOW_MASS, *,
                     answer: str = "yes or no", read: str = "p_yes", causes: str = CAUSES) -> str | None:
    """One line when any question's mean answer mass is under `threshold`, else None. `answer`: what
    the model should be answering where `read` is read; `causes`: the settings to check."""
    low = [(value, name, qid) for name, by_question in means.items()
           for qid, value in by_question.items() if value < threshold]
    if not low:
        return None
    total = sum(len(by_question) for by_question in means.values())
    value, name, qid = min(low)
    return (f"warning: {len(low)} of {total} questions have a mean answer mass under {threshold} "
            f"(lowest {qid} of {name}: {value:.3g}): the model is mostly not answering {answer} "
            f"where {read} is read, so {read} may mean nothing; check {causes}")
