"""Resolve the job's checklist arguments into one checklist per media kind."""
from __future__ import annotations

import json
from pathlib import Path

from schemas.checklist import DEFAULTS_DIR, Checklist, default_checklist, read_checklist_data
from schemas.checklist_addition import ChecklistAddition, is_addition, load_addition
from schemas.user_error import UserError
from schemas.visionreward_format import load_visionreward

MEDIA_TYPES = ("image", "video")
# Shipped checklist additions, by the name --checklist takes (schemas/checklist_addition.py).
SHIPPED_ADDITIONS = {"visionreward-alignment": DEFAULTS_DIR / "visionreward_image_alignment.yaml"}


def resolve_checklists(
    specs: list[str], weights: list[str] | None = None, dimensions: str | None = None
) -> dict[str, Checklist]:
    """{'image': Checklist, 'video': Checklist} (either may be absent) from CLI/config specs.

    A later spec for the same media kind is an error rather than a silent override.
    """
    return resolve_checklist_sources(specs, weights, dimensions)[0]


def resolve_checklist_sources(
    specs: list[str], weights: list[str] | None = None, dimensions: str | None = None
) -> tuple[dict[str, Checklist], dict[str, str]]:
    """`resolve_checklists` and, per media kind, the spec it came from (for messages). A checklist
    addition (a shipped name or a file with `adds_to`) joins its kind's checklist once all are loaded."""
    weights = list(weights or [])
    out: dict[str, Checklist] = {}
    sources: dict[str, str] = {}
    additions: list[tuple[str, ChecklistAddition]] = []

    def put(kind: str, checklist: Checklist, source: str) -> None:
        if kind in out:
            raise UserError(f"two checklists for {kind}s ({out[kind].name!r} and {source}); give one per media kind")
        out[kind], sources[kind] = checklist, source

    for spec in specs:
        if spec == "default":
            for kind in MEDIA_TYPES:
                if kind not in out:
                    put(kind, default_checklist(kind), f"--checklist default ({kind})")
            continue
        if spec in SHIPPED_ADDITIONS:
            additions.append((spec, load_addition(read_checklist_data(SHIPPED_ADDITIONS[spec]), spec)))
            continue
        suffix = Path(spec).suffix.lower()
        if suffix == ".txt":
            if not weights:
                raise UserError(f"{spec}: a VisionReward question list needs its weight file (--weights)")
            checklist = load_visionreward(spec, weights.pop(0), dimensions)
        elif suffix in (".yaml", ".yml", ".json"):
            data = read_checklist_data(spec)
            if is_addition(data):
                additions.append((spec, load_addition(data, spec)))
                continue
            checklist = Checklist.model_validate(data)
        else:
            raise UserError(f"{spec}: unknown checklist format (expected .yaml, .yml, .json or VisionReward .txt)")
        kinds = MEDIA_TYPES if checklist.media_type == "any" else (checklist.media_type,)
        for kind in kinds:
            put(kind, checklist, spec)
    if weights:
        raise UserError(f"unused weight files {weights}: each belongs to one VisionReward *_qa.txt checklist")
    for spec, addition in additions:
        kind = addition.adds_to
        if kind not in out:
            raise UserError(f"{spec} adds questions to the {kind} checklist, and no {kind} checklist is given")
        out[kind], sources[kind] = addition.apply(out[kind], spec), f"{sources[kind]} + {spec}"
    if not out:
        raise UserError("no checklist given")
    check_unique_names(out, sources)
    return out, sources


def check_unique_names(checklists: dict[str, Checklist], sources: dict[str, str] | None = None) -> None:
    """Refuse two different checklists of one name. Output rows name their checklist, and
    every reader (filter's q.<id>, report, API) finds it by that name: two of one name would
    read one kind's answers at the other's question positions."""
    seen: dict[str, str] = {}
    for kind, checklist in checklists.items():
        first = seen.setdefault(checklist.name, kind)
        if first != kind and checklists[first] != checklist:
            where = sources or {}
            raise UserError(
                f"two different checklists are named {checklist.name!r}: "
                f"{where.get(first, 'the one')} for {first}s and {where.get(kind, 'the one')} for {kind}s; "
                "give each checklist its own name"
            )


def checklists_to_json(checklists: dict[str, Checklist]) -> str:
    """The job's checklists as written to checklist.json and into the Parquet metadata;
    refuses two different checklists of one name, whichever command writes them."""
    check_unique_names(checklists)
    return json.dumps({k: json.loads(c.to_json()) for k, c in checklists.items()}, indent=2)


def checklists_from_json(text: str) -> dict[str, Checklist]:
    checklists = {k: Checklist.model_validate(v) for k, v in json.loads(text).items()}
    check_unique_names(checklists)
    return checklists


def all_dimensions(checklists: dict[str, Checklist]) -> list[str]:
    """Union of dimension names, in first-appearance order over image then video."""
    seen: dict[str, None] = {}
    for kind in MEDIA_TYPES:
        if kind in checklists:
            for d in checklists[kind].dimensions:
                seen.setdefault(d, None)
    return list(seen)
