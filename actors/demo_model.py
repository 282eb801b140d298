"""Random-weight Qwen2-VL family checkpoints for tests, the demo and benchmarks.

No model hub is reachable from CI or the demo, so `build_demo_model` writes a complete
checkpoint folder from transformers' own classes: config + safetensors weights, a
byte-level BPE tokenizer with the Qwen2-VL special tokens and chat template, and a
preprocessor_config.json. It loads back with `AutoModelForImageTextToText` and
`AutoTokenizer` like a real one. The answers are meaningless; the shapes, token layout
and code paths are the real ones.

The tokenizer is built, not trained: the 256 byte symbols plus merge chains that make a
fixed list of common English words single tokens (so questions cost about as many tokens
as with Qwen's tokenizer, which matters for prefix-sharing benchmarks). Each word's chain
is appended after all earlier merges, so no later chain can split an earlier word.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch
from transformers import (
    Qwen2_5_VLConfig,
    Qwen2_5_VLForConditionalGeneration,
    Qwen2VLConfig,
    Qwen2VLForConditionalGeneration,
)
from transformers.models.qwen2.tokenization_qwen2 import Qwen2Tokenizer

from actors.tiny_models import FAMILY_MODULES, build_family
from actors.tiny_models.tokenizer import _ANSWER_WORDS, _COMMON_WORDS, build_bpe_tokenizer  # noqa: F401

# The chat template shipped with Qwen/Qwen2-VL-*-Instruct (chat_template.json), verbatim.
QWEN2_VL_CHAT_TEMPLATE = (
    "{% set image_count = namespace(value=0) %}{% set video_count = namespace(value=0) %}"
    "{% for message in messages %}{% if loop.first and message['role'] != 'system' %}"
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n{% endif %}"
    "<|im_start|>{{ message['role'] }}\n{% if message['content'] is string %}"
    "{{ message['content'] }}<|im_end|>\n{% else %}{% for content in message['content'] %}"
    "{% if content['type'] == 'image' or 'image' in content or 'image_url' in content %}"
    "{% set image_count.value = image_count.value + 1 %}"
    "{% if add_vision_id %}Picture {{ image_count.value }}: {% endif %}"
    "<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif content['type'] == 'video' or 'video' in content %}"
    "{% set video_count.value = video_count.value + 1 %}"
    "{% if add_vision_id %}Video {{ video_count.value }}: {% endif %}"
    "<|vision_start|><|video_pad|><|vision_end|>"
    "{% elif 'text' in content %}{{ content['text'] }}{% endif %}{% endfor %}<|im_end|>\n"
    "{% endif %}{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

SPECIAL_TOKENS = (
    "<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>",
    "<|vision_pad|>", "<|image_pad|>", "<|video_pad|>",
)

@dataclass(frozen=True)
class _Preset:
    text: dict
    vision: dict
    vocab_size: int | None  # None = the tokenizer's size rounded up to a multiple of 64
    initializer_range: float
    dtype: torch.dtype


# `tiny` uses a large initializer range so that p_yes moves clearly with the input: with the
# usual 0.02 every answer is 0.5 +- 1e-3 and equivalence tests would pass vacuously.
PRESETS: dict[str, _Preset] = {
    "tiny": _Preset(
        text=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                  num_key_value_heads=1, mrope_section=[2, 3, 3]),
        vision=dict(depth=2, embed_dim=32, num_heads=2, mlp_ratio=2, window_size=56),
        vocab_size=None, initializer_range=0.2, dtype=torch.float32,
    ),
    # `tiny` with 32-wide attention heads: vLLM's CPU attention takes head sizes 32, 64, 80 and up, not 16.
    "tiny_hd32": _Preset(
        text=dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=2,
                  num_key_value_heads=1, mrope_section=[4, 6, 6]),
        vision=dict(depth=2, embed_dim=32, num_heads=2, mlp_ratio=2, window_size=56),
        vocab_size=None, initializer_range=0.2, dtype=torch.float32,
    ),
    "bench": _Preset(
        text=dict(hidden_size=512, intermediate_size=1536, num_hidden_layers=6, num_attention_heads=8,
                  num_key_value_heads=2, mrope_section=[8, 12, 12]),
        vision=dict(depth=6, embed_dim=384, num_heads=6, mlp_ratio=4, window_size=112),
        vocab_size=None, initializer_range=0.02, dtype=torch.float32,
    ),
    # Qwen/Qwen2-VL-2B-Instruct's shapes (config.json of that repository).
    "qwen2_vl_2b": _Preset(
        text=dict(hidden_size=1536, intermediate_size=8960, num_hidden_layers=28, num_attention_heads=12,
                  num_key_value_heads=2, mrope_section=[16, 24, 24]),
        vision=dict(depth=32, embed_dim=1280, num_heads=16, mlp_ratio=4, window_size=112),
        vocab_size=151936, initializer_range=0.02, dtype=torch.bfloat16,
    ),
}
QWEN2_FAMILIES = ("qwen2_vl", "qwen2_5_vl")
FAMILIES = QWEN2_FAMILIES + tuple(FAMILY_MODULES)

PATCH_SIZE, TEMPORAL_PATCH_SIZE, MERGE_SIZE = 14, 2, 2
# CLIP's normalisation, as in Qwen2-VL's preprocessor_config.json.
IMAGE_MEAN = [0.48145466, 0.4578275, 0.40821073]
IMAGE_STD = [0.26862954, 0.26130258, 0.27577711]


def build_tokenizer() -> Qwen2Tokenizer:
    """Byte-level BPE with Qwen2's pre-tokenizer, the Qwen2-VL special tokens and chat template."""
    return build_bpe_tokenizer(SPECIAL_TOKENS, QWEN2_VL_CHAT_TEMPLATE, eos="<|im_end|>", pad="<|endoftext|>")


def _model_config(preset: _Preset, family: str, tokenizer: Qwen2Tokenizer):
    t, v = preset.text, preset.vision
    ids = {name: tokenizer.convert_tokens_to_ids(tok) for name, tok in (
        ("image_token_id", "<|image_pad|>"), ("video_token_id", "<|video_pad|>"),
        ("vision_start_token_id", "<|vision_start|>"), ("vision_end_token_id", "<|vision_end|>"))}
    vocab_size = preset.vocab_size or -(-len(tokenizer) // 64) * 64
    text_config = dict(
        vocab_size=vocab_size, hidden_size=t["hidden_size"], intermediate_size=t["intermediate_size"],
        num_hidden_layers=t["num_hidden_layers"], num_attention_heads=t["num_attention_heads"],
        num_key_value_heads=t["num_key_value_heads"], max_position_embeddings=32768,
        rope_parameters={"rope_type": "default", "rope_theta": 1e6, "mrope_section": t["mrope_section"]},
        initializer_range=preset.initializer_range,
        bos_token_id=tokenizer.convert_tokens_to_ids("<|endoftext|>"),
        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
    )
    common_vision = dict(depth=v["depth"], num_heads=v["num_heads"], in_channels=3, patch_size=PATCH_SIZE,
                         spatial_merge_size=MERGE_SIZE, temporal_patch_size=TEMPORAL_PATCH_SIZE,
                         initializer_range=preset.initializer_range)
    if family == "qwen2_vl":
        vision_config = dict(common_vision, embed_dim=v["embed_dim"], mlp_ratio=v["mlp_ratio"],
                             hidden_size=t["hidden_size"])
        config_class = Qwen2VLConfig
    else:
        # Qwen2.5-VL names the vision width hidden_size and the merger's output out_hidden_size;
        # window attention everywhere but the last block keeps both attention kinds exercised.
        vision_config = dict(common_vision, hidden_size=v["embed_dim"], out_hidden_size=t["hidden_size"],
                             intermediate_size=v["embed_dim"] * v["mlp_ratio"], hidden_act="silu",
                             window_size=v["window_size"], tokens_per_second=2,
                             fullatt_block_indexes=[v["depth"] - 1])
        config_class = Qwen2_5_VLConfig
    return config_class(text_config=text_config, vision_config=vision_config,
                        tie_word_embeddings=True, **ids)


def _preprocessor_config(family: str) -> dict:
    return {
        "image_processor_type": "Qwen2VLImageProcessor",
        "processor_class": "Qwen2_5_VLProcessor" if family == "qwen2_5_vl" else "Qwen2VLProcessor",
        "do_resize": True, "do_rescale": True, "do_normalize": True, "do_convert_rgb": True,
        "resample": 3, "rescale_factor": 1 / 255,
        "image_mean": IMAGE_MEAN, "image_std": IMAGE_STD,
        "min_pixels": 56 * 56, "max_pixels": 28 * 28 * 1280,
        "size": {"shortest_edge": 56 * 56, "longest_edge": 28 * 28 * 1280},
        "patch_size": PATCH_SIZE, "temporal_patch_size": TEMPORAL_PATCH_SIZE, "merge_size": MERGE_SIZE,
    }


def build_demo_model(out_dir: str | Path, preset: str = "tiny", family: str = "qwen2_vl", seed: int = 0) -> Path:
    """Write a random-weight checkpoint of `family` with `preset`'s shapes to `out_dir`; return it.

    Deterministic given `seed`. `qwen2_vl_2b` allocates ~2.2B parameters: build it on the GPU
    machine, never in tests.
    """
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; choose one of {sorted(PRESETS)}")
    if family not in FAMILIES:
        raise ValueError(f"unknown family {family!r}; choose one of {list(FAMILIES)}")
    out = Path(out_dir)
    if family not in QWEN2_FAMILIES:
        return build_family(out, family, seed, preset)
    spec = PRESETS[preset]
    out.mkdir(parents=True, exist_ok=True)

    tokenizer = build_tokenizer()
    config = _model_config(spec, family, tokenizer)
    model_class = Qwen2VLForConditionalGeneration if family == "qwen2_vl" else Qwen2_5_VLForConditionalGeneration
    torch.manual_seed(seed)
    model = model_class(config).to(spec.dtype).eval()
    model.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
    (out / "preprocessor_config.json").write_text(json.dumps(_preprocessor_config(family), indent=2))
    return out
