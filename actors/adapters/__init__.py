"""Checklist adapters: one engine, a family module per model family, chosen by `config.model_type`."""
from __future__ import annotations

from transformers import AutoConfig

from actors.adapters.base import ChecklistAdapter, MediaInput
from actors.adapters.engine import ChecklistEngine
from actors.adapters.families import family_class, supported_model_types
from schemas.job_config import DecodeConfig, ModelConfig


def load_adapter(model: ModelConfig, decode: DecodeConfig, system_prompt: str | None = None) -> ChecklistAdapter:
    """Load `model.model` (local path or hub id) with the family module of its model_type."""
    model_type = AutoConfig.from_pretrained(model.model, trust_remote_code=model.trust_remote_code).model_type
    family = family_class(model_type)
    if family is None:
        raise ValueError(f"{model.model} has model_type {model_type!r}; supported model types: "
                         f"{supported_model_types()}")
    return ChecklistEngine(model, decode, family, system_prompt)


__all__ = ["ChecklistAdapter", "MediaInput", "load_adapter", "supported_model_types"]
