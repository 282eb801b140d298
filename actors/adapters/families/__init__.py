"""Model families by `config.model_type`: a plain dict of model type -> family module.

Each module in this folder defines `FAMILY`, a class that follows `actors/adapters/family.py`.
Modules are imported when a checkpoint of their type is loaded; a type whose module is not
(yet) in this folder is not supported.
"""
from __future__ import annotations

import importlib
import importlib.util

FAMILY_MODULES: dict[str, str] = {
    "qwen2_vl": "qwen2_vl",
    "qwen2_5_vl": "qwen2_vl",
    "qwen3_vl": "qwen3_vl",
    "qwen3_vl_moe": "qwen3_vl",
    "qwen3_5": "qwen3_vl",
    "glm4v": "glm4v",
    "internvl": "internvl",
    "llava_onevision": "llava_onevision",
    "gemma3": "gemma3",
    "smolvlm": "smolvlm",
    "idefics3": "smolvlm",
}


def _module_name(model_type: str) -> str:
    return f"{__name__}.{FAMILY_MODULES[model_type]}"


def supported_model_types() -> list[str]:
    """The model types whose family module is present."""
    return sorted(t for t in FAMILY_MODULES if importlib.util.find_spec(_module_name(t)) is not None)


def family_class(model_type: str) -> type | None:
    """The family class for `model_type`, or None when no module supports it."""
    if model_type not in supported_model_types():
        return None
    return importlib.import_module(_module_name(model_type)).FAMILY
