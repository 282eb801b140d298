"""Tiny Qwen3-VL, Qwen3-VL-MoE and Qwen3.5 checkpoints.

Qwen3-VL differs from Qwen2.5-VL where it matters for scoring: 16-pixel patches, interleaved
M-RoPE, deepstack features added to the first language layers, and videos laid out as one
`<t seconds>` timestamp plus one vision block per temporal patch. Qwen3.5 adds layers of linear
attention (Gated DeltaNet) between the full-attention ones, and its template has the real one's
thinking switch.
"""
from __future__ import annotations

import json
from pathlib import Path

from transformers import Qwen3_5Config, Qwen3VLConfig, Qwen3VLMoeConfig

from actors.tiny_models.common import (
    HALF,
    SIZES,
    Sizes,
    save_checkpoint,
    token_ids,
    vocab_size,
)
from actors.tiny_models.tokenizer import build_bpe_tokenizer

# Modelled on Qwen/Qwen3-VL-*-Instruct's chat_template.json (tool calls left out): no default
# system turn, ChatML turns, each image or video as <|vision_start|><|x_pad|><|vision_end|>.
QWEN3_VL_CHAT_TEMPLATE = (
    "{%- if messages[0].role == 'system' -%}{{- '<|im_start|>system\\n' -}}"
    "{%- if messages[0].content is string -%}{{- messages[0].content -}}{%- else -%}"
    "{%- for content in messages[0].content -%}{%- if 'text' in content -%}{{- content.text -}}{%- endif -%}"
    "{%- endfor -%}{%- endif -%}{{- '<|im_end|>\\n' -}}{%- endif -%}"
    "{%- set image_count = namespace(value=0) -%}{%- set video_count = namespace(value=0) -%}"
    "{%- for message in messages -%}{%- if message.role == 'user' or message.role == 'assistant' -%}"
    "{{- '<|im_start|>' + message.role + '\\n' -}}"
    "{%- if message.content is string -%}{{- message.content -}}{%- else -%}"
    "{%- for content in message.content -%}"
    "{%- if content.type == 'image' or 'image' in content or 'image_url' in content -%}"
    "{%- set image_count.value = image_count.value + 1 -%}"
    "{%- if add_vision_id -%}{{- 'Picture ' ~ image_count.value ~ ': ' -}}{%- endif -%}"
    "{{- '<|vision_start|><|image_pad|><|vision_end|>' -}}"
    "{%- elif content.type == 'video' or 'video' in content -%}"
    "{%- set video_count.value = video_count.value + 1 -%}"
    "{%- if add_vision_id -%}{{- 'Video ' ~ video_count.value ~ ': ' -}}{%- endif -%}"
    "{{- '<|vision_start|><|video_pad|><|vision_end|>' -}}"
    "{%- elif 'text' in content -%}{{- content.text -}}{%- endif -%}"
    "{%- endfor -%}{%- endif -%}{{- '<|im_end|>\\n' -}}{%- endif -%}{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{- '<|im_start|>assistant\\n' -}}{%- endif -%}"
)
# Modelled on Qwen/Qwen3.5-*'s template (tool calls and earlier turns' reasoning left out): the same
# ChatML turns and vision markers, each text `| trim`med, and the thinking switch: the generation
# prompt ends `<|im_start|>assistant\n<think>\n` (the model reasons first) unless the rendering gets
# enable_thinking=False, which closes an empty think block, `<think>\n\n</think>\n\n`.
QWEN3_5_CHAT_TEMPLATE = (
    "{%- if messages[0].role == 'system' -%}{{- '<|im_start|>system\\n' -}}"
    "{%- if messages[0].content is string -%}{{- messages[0].content | trim -}}{%- else -%}"
    "{%- for content in messages[0].content -%}{%- if 'text' in content -%}{{- content.text | trim -}}{%- endif -%}"
    "{%- endfor -%}{%- endif -%}{{- '<|im_end|>\\n' -}}{%- endif -%}"
    "{%- for message in messages -%}{%- if message.role == 'user' or message.role == 'assistant' -%}"
    "{{- '<|im_start|>' + message.role + '\\n' -}}"
    "{%- if message.content is string -%}{{- message.content | trim -}}{%- else -%}"
    "{%- for content in message.content -%}"
    "{%- if content.type == 'image' or 'image' in content or 'image_url' in content -%}"
    "{{- '<|vision_start|><|image_pad|><|vision_end|>' -}}"
    "{%- elif content.type == 'video' or 'video' in content -%}"
    "{{- '<|vision_start|><|video_pad|><|vision_end|>' -}}"
    "{%- elif 'text' in content -%}{{- content.text | trim -}}{%- endif -%}"
    "{%- endfor -%}{%- endif -%}{{- '<|im_end|>\\n' -}}{%- endif -%}{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{- '<|im_start|>assistant\\n' -}}"
    "{%- if enable_thinking is defined and enable_thinking is false -%}{{- '<think>\\n\\n</think>\\n\\n' -}}"
    "{%- else -%}{{- '<think>\\n' -}}{%- endif -%}{%- endif -%}"
)
# added tokens of Qwen3.5's tokenizer that are not special (they may appear in decoded output)
QWEN3_5_THINK_TOKENS = ("<think>", "</think>")
SPECIAL_TOKENS = (
    "<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>",
    "<|vision_pad|>", "<|image_pad|>", "<|video_pad|>",
)
PATCH, MERGE, TEMPORAL = 16, 2, 2
FAMILIES = ("qwen3_vl", "qwen3_vl_moe", "qwen3_5")
# Learned position grid: 8x8 in tiny; 48x48 as Qwen/Qwen3-VL-2B-Instruct (whose patch 16, merge 2 and
# temporal patch 2 both presets share, so a frame costs its real token count: (side / 32)^2).
POSITION_EMBEDDINGS = {"tiny": 64, "bench": 2304}
# mrope sections (in frequency pairs) that add up to head_dim / 2
MROPE_SECTION = {"tiny": [6, 5, 5], "bench": [12, 10, 10]}


def _config(family: str, tokenizer, s: Sizes, preset: str):
    head_dim = s.hidden // s.heads
    rope = {"rope_type": "default", "rope_theta": 5e6, "mrope_section": MROPE_SECTION[preset],
            "mrope_interleaved": True}
    text = dict(vocab_size=vocab_size(tokenizer), hidden_size=s.hidden, intermediate_size=s.intermediate,
                num_hidden_layers=s.layers, num_attention_heads=s.heads, num_key_value_heads=s.kv_heads,
                head_dim=head_dim, max_position_embeddings=32768, rope_parameters=rope,
                initializer_range=s.init_range, pad_token_id=tokenizer.pad_token_id,
                eos_token_id=tokenizer.eos_token_id)
    vision = dict(depth=s.vision_layers, hidden_size=s.vision_hidden, intermediate_size=s.vision_intermediate,
                  num_heads=s.vision_heads, patch_size=PATCH, spatial_merge_size=MERGE, temporal_patch_size=TEMPORAL,
                  out_hidden_size=s.hidden, num_position_embeddings=POSITION_EMBEDDINGS[preset],
                  initializer_range=s.init_range)
    ids = token_ids(tokenizer, image_token_id="<|image_pad|>", video_token_id="<|video_pad|>",
                    vision_start_token_id="<|vision_start|>", vision_end_token_id="<|vision_end|>")
    if family == "qwen3_vl":
        return Qwen3VLConfig(text_config=text, vision_config=dict(vision, deepstack_visual_indexes=[0]),
                             tie_word_embeddings=True, **ids)
    if family == "qwen3_vl_moe":
        text.update(num_experts=4, num_experts_per_tok=2, moe_intermediate_size=32, decoder_sparse_step=1)
        return Qwen3VLMoeConfig(text_config=text, vision_config=dict(vision, deepstack_visual_indexes=[0]),
                                tie_word_embeddings=True, **ids)
    # Qwen3.5 mixes linear-attention (Gated DeltaNet) and full-attention layers 3:1. Two layers, full
    # first: with the linear layer first the image moved p_yes by only 1e-3..1e-2 (too weak a control).
    text.update(layer_types=(["full_attention", "linear_attention"] * s.layers)[:s.layers], linear_num_key_heads=2,
                linear_num_value_heads=2, linear_key_head_dim=16, linear_value_head_dim=16,
                linear_conv_kernel_dim=4)
    text["rope_parameters"] = dict(rope, partial_rotary_factor=1.0)
    return Qwen3_5Config(text_config=text, vision_config=vision, tie_word_embeddings=True, **ids)


def preprocessor_config(family: str) -> dict:
    """Qwen3-VL's preprocessor_config.json, with the pixel budget scaled down to tiny inputs."""
    return {
        "image_processor_type": "Qwen2VLImageProcessor",
        "processor_class": "Qwen3VLProcessor",
        "do_resize": True, "do_rescale": True, "do_normalize": True, "do_convert_rgb": True,
        "resample": 3, "rescale_factor": 1 / 255, "image_mean": HALF, "image_std": HALF,
        "size": {"shortest_edge": 64 * 64, "longest_edge": 32 * 32 * 1024},
        "patch_size": PATCH, "temporal_patch_size": TEMPORAL, "merge_size": MERGE,
    }


def video_preprocessor_config(family: str) -> dict:
    """Qwen3-VL's video_preprocessor_config.json, its pixel budget (over all frames) scaled down."""
    return {
        "video_processor_type": "Qwen3VLVideoProcessor", "processor_class": "Qwen3VLProcessor",
        "do_resize": True, "do_rescale": True, "do_normalize": True, "do_convert_rgb": True,
        "resample": 3, "rescale_factor": 1 / 255, "image_mean": HALF, "image_std": HALF,
        "size": {"shortest_edge": 32 * 32 * 2, "longest_edge": 32 * 32 * 4096},
        "patch_size": PATCH, "temporal_patch_size": TEMPORAL, "merge_size": MERGE,
        "fps": 2, "min_frames": 4, "max_frames": 768, "do_sample_frames": True,
    }


def build(out: Path, family: str, seed: int, preset: str = "tiny") -> Path:
    template = QWEN3_5_CHAT_TEMPLATE if family == "qwen3_5" else QWEN3_VL_CHAT_TEMPLATE
    tokenizer = build_bpe_tokenizer(SPECIAL_TOKENS, template, eos="<|im_end|>", pad="<|endoftext|>")
    if family == "qwen3_5":
        tokenizer.add_tokens(list(QWEN3_5_THINK_TOKENS))
    save_checkpoint(out, _config(family, tokenizer, SIZES[preset], preset), tokenizer, seed,
                    preprocessor_config(family))
    (out / "video_preprocessor_config.json").write_text(json.dumps(video_preprocessor_config(family), indent=2))
    return out
