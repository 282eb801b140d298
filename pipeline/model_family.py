"""The model's family, resolved on the driver before any work: how the decode stage sizes frames.

`vrscore score` reads the checkpoint's `config.json` (its `model_type`) and, for a family whose
rule gives the model's input size, its `preprocessor_config.json` (patch size x spatial merge),
and fills `DecodeConfig.resize_rule` and `resize_factor` in before `job.json` is written. The
decode stage then applies exactly that rule (`actors/frame_decode.py`) and the scorer takes the
frames as final only when the rule is the family's own (`actors/checklist_scorer.py`). A model
type that no family module and no generic path scores, a rule other than the model's, or a
factor the model cannot take is refused here in one line, before Ray starts.

It also fills in how the answer is read (`actors/answer_readout.py`): the chat template's options
(`model.chat_template_kwargs`) and the answer prefix, from the checkpoint's template and added tokens,
so that job.json holds what every actor renders.

Torch-free on the family path: a few JSON and template files are read, no model code is imported.
"""
from __future__ import annotations

import json
from pathlib import Path

from actors.answer_readout import THINKING_ANSWER_PREFIXES, resolve_readout
from actors.adapters.vllm_support import check_vllm_family, vllm_missing
from actors.model_store import is_remote
from pipeline.resize_policy import MODEL_SIZE_RULES
from pipeline.storage import fsspec_filesystem
from schemas.job_config import DecodeConfig, ModelConfig, StorageConfig
from schemas.user_error import UserError

# model_type -> the rule of its family module (`resize_rule` of the class in
# actors/adapters/families/; tests/test_decode_family_rule.py checks that they agree). Kept here
# so that the driver resolves it without importing torch and the model code.
FAMILY_RESIZE_RULES: dict[str, str] = {
    "qwen2_vl": "smart_resize",
    "qwen2_5_vl": "smart_resize",
    "qwen3_vl": "smart_resize",
    "qwen3_vl_moe": "smart_resize",
    "qwen3_5": "smart_resize",
    "glm4v": "smart_resize_small_up",
    "internvl": "fit_within",
    "llava_onevision": "fit_within",
    "gemma3": "fit_within",
    "smolvlm": "fit_within",
    "idefics3": "fit_within",
}
GENERIC_RULE = "fit_within"  # the generic path's stock processor resizes the source itself


class ModelFamilyError(UserError):
    """The model cannot be scored, or not with the decode settings given."""


def grid_factor(preprocessor: dict, where: str) -> int:
    """patch_size x merge_size of a Qwen2-VL-style preprocessor config: one merged visual token
    covers a square of this side, so frame sides must be multiples of it."""
    try:
        return int(preprocessor["patch_size"]) * int(preprocessor["merge_size"])
    except (KeyError, TypeError, ValueError):
        raise ModelFamilyError(f"{where}: preprocessor_config.json gives no integer patch_size and "
                               "merge_size (the frame grid of the model)") from None


def is_image_text_to_text(config: dict) -> bool:
    """Whether load_adapter's generic path takes this config (as `actors/adapters/__init__.py`)."""
    from transformers.models.auto.modeling_auto import (
        MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING_NAMES,
    )

    return (config.get("model_type") in MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING_NAMES
            or "AutoModelForImageTextToText" in (config.get("auto_map") or {}))


def model_rule(config: dict, where: str) -> str:
    """The decode rule of the model with this config.json; refused when nothing scores it."""
    model_type = config.get("model_type")
    if model_type in FAMILY_RESIZE_RULES:
        return FAMILY_RESIZE_RULES[model_type]
    if isinstance(model_type, str) and is_image_text_to_text(config):
        return GENERIC_RULE
    raise ModelFamilyError(f"{where} has model_type {model_type!r}, which vrscore cannot score; supported model "
                           f"types: {', '.join(sorted(FAMILY_RESIZE_RULES))}, or any image-text-to-text model "
                           "with a stock processor (the generic path)")


def decode_for(rule: str, grid: int | None, decode: DecodeConfig, where: str) -> DecodeConfig:
    """`decode` with `rule` and its factor: the model's `grid` unless a multiple of it was set."""
    if decode.resize_rule not in (None, rule):
        raise ModelFamilyError(f"decode.resize_rule={decode.resize_rule!r} is not the rule of {where} ({rule!r}); "
                               "leave it unset")
    if rule not in MODEL_SIZE_RULES:
        if decode.resize_factor is not None:
            raise ModelFamilyError(f"decode.resize_factor={decode.resize_factor} does not apply to {where}: its "
                                   "processor resizes the source image itself; leave it unset")
        return decode.model_copy(update={"resize_rule": rule})
    factor = grid if decode.resize_factor is None else decode.resize_factor
    if factor % grid:
        raise ModelFamilyError(f"decode.resize_factor={factor} is not a multiple of {grid} (patch size x spatial "
                               f"merge of {where}); leave it unset for {grid}")
    return decode.model_copy(update={"resize_rule": rule, "resize_factor": factor})


def read_checkpoint_text(model: str, storage: StorageConfig, name: str) -> str | None:
    """The file `name` of the checkpoint at `model` (local folder, hub id or fsspec URI) as text;
    None when it has no such file."""
    try:
        if is_remote(model):
            fs = fsspec_filesystem(model, storage)
            path = f"{fs._strip_protocol(model).rstrip('/')}/{name}"
            return fs.cat_file(path).decode("utf-8") if fs.exists(path) else None
        from transformers.utils import cached_file  # torch-free

        local = cached_file(model, name, _raise_exceptions_for_missing_entries=False)
        return None if local is None else Path(local).read_text(encoding="utf-8")
    except (OSError, ValueError) as exc:
        raise ModelFamilyError(f"cannot read {name} of the model {model}: {exc}") from None


def read_checkpoint_json(model: str, storage: StorageConfig, name: str) -> dict | None:
    """The JSON file `name` of the checkpoint at `model`; None when it has no such file."""
    text = read_checkpoint_text(model, storage, name)
    try:
        return None if text is None else json.loads(text)
    except ValueError as exc:
        raise ModelFamilyError(f"cannot read {name} of the model {model}: {exc}") from None


def checkpoint_template(model: ModelConfig, storage: StorageConfig) -> str:
    """The chat template's source where the scorer finds it (`load_chat_template`): the file
    `model.chat_template` names, else the checkpoint's; '' when there is none (the scorer refuses that)."""
    if model.chat_template is not None:
        try:
            fs = fsspec_filesystem(model.chat_template, storage)
            with fs.open(fs._strip_protocol(model.chat_template), "r", encoding="utf-8") as f:
                return f.read()
        except OSError as exc:
            raise ModelFamilyError(f"cannot read model.chat_template {model.chat_template}: {exc}") from None
    jinja = read_checkpoint_text(model.model, storage, "chat_template.jinja")
    if jinja:
        return jinja
    template = (read_checkpoint_json(model.model, storage, "tokenizer_config.json") or {}).get("chat_template")
    if isinstance(template, list):  # named templates: the default one
        template = next((t.get("template") for t in template if t.get("name") == "default"), None)
    if isinstance(template, str) and template:
        return template
    return str((read_checkpoint_json(model.model, storage, "chat_template.json") or {}).get("chat_template") or "")


def checkpoint_added_tokens(model: str, storage: StorageConfig) -> set[str]:
    """The text of the tokenizer's added tokens (tokenizer.json, and tokenizer_config.json's older form)."""
    tokens = {t.get("content") for t in (read_checkpoint_json(model, storage, "tokenizer.json") or {}).get("added_tokens", [])}
    legacy = (read_checkpoint_json(model, storage, "tokenizer_config.json") or {}).get("added_tokens_decoder") or {}
    tokens |= {t.get("content") for t in legacy.values()}
    return {t for t in tokens if isinstance(t, str)}


def resolve_readout_config(model: ModelConfig, storage: StorageConfig) -> ModelConfig:
    """`model` with its chat template options and answer prefix filled in (see the module docstring)."""
    model_type = (read_checkpoint_json(model.model, storage, "config.json") or {}).get("model_type")
    template = checkpoint_template(model, storage)
    # tokenizer.json is large: read only where a default prefix depends on it
    needs_tokens = model.answer_prefix is None and model_type in THINKING_ANSWER_PREFIXES
    added = checkpoint_added_tokens(model.model, storage) if needs_tokens else set()
    return resolve_readout(model, model_type, template, added)


def resolve_decode(model: ModelConfig, decode: DecodeConfig, storage: StorageConfig) -> DecodeConfig:
    """`decode` with the model's resize rule and factor filled in (see the module docstring)."""
    config = read_checkpoint_json(model.model, storage, "config.json")
    if config is None:
        raise ModelFamilyError(f"{model.model} has no config.json: not a saved transformers model")
    where = f"{model.model} (model_type {config.get('model_type')!r})"
    if model.engine == "vllm":  # before any actor starts: the engine refuses these at load too
        try:
            check_vllm_family(config.get("model_type"), model.model)
        except ValueError as exc:
            raise ModelFamilyError(str(exc)) from None
        if vllm_missing():
            raise ModelFamilyError(vllm_missing())
    rule = model_rule(config, where)
    grid = None
    if rule in MODEL_SIZE_RULES:
        preprocessor = read_checkpoint_json(model.model, storage, "preprocessor_config.json")
        if preprocessor is None:
            raise ModelFamilyError(f"{where} has no preprocessor_config.json (its patch size and merge)")
        grid = grid_factor(preprocessor, where)
    return decode_for(rule, grid, decode, where)
