"""What every tiny family checkpoint shares: sizes, the save step and the vocabulary rounding.

A family module builds a config and a tokenizer; `save_checkpoint` instantiates the model from
transformers' own class (`AutoModelForImageTextToText.from_config`), saves safetensors weights,
the tokenizer with its chat template, and the processor configs the stock processors read.
"""
from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from transformers import AutoModelForImageTextToText, PretrainedConfig, PreTrainedModel
from transformers.models.qwen2.tokenization_qwen2 import Qwen2Tokenizer

# Every family: hidden 64, 2 language layers, 2 vision layers, so a model loads in about a second.
HIDDEN, LAYERS, HEADS, KV_HEADS, INTERMEDIATE = 64, 2, 2, 1, 128
# A large initializer range so that p_yes moves clearly with the input: with the usual 0.02 every
# answer is 0.5 +- 1e-3 and equivalence tests would pass vacuously.
INIT_RANGE = 0.2
CLIP_MEAN = [0.48145466, 0.4578275, 0.40821073]
CLIP_STD = [0.26862954, 0.26130258, 0.27577711]
HALF = [0.5, 0.5, 0.5]


@dataclass(frozen=True)
class Sizes:
    """Widths and depths of a preset; the vision geometry (pixels, patches, merging) is per family."""
    hidden: int
    layers: int
    heads: int
    kv_heads: int
    intermediate: int
    vision_hidden: int
    vision_layers: int
    vision_heads: int
    vision_intermediate: int
    init_range: float


# `bench`: a small but non-toy language model (256 wide, 4 layers) and a narrow 2-layer vision tower,
# so that the real checkpoints' visual token counts (hundreds per frame) run on 2 CPU cores.
SIZES: dict[str, Sizes] = {
    "tiny": Sizes(HIDDEN, LAYERS, HEADS, KV_HEADS, INTERMEDIATE, HIDDEN, 2, HEADS, INTERMEDIATE, INIT_RANGE),
    "bench": Sizes(256, 4, 4, 2, 768, 192, 2, 3, 768, 0.02),
}


def qwen2_text_config(tokenizer: Qwen2Tokenizer, s: Sizes) -> dict:
    """The Qwen2 language model that InternVL and LLaVA-OneVision checkpoints carry, at sizes `s`."""
    return dict(model_type="qwen2", vocab_size=vocab_size(tokenizer), hidden_size=s.hidden,
                intermediate_size=s.intermediate, num_hidden_layers=s.layers, num_attention_heads=s.heads,
                num_key_value_heads=s.kv_heads, max_position_embeddings=32768,
                rope_parameters={"rope_type": "default", "rope_theta": 1e6}, initializer_range=s.init_range,
                pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id)


def vocab_size(tokenizer: Qwen2Tokenizer) -> int:
    """The tokenizer's size rounded up to a multiple of 64, as real checkpoints pad it."""
    return -(-len(tokenizer) // 64) * 64


def token_ids(tokenizer: Qwen2Tokenizer, **names: str) -> dict[str, int]:
    """{config field: id} for special tokens, refusing any that the tokenizer would split."""
    ids = {field: tokenizer.convert_tokens_to_ids(token) for field, token in names.items()}
    missing = [names[f] for f, i in ids.items() if i is None or i == tokenizer.unk_token_id]
    if missing:
        raise ValueError(f"tokenizer lacks special tokens {missing}")
    return ids


def save_checkpoint(out: Path, config: PretrainedConfig, tokenizer: Qwen2Tokenizer, seed: int,
                    preprocessor_config: dict, processor_config: dict | None = None,
                    after_init: Callable[[PreTrainedModel], None] | None = None) -> Path:
    """Build a random model from `config` (deterministic given `seed`) and save a full checkpoint."""
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    model = AutoModelForImageTextToText.from_config(config, dtype=torch.float32).eval()
    if after_init is not None:
        with torch.no_grad():
            after_init(model)
    model.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
    (out / "preprocessor_config.json").write_text(json.dumps(preprocessor_config, indent=2))
    if processor_config is not None:
        (out / "processor_config.json").write_text(json.dumps(processor_config, indent=2))
    return out
