"""Tiny LLaVA-OneVision checkpoint (`llava_onevision`, the llava-hf layout).

An image becomes a base tile plus AnyRes tiles (unpadded, one newline embedding per row); a video
becomes T frames of 2x2-pooled tile features plus one newline: T * pooled^2 + 1 `<video>` tokens.
Positions are 1D; the language model is Qwen2 and the vision tower SigLIP.
"""
from __future__ import annotations

import json
from pathlib import Path

from transformers import LlavaOnevisionConfig

from actors.tiny_models.common import (
    HALF,
    SIZES,
    Sizes,
    qwen2_text_config,
    save_checkpoint,
    token_ids,
)
from actors.tiny_models.tokenizer import build_bpe_tokenizer

# llava-hf/llava-onevision-qwen2-*-ov-hf's chat template (note the space after the role).
LLAVA_ONEVISION_CHAT_TEMPLATE = (
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + ' '}}"
    "{# Render all images first #}{% for content in message['content'] | selectattr('type', 'equalto', 'image') %}"
    "{{ '<image>' }}{% endfor %}"
    "{# Render all video then #}{% for content in message['content'] | selectattr('type', 'equalto', 'video') %}"
    "{{ '<video>' }}{% endfor %}"
    "{# Render all text next #}{% if message['role'] != 'assistant' %}"
    "{% for content in message['content'] | selectattr('type', 'equalto', 'text') %}{{ '\\n' + content['text'] }}"
    "{% endfor %}{% else %}{% for content in message['content'] | selectattr('type', 'equalto', 'text') %}"
    "{% generation %}{{ '\\n' + content['text'] }}{% endgeneration %}{% endfor %}{% endif %}"
    "{{'<|im_end|>'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)
SPECIAL_TOKENS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>", "<image>", "<video>")
PATCH = 14
# Tile side: toy in tiny; 384 in bench, as llava-hf/llava-onevision-qwen2-0.5b-ov-hf: 27^2 = 729 tokens
# per tile, and a video frame 2x2-pooled to 14^2 = 196.
TILES = {"tiny": 56, "bench": 384}


def grid_pinpoints(tile: int) -> list[list[int]]:
    """The checkpoint's 6x6 grid of tile multiples (384 .. 2304), at the preset's tile size."""
    return [[tile * i, tile * j] for i in range(1, 7) for j in range(1, 7)]


def _config(tokenizer, s: Sizes, tile: int) -> LlavaOnevisionConfig:
    text = qwen2_text_config(tokenizer, s)
    vision = dict(model_type="siglip_vision_model", hidden_size=s.vision_hidden, intermediate_size=s.vision_intermediate,
                  num_hidden_layers=s.vision_layers, num_attention_heads=s.vision_heads, image_size=tile,
                  patch_size=PATCH)
    ids = token_ids(tokenizer, image_token_index="<image>", video_token_index="<video>")
    return LlavaOnevisionConfig(text_config=text, vision_config=vision, vision_feature_select_strategy="full",
                                vision_feature_layer=-1, image_grid_pinpoints=grid_pinpoints(tile),
                                vision_aspect_ratio="anyres_max_9", tie_word_embeddings=True,
                                initializer_range=s.init_range, **ids)


def _pixels(kind: str, tile: int) -> dict:
    return {
        f"{kind}_processor_type": ("LlavaOnevisionImageProcessor" if kind == "image"
                                   else "LlavaOnevisionVideoProcessor"),
        "processor_class": "LlavaOnevisionProcessor", "do_resize": True, "do_rescale": True,
        "do_normalize": True, "do_convert_rgb": True, "resample": 3, "rescale_factor": 1 / 255,
        "image_mean": HALF, "image_std": HALF, "size": {"height": tile, "width": tile},
    }


def build(out: Path, family: str, seed: int, preset: str = "tiny") -> Path:
    tile = TILES[preset]
    tokenizer = build_bpe_tokenizer(SPECIAL_TOKENS, LLAVA_ONEVISION_CHAT_TEMPLATE, eos="<|im_end|>",
                                    pad="<|endoftext|>", named_tokens={"image_token": "<image>", "video_token": "<video>"})
    image = dict(_pixels("image", tile), do_pad=True, image_grid_pinpoints=grid_pinpoints(tile))
    processor = {"processor_class": "LlavaOnevisionProcessor", "num_image_tokens": (tile // PATCH) ** 2,
                 "vision_feature_select_strategy": "full", "vision_aspect_ratio": "anyres_max_9"}
    save_checkpoint(out, _config(tokenizer, SIZES[preset], tile), tokenizer, seed, image, processor_config=processor)
    (out / "video_preprocessor_config.json").write_text(json.dumps(_pixels("video", tile), indent=2))
    return out
