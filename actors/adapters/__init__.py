"""Checklist adapters, one per model family, chosen by the checkpoint's `config.model_type`."""
from __future__ import annotations

from transformers import AutoConfig

from actors.adapters.base import ChecklistAdapter, MediaInput
from actors.adapters.qwen2_vl import Qwen2VLAdapter
from schemas.job_config import DecodeConfig, ModelConfig

ADAPTERS: dict[str, type] = {
    "qwen2_vl": Qwen2VLAdapter,
    "qwen2_5_vl": Qwen2VLAdapter,
}


def load_adapter(model: ModelConfig, decode: DecodeConfig, system_prompt: str | None = None) -> ChecklistAdapter:
    """Load `model.model` (local path or hub id) with the adapter for its model_type."""
    model_type = AutoConfig.from_pretrained(model.model, trust_remote_code=model.trust_remote_code).model_type
    if model_type not in ADAPTERS:
        raise ValueError(f"{model.model} has model_type {model_type!r}; supported model types: {sorted(ADAPTERS)}")
    return ADAPTERS[model_type](model, decode, system_prompt)


__all__ = ["ADAPTERS", "ChecklistAdapter", "MediaInput", "load_adapter"]
