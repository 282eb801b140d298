"""Tiny InternVL checkpoint (`internvl`, the transformers-native layout of OpenGVLab/InternVL3-*-hf).

An image is cut into square tiles (plus a thumbnail) that each become `image_seq_length`
`<IMG_CONTEXT>` tokens between `<img>` and `</img>`; a video is one tile per frame, each on a
`FrameK: ` line. Positions are 1D; the language model is Qwen2.
"""
from __future__ import annotations

import json
from pathlib import Path

from transformers import InternVLConfig

from actors.tiny_models.common import (
    SIZES,
    Sizes,
    qwen2_text_config,
    save_checkpoint,
    token_ids,
)
from actors.tiny_models.tokenizer import build_bpe_tokenizer

# The template transformers' InternVL conversion script writes into the -hf checkpoints.
INTERNVL_CHAT_TEMPLATE = (
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n'}}"
    "{% if message['content'] is string %}{{ message['content'] }}{% else %}"
    "{% for content in message['content'] %}{% if content['type'] == 'image' %}{{ '<IMG_CONTEXT>\\n' }}"
    "{% elif content['type'] == 'video' %}{{ '<video>\\n' }}"
    "{% elif content['type'] == 'text' %}{{ content['text'] }}{% endif %}{% endfor %}{% endif %}"
    "{{'<|im_end|>\\n'}}{% endfor %}"
    "{% if add_generation_prompt %}{{'<|im_start|>assistant\\n' }}{% endif %}"
)
NAMED_TOKENS = {"start_image_token": "<img>", "end_image_token": "</img>",
                "context_image_token": "<IMG_CONTEXT>", "video_token": "<video>"}
SPECIAL_TOKENS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>", *NAMED_TOKENS.values())
PATCH = 14
# Tile side: toy in tiny; 448 in bench, as OpenGVLab/InternVL3-1B-hf. (tile / 14)^2 patches per tile,
# pixel-shuffled by the 0.5 downsample ratio: 4 tokens per tile in tiny, 256 in bench (the real count).
TILES = {"tiny": 56, "bench": 448}
IMAGENET_MEAN, IMAGENET_STD = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]


def image_seq_length(tile: int) -> int:
    return (tile // PATCH) ** 2 // 4


def _config(tokenizer, s: Sizes, tile: int) -> InternVLConfig:
    text = qwen2_text_config(tokenizer, s)
    vision = dict(hidden_size=s.vision_hidden, num_hidden_layers=s.vision_layers, num_attention_heads=s.vision_heads,
                  intermediate_size=s.vision_intermediate, image_size=[tile, tile], patch_size=[PATCH, PATCH],
                  initializer_range=s.init_range)
    ids = token_ids(tokenizer, image_token_id="<IMG_CONTEXT>")
    return InternVLConfig(text_config=text, vision_config=vision, image_seq_length=image_seq_length(tile),
                          downsample_ratio=0.5, tie_word_embeddings=True, **ids)


def _pixels(kind: str, tile: int) -> dict:
    return {
        f"{kind}_processor_type": "GotOcr2ImageProcessor" if kind == "image" else "InternVLVideoProcessor",
        "processor_class": "InternVLProcessor", "do_resize": True, "do_rescale": True, "do_normalize": True,
        "do_convert_rgb": True, "resample": 3, "rescale_factor": 1 / 255,
        "image_mean": IMAGENET_MEAN, "image_std": IMAGENET_STD, "size": {"height": tile, "width": tile},
    }


def build(out: Path, family: str, seed: int, preset: str = "tiny") -> Path:
    tile = TILES[preset]
    tokenizer = build_bpe_tokenizer(SPECIAL_TOKENS, INTERNVL_CHAT_TEMPLATE, eos="<|im_end|>", pad="<|endoftext|>",
                                    named_tokens=NAMED_TOKENS)
    image = dict(_pixels("image", tile), crop_to_patches=False, min_patches=1, max_patches=12)
    processor = {"processor_class": "InternVLProcessor", "image_seq_length": image_seq_length(tile)}
    save_checkpoint(out, _config(tokenizer, SIZES[preset], tile), tokenizer, seed, image, processor_config=processor)
    (out / "video_preprocessor_config.json").write_text(json.dumps(_pixels("video", tile), indent=2))
    return out
