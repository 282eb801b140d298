"""The checklist: questions, their dimensions and weights, masks and the aggregation rule.

This module owns the checklist schema. Our own format is YAML or JSON (see
`schemas/checklists/*.yaml`); the published VisionReward question/weight files are turned
into the same model by `schemas/visionreward_format.py`.
"""
from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, model_validator

from schemas.user_error import UserError

PROMPT_PLACEHOLDER = "[[prompt]]"
QUESTION_PLACEHOLDER = "[[question]]"
# pairwise checklists: where the two media go in the user turn (the first shown, the second shown)
FIRST_MEDIA_PLACEHOLDER = "[[media_1]]"
SECOND_MEDIA_PLACEHOLDER = "[[media_2]]"
_ID_RE = re.compile(r"^[a-z][a-z0-9_]*$")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


CALIBRATION_EPS = 1e-6  # p_yes is clipped to [eps, 1 - eps] before its logit: a float32 p_yes can be 0 or 1


class Calibration(_Strict):
    """A yes/no question's calibration, fitted by `vrscore calibrate` from labels: p_cal =
    sigmoid(a * logit(p_yes) + b), p_yes clipped to [1e-6, 1 - 1e-6]. It adds `p_cal` to the
    scores; `p_yes`, `answers` and every score stay the raw model's."""

    method: Literal["platt", "temperature"] = Field(
        ..., description="'platt': slope a and intercept b fitted; 'temperature': one temperature T = 1/a, b = 0."
    )
    a: float = Field(
        ..., description="Slope on logit(p_yes) (1/T for temperature scaling); a = 1 with b = 0 changes nothing."
    )
    b: float = Field(0.0, description="Intercept added to the scaled logit (platt only; 0 for temperature).")

    @model_validator(mode="after")
    def _check(self) -> "Calibration":
        if not (math.isfinite(self.a) and math.isfinite(self.b)):
            raise ValueError(f"calibration a and b must be finite, got a={self.a}, b={self.b}")
        if self.method == "temperature" and (self.b != 0 or self.a <= 0):
            raise ValueError(f"temperature scaling has b = 0 and a = 1/T > 0, got a={self.a}, b={self.b}")
        return self


class Question(_Strict):
    id: str = Field(..., description="Stable snake_case id; used in filters (q.<id>) and output metadata.")
    text: str = Field(..., description="The yes/no question. May contain [[prompt]] (the generation prompt).")
    dimension: str | None = Field(
        ..., description="Dimension this question scores (e.g. 'quality'); null for gating questions that only mask others."
    )
    weight: float = Field(1.0, description="Weight of this question's +1/-1 answer in the aggregation.")
    answer: Literal["yes_no", "rating"] = Field(
        "yes_no",
        description="How the question is answered: 'yes_no', read from the model's yes and no words; 'rating', "
        "read from `levels`: p_yes is the expected value of `values` under the levels' distribution.",
    )
    levels: list[str] | None = Field(
        None,
        description="rating only: the answer words in order, worst to best (e.g. ['1','2','3','4','5']); each "
        "must be one token of the model's tokenizer, as written, in lower case and capitalised.",
    )
    values: list[float] | None = Field(
        None, description="rating only: each level's value in [0, 1]; null = evenly spaced from 0 to 1."
    )
    readout: Literal["renormalised", "absolute"] = Field(
        "renormalised",
        description="yes_no only. 'renormalised': p_yes = P(yes words) / (P(yes words) + P(no words)). "
        "'absolute': p_yes = P(yes words) under the softmax over the whole vocabulary (VQAScore's readout).",
    )
    prompt_template: str | None = Field(
        None,
        description="This question's own user text, containing [[question]]; null = the checklist's "
        "prompt_template (e.g. a question that carries its own answer instruction).",
    )
    calibration: Calibration | None = Field(
        None,
        description="yes_no only: the calibration `vrscore calibrate` fitted; when set, `score` and `rescore` "
        "write this question's calibrated probability into `p_cal`. null = not calibrated.",
    )

    @model_validator(mode="after")
    def _check(self) -> "Question":
        if self.prompt_template is not None and QUESTION_PLACEHOLDER not in self.prompt_template:
            raise ValueError(f"question {self.id!r}: prompt_template must contain {QUESTION_PLACEHOLDER}")
        if self.calibration is not None and self.answer != "yes_no":
            raise ValueError(f"question {self.id!r}: calibration is for yes_no questions, not {self.answer!r}")
        if self.answer == "yes_no":
            if self.levels is not None or self.values is not None:
                raise ValueError(f"question {self.id!r}: levels and values are for answer: rating")
            return self
        if self.readout != "renormalised":
            raise ValueError(f"question {self.id!r}: readout {self.readout!r} is for yes_no questions; a rating "
                             "is renormalised over its levels")
        levels = self.levels or []
        if len(levels) < 2 or any(not w.strip() for w in levels):
            raise ValueError(f"question {self.id!r}: a rating needs at least two non-empty levels, got {levels}")
        folded = [w.strip().lower() for w in levels]
        if len(set(folded)) != len(folded):
            raise ValueError(f"question {self.id!r}: levels {levels} repeat a word (case is pooled)")
        if self.values is not None and (len(self.values) != len(levels) or any(not 0 <= v <= 1 for v in self.values)):
            raise ValueError(f"question {self.id!r}: values must be one number in [0, 1] per level, got {self.values}")
        return self

    @property
    def level_values(self) -> list[float] | None:
        """A rating's level values (given, or evenly spaced from 0 to 1); None for a yes/no question."""
        if self.answer != "rating":
            return None
        n = len(self.levels or [])
        return list(self.values) if self.values is not None else [i / (n - 1) for i in range(n)]

    @property
    def asked(self) -> tuple:
        """What decides the model's input and the reading of its answer besides the text: stored p_yes
        answer a question only where these match."""
        return (self.answer, self.readout, self.prompt_template, self.levels, self.level_values)


class Mask(_Strict):
    """A question whose 'no' zeroes other questions (VisionReward: no hands -> hand questions don't count)."""

    question: str = Field(..., description="Id of the gating question.")
    zeroes: list[str] = Field(..., description="Ids of the questions zeroed when the gating question is answered no.")


class Moments(_Strict):
    """A column's mean and standard deviation over a reference output's ok rows."""

    mean: float = Field(..., description="Mean over the reference rows.")
    std: float = Field(..., gt=0, description="Standard deviation over the reference rows (population, ddof 0); > 0.")


class Normalization(_Strict):
    """What `rescore --normalize-from` measured: z = (value - mean) / std for the score and each dimension."""

    score: Moments = Field(..., description="Moments of `score` over the reference rows; gives `z_score`.")
    dims: dict[str, Moments] = Field(
        default_factory=dict, description="Dimension name -> moments of its `dim_<name>` column; gives `z_dim_<name>`."
    )
    reference: str = Field(..., description="The reference scores output (its Parquet data location) they come from.")
    rows: int = Field(..., ge=2, description="Reference rows (status ok) the moments were computed over.")


class Aggregation(_Strict):
    rule: Literal["mean", "mean_all", "linear"] = Field(
        ...,
        description="'mean': weighted average of the answers over the questions that count for the item, "
        "sum(weight*answer) / sum(|weight|) over unmasked questions, in [-1, 1] (0 when none counts). "
        "'mean_all': mean over every question of weight*answer, masked and zero-weight ones counting as 0 "
        "(VisionReward video's formula). "
        "'linear': sum of weight*answer + alignment_weight*alignment + intercept (VisionReward image).",
    )
    intercept: float = Field(0.0, description="Added to the total score (linear rule only).")
    alignment_weight: float = Field(
        0.0, description="Weight of an external text-image alignment probability (linear rule only)."
    )
    alignment_default: float = Field(
        0.7,
        description="Alignment value used when the manifest gives none. 0.7 is the constant the "
        "upstream VisionReward image inference script uses in place of VQAScore.",
    )
    alignment_from: str | None = Field(
        None,
        description="linear rule only: id of the question whose p_yes is the alignment term (e.g. VQAScore's "
        "question with readout: absolute), in place of alignment_default and of a manifest column; that "
        "question is then not also a feature of the score or of any dimension.",
    )
    normalization: Normalization | None = Field(
        None,
        description="Reference moments of score and dimensions (`vrscore rescore --normalize-from`); when set, the "
        "outputs carry z_score and z_dim_<name>. Computed for these weights: refitting or reweighting drops it.",
    )


class Checklist(_Strict):
    name: str = Field(..., description="Name of the checklist, written into every output.")
    media_type: Literal["image", "video", "any"] = Field(..., description="Media kind the checklist is written for.")
    mode: Literal["pointwise", "pairwise"] = Field(
        "pointwise",
        description="'pointwise': each question is asked about one item and answered yes or no (`vrscore score`). "
        "'pairwise': each question is asked about two items shown in one prompt and answered with the position "
        "of the better one (`first_words` / `second_words`, optionally `tie_words`; `vrscore judge`).",
    )
    prompt_template: str = Field(
        QUESTION_PLACEHOLDER,
        description="User text sent to the model; [[question]] is replaced by the question text "
        "(after [[prompt]] substitution). Use it to add an instruction such as 'Answer yes or no.'. "
        "pairwise only: [[media_1]] and [[media_2]] say where the first and second medium go, before "
        "[[question]] (e.g. 'Image 1: [[media_1]] Image 2: [[media_2]] [[question]]'); without them both "
        "media come first, then the text.",
    )
    first_words: list[str] | None = Field(
        None, description="pairwise only: the answer words naming the first medium (e.g. ['1']); each one token "
        "of the model's tokenizer, pooled over its case forms and, without answer_prefix, the template's leading "
        "space, as yes/no words are.")
    second_words: list[str] | None = Field(
        None, description="pairwise only: the answer words naming the second medium (e.g. ['2']).")
    tie_words: list[str] | None = Field(
        None, description="pairwise only, optional: words saying neither is better (e.g. ['tie']); then the "
        "first, second and tie words are renormalised together and each order's tie mass counts half for each "
        "item. Null = no tie answer.")
    answer_prefix: str | None = Field(
        None, description="pairwise only: text after the generation prompt that the answer word continues "
        "(UnifiedReward answers 'Image 1 is better...': answer_prefix 'Image '); the words are read as the "
        "tokenizer splits prefix + word, so the answer position is where the model writes the word's token. "
        "It follows the model's own answer prefix (model.answer_prefix) when there is one.")
    system_prompt: str | None = Field(None, description="System message; null = the model's default.")
    questions: list[Question] = Field(..., min_length=1)
    aggregation: Aggregation
    masks: list[Mask] = Field(default_factory=list)

    @model_validator(mode="after")
    def _check(self) -> "Checklist":
        ids = [q.id for q in self.questions]
        bad = [i for i in ids if not _ID_RE.match(i)]
        if bad:
            raise ValueError(f"question ids must be snake_case ([a-z][a-z0-9_]*): {bad}")
        dupes = sorted({i for i in ids if ids.count(i) > 1})
        if dupes:
            raise ValueError(f"duplicate question ids: {dupes}")
        if QUESTION_PLACEHOLDER not in self.prompt_template:
            raise ValueError(f"prompt_template must contain {QUESTION_PLACEHOLDER}")
        known = set(ids)
        for m in self.masks:
            unknown = [i for i in [m.question, *m.zeroes] if i not in known]
            if unknown:
                raise ValueError(f"mask on {m.question!r} names unknown question ids: {unknown}")
        source = self.aggregation.alignment_from
        if source is not None:
            if self.aggregation.rule != "linear":
                raise ValueError(f"aggregation.alignment_from is for the linear rule, not {self.aggregation.rule!r}")
            if source not in known:
                raise ValueError(f"aggregation.alignment_from names unknown question id {source!r}")
        if not self.dimensions:
            raise ValueError("no question has a dimension: nothing would be scored")
        norm = self.aggregation.normalization
        if norm is not None and sorted(norm.dims) != sorted(self.dimensions):
            raise ValueError(f"aggregation.normalization has moments for dimensions {sorted(norm.dims)}, the checklist "
                             f"has {sorted(self.dimensions)}")
        self._check_mode()
        return self

    def _check_mode(self) -> None:
        pair_fields = {"first_words": self.first_words, "second_words": self.second_words,
                       "tie_words": self.tie_words, "answer_prefix": self.answer_prefix}
        marks = [m for m in (FIRST_MEDIA_PLACEHOLDER, SECOND_MEDIA_PLACEHOLDER) if m in self.prompt_template]
        if self.mode == "pointwise":
            given = [k for k, v in pair_fields.items() if v is not None]
            if given or marks:
                raise ValueError(f"{', '.join(given + marks)} belong to mode: pairwise checklists")
            return
        word_sets = {k: v for k, v in pair_fields.items() if k.endswith("_words") and v is not None}
        for name in ("first_words", "second_words"):
            if not word_sets.get(name):
                raise ValueError(f"a pairwise checklist needs {name} (e.g. ['1'] and ['2'])")
        folded = {k: {w.strip().lower() for w in v} for k, v in word_sets.items()}
        for k, v in word_sets.items():
            if not v or any(not w.strip() for w in v):
                raise ValueError(f"{k} must be non-empty words, got {v}")
        shared = [(a, b) for a in folded for b in folded if a < b and folded[a] & folded[b]]
        if shared:
            raise ValueError(f"{shared[0][0]} and {shared[0][1]} share a word (case is pooled)")
        if len(marks) == 1 or (marks and not (self.prompt_template.index(FIRST_MEDIA_PLACEHOLDER)
                                              < self.prompt_template.index(SECOND_MEDIA_PLACEHOLDER)
                                              < self.prompt_template.index(QUESTION_PLACEHOLDER))):
            raise ValueError(f"a pairwise prompt_template has both {FIRST_MEDIA_PLACEHOLDER} and "
                             f"{SECOND_MEDIA_PLACEHOLDER}, in that order, before {QUESTION_PLACEHOLDER}, or neither")
        # the answer is a position, not yes/no: every question is read from the position words
        odd = [q.id for q in self.questions if q.answer != "yes_no" or q.readout != "renormalised" or q.prompt_template]
        if odd:
            raise ValueError(f"pairwise questions are answered with the position words: questions {odd} set "
                             "answer, readout or prompt_template, which pointwise questions use")
        if self.masks or self.aggregation.alignment_from or self.aggregation.alignment_weight:
            raise ValueError("a pairwise checklist takes no masks and no alignment term: each question compares "
                             "the two items")

    def media_texts(self) -> tuple[str, str, str]:
        """pairwise: the prompt template's text before the first medium, between the two media, and after
        the second (holding [[question]])."""
        template = self.prompt_template
        if FIRST_MEDIA_PLACEHOLDER not in template:
            return "", "", template
        before, rest = template.split(FIRST_MEDIA_PLACEHOLDER, 1)
        between, after = rest.split(SECOND_MEDIA_PLACEHOLDER, 1)
        return before, between, after

    @property
    def question_ids(self) -> list[str]:
        return [q.id for q in self.questions]

    @property
    def dimensions(self) -> list[str]:
        """Dimension names in first-appearance order."""
        seen: dict[str, None] = {}
        for q in self.questions:
            if q.dimension is not None:
                seen.setdefault(q.dimension, None)
        return list(seen)

    @property
    def has_ratings(self) -> bool:
        return any(q.answer == "rating" for q in self.questions)

    @property
    def has_calibration(self) -> bool:
        return any(q.calibration is not None for q in self.questions)

    @property
    def uses_prompt(self) -> bool:
        texts = [self.prompt_template, *(q.text for q in self.questions), *(q.prompt_template or "" for q in self.questions)]
        return any(PROMPT_PLACEHOLDER in t for t in texts)

    def render(self, prompt: str | None) -> list[str]:
        """The user texts sent to the model for one item, in question order (pairwise: the text after
        the second medium)."""
        if self.uses_prompt and prompt is None:
            raise ValueError(f"checklist {self.name!r} needs a prompt ([[prompt]]) and the row has none")
        out = []
        template = self.media_texts()[2] if self.mode == "pairwise" else self.prompt_template
        for q in self.questions:
            text = (q.prompt_template or template).replace(QUESTION_PLACEHOLDER, q.text.strip())
            out.append(text.replace(PROMPT_PLACEHOLDER, prompt) if prompt is not None else text)
        return out

    def to_json(self) -> str:
        return self.model_dump_json(indent=2)


DIMENSION_PREFIX = "dim_"


def dimension_column(name: str) -> str:
    """Output column of a dimension: 'Safety&Emotion' -> 'dim_safety_emotion'."""
    snake = re.sub(r"[^0-9a-zA-Z]+", "_", name).strip("_").lower()
    return f"{DIMENSION_PREFIX}{snake}"


def read_checklist_data(path: str | Path) -> dict:
    """The mapping a YAML/JSON checklist (or checklist addition) file holds (local path)."""
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"checklist file not found: {p}")
    text = p.read_text(encoding="utf-8")
    data = json.loads(text) if p.suffix.lower() == ".json" else yaml.safe_load(text)
    if not isinstance(data, dict):
        raise UserError(f"{p}: a checklist file must hold a mapping, got {type(data).__name__}")
    return data


def load_checklist_file(path: str | Path) -> Checklist:
    """Load our YAML/JSON checklist format (local path)."""
    return Checklist.model_validate(read_checklist_data(path))


DEFAULTS_DIR = Path(__file__).parent / "checklists"
DEFAULT_CHECKLISTS = {"image": DEFAULTS_DIR / "image_default.yaml", "video": DEFAULTS_DIR / "video_default.yaml"}


def default_checklist(media_type: str) -> Checklist:
    return load_checklist_file(DEFAULT_CHECKLISTS[media_type])
