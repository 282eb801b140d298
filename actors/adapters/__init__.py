"""Checklist adapters: one engine, a family module per model family, chosen by `config.model_type`."""
from __future__ import annotations

from transformers import AutoConfig
from transformers.models.auto.modeling_auto import MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING_NAMES

from actors.adapters.base import ChecklistAdapter, MediaInput
from actors.adapters.engine import ChecklistEngine
from actors.adapters.families import family_class, supported_model_types
from schemas.job_config import DecodeConfig, ModelConfig


def load_adapter(model: ModelConfig, decode: DecodeConfig, system_prompt: str | None = None) -> ChecklistAdapter:
    """Load `model.model` (local path or hub id) with the family module of its model_type, or on
    the generic path (reference forwards through its own processor) for other image-text-to-text
    models; in vLLM (`actors/adapters/vllm_engine.py`) with model.engine=vllm."""
    config = AutoConfig.from_pretrained(model.model, trust_remote_code=model.trust_remote_code)
    family = family_class(config.model_type)
    if model.engine == "vllm":
        from actors.adapters.vllm_engine import VllmChecklistEngine
        from actors.adapters.vllm_support import check_vllm_family

        check_vllm_family(config.model_type, model.model)  # also refuses the generic path: vLLM needs our family's prompts
        return VllmChecklistEngine(model, decode, family, system_prompt)
    if family is not None:
        return ChecklistEngine(model, decode, family, system_prompt)
    if config.model_type in MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING_NAMES or \
            "AutoModelForImageTextToText" in (getattr(config, "auto_map", None) or {}):
        from actors.adapters.generic import GenericAdapter

        return GenericAdapter(model, config.model_type, system_prompt)
    raise ValueError(f"{model.model} has model_type {config.model_type!r}, not an image-text-to-text model; "
                     f"supported model types: {supported_model_types()}, or any image-text-to-text model "
                     "with a stock processor (one forward per question)")


__all__ = ["ChecklistAdapter", "MediaInput", "load_adapter", "supported_model_types"]
