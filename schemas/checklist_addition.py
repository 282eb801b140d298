"""Questions added to a checklist loaded from elsewhere: a checklist addition file.

The published VisionReward image checklist is loaded from the user's copy of its files (the
project ships none of its sentences); its `linear` rule starts with an alignment term that
upstream takes from VQAScore. An addition file completes it: it names the media kind it adds to,
the questions it appends and the question that becomes `aggregation.alignment_from`. Given as one
more `--checklist` (e.g. the shipped `visionreward-alignment`), it is applied to that kind's
checklist after every checklist is loaded, and the result is validated as any checklist is.
"""
from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from schemas.checklist import Checklist, Question
from schemas.user_error import UserError

ADDS_TO = "adds_to"  # the key that tells an addition file from a checklist file


class ChecklistAddition(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    adds_to: Literal["image", "video"] = Field(..., description="Media kind whose checklist the questions join.")
    name_suffix: str = Field(..., min_length=1, description="Appended to that checklist's name (outputs name it).")
    questions: list[Question] = Field(..., min_length=1, description="Questions appended after the checklist's own.")
    alignment_from: str | None = Field(
        None, description="Id of an added question whose p_yes becomes the linear rule's alignment term "
        "(`aggregation.alignment_from`); the checklist must use the linear rule.")

    def apply(self, checklist: Checklist, source: str) -> Checklist:
        """`checklist` with these questions; refuses one that cannot take them (an id it already has,
        alignment for a rule without the term)."""
        data = checklist.model_dump()
        data["name"] = checklist.name + self.name_suffix
        data["questions"] += [q.model_dump() for q in self.questions]
        data["aggregation"]["normalization"] = None  # moments of the scores without these questions
        if self.alignment_from is not None:
            data["aggregation"]["alignment_from"] = self.alignment_from
        try:
            return Checklist.model_validate(data)
        except ValidationError as exc:
            reasons = "; ".join(e["msg"] for e in exc.errors())
            raise UserError(f"{source}: cannot add its questions to {checklist.name!r}: {reasons}") from None


def is_addition(data: dict) -> bool:
    return ADDS_TO in data


def load_addition(data: dict, source: str | Path) -> ChecklistAddition:
    try:
        return ChecklistAddition.model_validate(data)
    except ValidationError as exc:
        raise UserError(f"{source}: not a valid checklist addition: {exc}") from None
