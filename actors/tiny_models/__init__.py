"""Tiny random-weight checkpoints of each model family, one module per family.

`actors.demo_model.build_demo_model(dir, family=F)` is the entry point; this registry says which
module builds which `config.model_type`. Each module has `build(out, family, seed, preset) -> Path`.
"""
from __future__ import annotations

import importlib
from pathlib import Path

FAMILY_MODULES: dict[str, str] = {
    "qwen3_vl": "actors.tiny_models.qwen3_vl",
    "qwen3_vl_moe": "actors.tiny_models.qwen3_vl",
    "qwen3_5": "actors.tiny_models.qwen3_vl",
    "glm4v": "actors.tiny_models.glm4v",
    "internvl": "actors.tiny_models.internvl",
    "llava_onevision": "actors.tiny_models.llava_onevision",
    "gemma3": "actors.tiny_models.gemma3",
    "smolvlm": "actors.tiny_models.smolvlm",
    "idefics3": "actors.tiny_models.smolvlm",
}


PRESETS = ("tiny", "bench")


def build_family(out: Path, family: str, seed: int, preset: str = "tiny") -> Path:
    """Write the `preset` checkpoint of `family` (a key of FAMILY_MODULES) to `out`.

    `tiny` has toy vision geometry (a few tokens per image); `bench` the real geometry of a small
    public checkpoint of the family (named in its module), so prefix lengths are the real ones.
    """
    if preset not in PRESETS:
        raise ValueError(f"family {family!r} comes in presets {PRESETS}, not {preset!r}")
    return importlib.import_module(FAMILY_MODULES[family]).build(out, family, seed, preset)
