"""Load the published VisionReward question lists and weight files as a `Checklist`.

Formats (see the VisionReward repository):
- `*_qa.txt`: one question per line, no ids; lines may carry trailing spaces.
- video `weight.json`: a bare list of floats aligned with the questions; score = mean(w * a)
  over every question (rule 'mean_all').
- image `weight_select.json`: {"coef": [alignment, w_1..w_n], "intercept": [b]}; the first
  three questions are presence gates (body, face, hands) that carry no coefficient and zero
  the questions they govern; score = coef . [alignment, a_1..a_n] + b.
- `dimensions.json` (optional, ours): each published line's dimension, matched by text so a
  reordered subset of lines still gets the right dimension and masks.
"""
from __future__ import annotations

import json
import re
from pathlib import Path

from schemas.checklist import Aggregation, Checklist, Mask, Question
from schemas.user_error import UserError

# Upstream's presence gates and what they zero, as positions in the 30-line image select
# list (inference-image.py: MASK_FEATURE_MAP). Resolved through dimensions.json's
# `select_idx` when the user's file is not the select list itself.
N_IMAGE_GATES = 3
UPSTREAM_IMAGE_MASKS: dict[int, list[int]] = {0: [22, 23, 24, 28, 29], 1: [25, 26], 2: [27]}
MASK_DIMENSION = "Mask"  # dimensions.json's name for gating questions


class ChecklistFormatError(UserError):
    pass


def _norm(text: str) -> str:
    return " ".join(text.split())


def read_question_lines(path: str | Path) -> list[str]:
    lines = [ln.strip() for ln in Path(path).read_text(encoding="utf-8").splitlines()]
    lines = [ln for ln in lines if ln]
    if not lines:
        raise ChecklistFormatError(f"{path}: no questions")
    return lines


def _slug(text: str, max_words: int = 3) -> str:
    words = re.findall(r"[a-z0-9]+", text.lower())
    return "_".join(words[:max_words]) or "q"


def _dimension_index(dimensions_path: str | Path | None, media: str) -> dict[str, dict]:
    """Normalised question text -> its dimensions.json entry (full list entries, plus select_idx)."""
    if dimensions_path is None:
        return {}
    data = json.loads(Path(dimensions_path).read_text(encoding="utf-8"))
    index: dict[str, dict] = {}
    for key in (f"{media}_full", f"{media}_select"):
        for entry in data.get(key, []):
            index.setdefault(_norm(entry["question"]), {}).update(entry)
    return index


def _media_of(qa_path: Path, weights: object) -> str:
    name = qa_path.name.lower()
    if "video" in name:
        return "video"
    if "image" in name:
        return "image"
    return "image" if isinstance(weights, dict) else "video"


def load_visionreward(
    qa_path: str | Path, weights_path: str | Path, dimensions_path: str | Path | None = None
) -> Checklist:
    """A VisionReward question list + weight file (+ optional dimensions.json) as a Checklist."""
    qa_path, weights_path = Path(qa_path), Path(weights_path)
    texts = read_question_lines(qa_path)
    weights = json.loads(weights_path.read_text(encoding="utf-8"))
    media = _media_of(qa_path, weights)
    dims = _dimension_index(dimensions_path, media)
    if dims:
        unknown = [t for t in texts if _norm(t) not in dims]
        if unknown:
            raise ChecklistFormatError(
                f"{len(unknown)} question(s) of {qa_path.name} are not in {dimensions_path}, e.g. {unknown[0]!r}"
            )

    if isinstance(weights, list):
        gates, question_weights = set(), [float(w) for w in weights]
        aggregation = Aggregation(rule="mean_all")  # upstream divides by every question
        expected = f"{len(texts)} weights, one per question"
    elif isinstance(weights, dict) and "coef" in weights:
        coef = [float(c) for c in weights["coef"]]
        intercept = weights.get("intercept", [0.0])
        intercept = float(intercept[0] if isinstance(intercept, list) else intercept)
        gates = _gate_positions(texts, dims, n_coef=len(coef))
        # upstream drops the gates, then aligns coef[1:] with the remaining questions in order
        it = iter(coef[1:])
        question_weights = [0.0 if i in gates else next(it, float("nan")) for i in range(len(texts))]
        if len(coef) - 1 != len(texts) - len(gates):
            question_weights = []  # reported below as a count mismatch
        aggregation = Aggregation(rule="linear", intercept=intercept, alignment_weight=coef[0])
        expected = f"1 alignment coefficient + {len(texts) - len(gates)} (questions minus {len(gates)} presence gates)"
    else:
        raise ChecklistFormatError(f"{weights_path}: expected a JSON list or {{'coef': [...], 'intercept': [...]}}")
    if len(question_weights) != len(texts):
        raise ChecklistFormatError(
            f"{weights_path.name} does not fit {qa_path.name}: {len(texts)} questions need {expected}, "
            f"the file has {len(weights) if isinstance(weights, list) else len(weights['coef'])} "
            "(upstream pairs each weight file with its *_qa_select.txt list)"
        )

    questions = []
    for i, (text, w) in enumerate(zip(texts, question_weights)):
        entry = dims.get(_norm(text), {})
        dimension = None if i in gates else entry.get("dimension", "overall")
        label = text if i in gates else (entry.get("sub_dimension") or text)
        questions.append(Question(id=f"q{i:02d}_{_slug(label)}", text=text, dimension=dimension, weight=w))

    masks = _image_masks(texts, dims) if gates else []
    return Checklist(
        name=f"visionreward:{qa_path.name}+{weights_path.name}",
        media_type=media,
        questions=questions,
        aggregation=aggregation,
        masks=[Mask(question=questions[g].id, zeroes=[questions[t].id for t in ts]) for g, ts in masks],
    )


def _gate_positions(texts: list[str], dims: dict[str, dict], n_coef: int) -> set[int]:
    """Presence gates: by dimensions.json when given, else upstream's first three lines when the
    coefficient count says so."""
    if dims:
        return {i for i, t in enumerate(texts) if dims[_norm(t)].get("dimension") == MASK_DIMENSION}
    return set(range(N_IMAGE_GATES)) if n_coef - 1 == len(texts) - N_IMAGE_GATES else set()


def _image_masks(texts: list[str], dims: dict[str, dict]) -> list[tuple[int, list[int]]]:
    """Upstream's gate -> zeroed questions, as positions in the user's list."""
    if dims:
        # position in the user's file of each upstream select index present in it
        pos = {dims[_norm(t)]["select_idx"]: i for i, t in enumerate(texts) if "select_idx" in dims[_norm(t)]}
    else:
        pos = {i: i for i in range(len(texts))}  # upstream semantics: positions in the file as given
    out = []
    for gate, targets in UPSTREAM_IMAGE_MASKS.items():
        present = [pos[t] for t in targets if t in pos]
        if gate in pos and present:
            out.append((pos[gate], present))
    return out
