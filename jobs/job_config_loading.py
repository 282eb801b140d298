"""Build a JobConfig from a YAML file, command-line flags and `--set key=value` overrides.

Precedence: --set > flags > YAML file > defaults. Keys of --set are dotted paths into the
config (`resources.batch_size=32`, `model.dtype=bfloat16`); values are parsed as YAML
scalars, so numbers, booleans and lists work as expected.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from schemas.job_config import JobConfig
from schemas.user_error import UserError


class ConfigError(UserError):
    pass


def _set_path(data: dict, dotted: str, value: Any) -> None:
    keys = dotted.split(".")
    node = data
    for k in keys[:-1]:
        if node.get(k) is None:  # a mapping option left null in the YAML file (chat_template_kwargs: null)
            node[k] = {}
        node = node[k]
        if not isinstance(node, dict):
            raise ConfigError(f"--set {dotted}: {k!r} is not a section")
    node[keys[-1]] = value


def parse_set_items(items: list[str]) -> list[tuple[str, Any]]:
    out = []
    for item in items:
        if "=" not in item:
            raise ConfigError(f"--set expects key=value, got {item!r}")
        key, raw = item.split("=", 1)
        out.append((key.strip(), yaml.safe_load(raw) if raw != "" else ""))
    return out


def build_job_config(config_file: str | None, flags: dict[str, Any], set_items: list[str]) -> JobConfig:
    """`flags` holds dotted keys of options given on the command line (None = not given)."""
    data: dict = {}
    if config_file:
        loaded = yaml.safe_load(Path(config_file).read_text(encoding="utf-8")) or {}
        if not isinstance(loaded, dict):
            raise ConfigError(f"{config_file}: a job config must be a mapping")
        data = loaded
    for key, value in flags.items():
        if value is not None:
            _set_path(data, key, value)
    for key, value in parse_set_items(set_items):
        _set_path(data, key, value)
    try:
        return JobConfig.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or '(config)'}: {e['msg']}" for e in exc.errors())
        raise ConfigError(f"invalid job config: {problems}") from None
