"""Which job settings a resumed run may change: one marker on each such field of JobConfig.

A rerun into an output that holds rows continues it only if every row would have come out
the same (pipeline/output_dir.py compares the run's config with the first run's job.json). A
field a resume may change carries `resume_may_change(why)` in its `json_schema_extra`, with
`why` saying why no row's output depends on it (speed and memory, where files go, a setting
compared by its content elsewhere); JobConfig.model_json_schema() shows it. Every other
field must be the same, so a field added later is compared until someone marks it.
"""
from __future__ import annotations

from pydantic import BaseModel

MAY_CHANGE = "resume_may_change"
ZERO_IS_A_CHANGE = "resume_refuses_to_or_from_zero"


def resume_may_change(why: str, *, except_to_or_from_zero: bool = False) -> dict:
    """The `json_schema_extra` of a field a resume may change. With `except_to_or_from_zero`,
    a change between 0 and another value is still refused (it changes what runs, not only
    how much of it)."""
    extra: dict = {MAY_CHANGE: why}
    if except_to_or_from_zero:
        extra[ZERO_IS_A_CHANGE] = True
    return extra


SPEED_ONLY = resume_may_change("speed and memory only")


def resume_rules(config: type[BaseModel], prefix: str = "") -> dict[str, bool]:
    """Dotted keys of the fields of `config` (and of its sections) that a resume may change ->
    whether a change to or from 0 is still refused."""
    rules: dict[str, bool] = {}
    for name, field in config.model_fields.items():
        key = f"{prefix}{name}"
        extra = field.json_schema_extra if isinstance(field.json_schema_extra, dict) else {}
        if MAY_CHANGE in extra:
            rules[key] = bool(extra.get(ZERO_IS_A_CHANGE))
        elif isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel):
            rules.update(resume_rules(field.annotation, f"{key}."))
    return rules


def rule_for(rules: dict[str, bool], key: str) -> bool | None:
    """The rule of a flattened job.json key (a key inside a marked field follows the field);
    None when the key must match."""
    for marked, zero_is_a_change in rules.items():
        if key == marked or key.startswith(f"{marked}."):
            return zero_is_a_change
    return None
