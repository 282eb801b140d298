"""Tiny GLM-4.1V checkpoint (`glm4v`).

GLM-4.1V's layout differs from Qwen's: the prompt starts `[gMASK]<sop>`, images sit between
`<|begin_of_image|>`/`<|end_of_image|>`, and a video becomes one image block per temporal patch
followed by its integer second, all inside `<|begin_of_video|>`/`<|end_of_video|>` and all using
the same `<|image|>` token (only token types tell video frames from images). M-RoPE rotates half
of each head's dimensions.
"""
from __future__ import annotations

import json
from pathlib import Path

from transformers import Glm4vConfig

from actors.tiny_models.common import (
    CLIP_MEAN,
    CLIP_STD,
    SIZES,
    Sizes,
    save_checkpoint,
    token_ids,
    vocab_size,
)
from actors.tiny_models.tokenizer import build_bpe_tokenizer

# zai-org/GLM-4.1V-9B-Thinking's chat_template.jinja.
GLM4V_CHAT_TEMPLATE = """[gMASK]<sop>
{%- for msg in messages %}
    {%- if msg.role == 'system' %}
<|system|>
{{ msg.content }}
    {%- elif msg.role == 'user' %}
<|user|>{{ '\\n' }}
        {%- if msg.content is string %}
{{ msg.content }}
        {%- else %}
            {%- for item in msg.content %}
                {%- if item.type == 'video' or 'video' in item %}
<|begin_of_video|><|video|><|end_of_video|>
                {%- elif item.type == 'image' or 'image' in item %}
<|begin_of_image|><|image|><|end_of_image|>
                {%- elif item.type == 'text' %}
{{ item.text }}
                {%- endif %}
            {%- endfor %}
        {%- endif %}
    {%- elif msg.role == 'assistant' %}
        {%- if msg.metadata %}
<|assistant|>{{ msg.metadata }}
{{ msg.content }}
        {%- else %}
<|assistant|>
{{ msg.content }}
        {%- endif %}
    {%- endif %}
{%- endfor %}
{% if add_generation_prompt %}<|assistant|>
{% endif %}"""
SPECIAL_TOKENS = (
    "<|endoftext|>", "[MASK]", "[gMASK]", "[sMASK]", "<sop>", "<eop>", "<|system|>", "<|user|>",
    "<|assistant|>", "<|observation|>", "<|begin_of_image|>", "<|end_of_image|>", "<|begin_of_video|>",
    "<|end_of_video|>", "<|image|>", "<|video|>", "<think>", "</think>",
)
# zai-org/GLM-4.1V-9B-Thinking's patch 14, merge 2 and temporal patch 2 in both presets, so a frame
# costs its real token count, (side / 28)^2; `bench` also has its 336-pixel position grid.
PATCH, MERGE, TEMPORAL = 14, 2, 2
POSITION_GRID = {"tiny": 112, "bench": 336}
# half the head dims rotate (partial_rotary_factor 0.5); the sections split those frequency pairs
MROPE_SECTION = {"tiny": [2, 3, 3], "bench": [4, 6, 6]}


def _config(tokenizer, s: Sizes, preset: str) -> Glm4vConfig:
    head_dim = s.hidden // s.heads
    rope = {"rope_type": "default", "rope_theta": 10000.0, "partial_rotary_factor": 0.5,
            "mrope_section": MROPE_SECTION[preset]}
    text = dict(vocab_size=vocab_size(tokenizer), hidden_size=s.hidden, intermediate_size=s.intermediate,
                num_hidden_layers=s.layers, num_attention_heads=s.heads, num_key_value_heads=s.kv_heads,
                head_dim=head_dim, max_position_embeddings=32768, rope_parameters=rope,
                initializer_range=s.init_range, pad_token_id=tokenizer.pad_token_id,
                eos_token_id=[tokenizer.convert_tokens_to_ids(t) for t in ("<|endoftext|>", "<|user|>")])
    vision = dict(depth=s.vision_layers, hidden_size=s.vision_hidden, intermediate_size=s.vision_intermediate,
                  num_heads=s.vision_heads, image_size=POSITION_GRID[preset], patch_size=PATCH,
                  spatial_merge_size=MERGE, temporal_patch_size=TEMPORAL, out_hidden_size=s.hidden,
                  initializer_range=s.init_range)
    ids = token_ids(tokenizer, image_token_id="<|image|>", video_token_id="<|video|>",
                    image_start_token_id="<|begin_of_image|>", image_end_token_id="<|end_of_image|>",
                    video_start_token_id="<|begin_of_video|>", video_end_token_id="<|end_of_video|>")
    return Glm4vConfig(text_config=text, vision_config=vision, tie_word_embeddings=True, **ids)


def _processor_config(kind: str, size: dict) -> dict:
    return {
        f"{kind}_processor_type": "Glm4vImageProcessor" if kind == "image" else "Glm4vVideoProcessor",
        "processor_class": "Glm4vProcessor",
        "do_resize": True, "do_rescale": True, "do_normalize": True, "do_convert_rgb": True,
        "resample": 3, "rescale_factor": 1 / 255, "image_mean": CLIP_MEAN, "image_std": CLIP_STD, "size": size,
        "patch_size": PATCH, "temporal_patch_size": TEMPORAL, "merge_size": MERGE,
    }


def build(out: Path, family: str, seed: int, preset: str = "tiny") -> Path:
    tokenizer = build_bpe_tokenizer(SPECIAL_TOKENS, GLM4V_CHAT_TEMPLATE, eos="<|endoftext|>", pad="<|endoftext|>")
    # pixel budgets scaled down from the checkpoint's (images 112*112 .. 28*28*15000; videos over all frames)
    save_checkpoint(out, _config(tokenizer, SIZES[preset], preset), tokenizer, seed,
                    _processor_config("image", {"shortest_edge": 56 * 56, "longest_edge": 28 * 28 * 1024}))
    video = dict(_processor_config("video", {"shortest_edge": 28 * 28 * 2, "longest_edge": 28 * 28 * 4096}),
                 fps=2, do_sample_frames=True)
    (out / "video_preprocessor_config.json").write_text(json.dumps(video, indent=2))
    return out
