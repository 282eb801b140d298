"""Tiny SmolVLM (`smolvlm`) and Idefics3 (`idefics3`) checkpoints.

Both split an image into a grid of square views (`<row_i_col_j>`) plus a global view, each
`image_seq_len` `<image>` tokens between `<fake_token_around_image>` markers, with a Llama language
model and 1D positions. SmolVLM also takes video: an intro line with the frame count in words,
then `Frame from MM:SS:` and one global view per frame. The template ends in `Assistant:` with no
space, so the answer token carries a leading space (" Yes").
"""
from __future__ import annotations

import json
from pathlib import Path

from transformers import Idefics3Config, SmolVLMConfig

from actors.tiny_models.common import (
    HALF,
    SIZES,
    Sizes,
    save_checkpoint,
    token_ids,
    vocab_size,
)
from actors.tiny_models.tokenizer import build_bpe_tokenizer

# HuggingFaceTB/SmolVLM2-*-Video-Instruct's template (transformers keeps it as SmolVLM's default).
SMOLVLM_CHAT_TEMPLATE = (
    "<|im_start|>{% for message in messages %}{{message['role'] | capitalize}}"
    "{% if message['content'] is string %}{{': ' + message['content']}}{% else %}"
    "{% if message['content'][0]['type'] == 'image' %}{{':'}}{% else %}{{': '}}{% endif %}"
    "{% for line in message['content'] %}{% if line['type'] == 'text' %}{{line['text']}}"
    "{% elif line['type'] == 'image' %}{{ '<image>' }}{% elif line['type'] == 'video' %}{{ '<video>' }}"
    "{% endif %}{% endfor %}{% endif %}<end_of_utterance>\n{% endfor %}"
    "{% if add_generation_prompt %}{{ 'Assistant:' }}{% endif %}"
)
# HuggingFaceM4/Idefics3-8B-Llama3's template.
IDEFICS3_CHAT_TEMPLATE = (
    "<|begin_of_text|>{% for message in messages %}{{message['role'].capitalize()}}"
    "{% if message['content'][0]['type'] == 'image' %}{{':'}}{% else %}{{': '}}{% endif %}"
    "{% for line in message['content'] %}{% if line['type'] == 'text' %}{{line['text']}}"
    "{% elif line['type'] == 'image' %}{{ '<image>' }}{% endif %}{% endfor %}<end_of_utterance>\n{% endfor %}"
    "{% if add_generation_prompt %}{{ 'Assistant:' }}{% endif %}"
)
GRID_TOKENS = tuple(f"<row_{i}_col_{j}>" for i in range(1, 7) for j in range(1, 7))
MEDIA_TOKENS = ("<fake_token_around_image>", "<image>", "<global-img>", "<end_of_utterance>")
# (tile, patch, pixel-shuffle scale) per preset and family: toy in tiny (4 tokens per view); in bench
# HuggingFaceTB/SmolVLM2-256M-Video-Instruct's 512 / 16 / 4 (64 tokens per view) and
# HuggingFaceM4/Idefics3-8B-Llama3's 364 / 14 / 2 (169 tokens per view).
GEOMETRY = {("tiny", "smolvlm"): (64, 16, 2), ("tiny", "idefics3"): (64, 16, 2),
            ("bench", "smolvlm"): (512, 16, 4), ("bench", "idefics3"): (364, 14, 2)}


def _config(family: str, tokenizer, s: Sizes, tile: int, patch: int, scale: int):
    text = dict(model_type="llama", vocab_size=vocab_size(tokenizer), hidden_size=s.hidden,
                intermediate_size=s.intermediate, num_hidden_layers=s.layers, num_attention_heads=s.heads,
                num_key_value_heads=s.kv_heads, head_dim=s.hidden // s.heads, max_position_embeddings=8192,
                rope_parameters={"rope_type": "default", "rope_theta": 1e5}, initializer_range=s.init_range,
                pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.bos_token_id,
                eos_token_id=tokenizer.eos_token_id)
    vision = dict(hidden_size=s.vision_hidden, intermediate_size=s.vision_intermediate,
                  num_hidden_layers=s.vision_layers, num_attention_heads=s.vision_heads, image_size=tile,
                  patch_size=patch, initializer_range=s.init_range)
    config_class = SmolVLMConfig if family == "smolvlm" else Idefics3Config
    return config_class(text_config=text, vision_config=vision, scale_factor=scale, tie_word_embeddings=True,
                        initializer_range=s.init_range, **token_ids(tokenizer, image_token_id="<image>"))


def _pixels(family: str, kind: str, tile: int) -> dict:
    prefix = "SmolVLM" if family == "smolvlm" else "Idefics3"
    return {
        f"{kind}_processor_type": f"{prefix}{'Image' if kind == 'image' else 'Video'}Processor",
        "processor_class": f"{prefix}Processor", "do_resize": True, "do_rescale": True, "do_normalize": True,
        "do_convert_rgb": True, "do_pad": True, "resample": 1, "rescale_factor": 1 / 255,
        "image_mean": HALF, "image_std": HALF,
        "size": {"longest_edge": 4 * tile}, "max_image_size": {"longest_edge": tile},
    }


def build(out: Path, family: str, seed: int, preset: str = "tiny") -> Path:
    tile, patch, scale = GEOMETRY[preset, family]
    if family == "smolvlm":
        special = ("<|im_start|>", "<|im_end|>", "<|endoftext|>", "<video>", *MEDIA_TOKENS, *GRID_TOKENS)
        tokenizer = build_bpe_tokenizer(special, SMOLVLM_CHAT_TEMPLATE, eos="<end_of_utterance>", pad="<|im_end|>",
                                        bos="<|im_start|>")
    else:
        special = ("<|begin_of_text|>", "<|end_of_text|>", *MEDIA_TOKENS, *GRID_TOKENS)
        tokenizer = build_bpe_tokenizer(special, IDEFICS3_CHAT_TEMPLATE, eos="<end_of_utterance>",
                                        pad="<|end_of_text|>", bos="<|begin_of_text|>")
    image = dict(_pixels(family, "image", tile), do_image_splitting=True)
    processor = {"processor_class": image["processor_class"], "image_seq_len": (tile // patch) ** 2 // scale**2}
    save_checkpoint(out, _config(family, tokenizer, SIZES[preset], tile, patch, scale), tokenizer, seed, image,
                    processor_config=processor)
    if family == "smolvlm":
        video = dict(_pixels(family, "video", tile), fps=1, num_frames=64, do_sample_frames=False)
        (out / "video_preprocessor_config.json").write_text(json.dumps(video, indent=2))
    return out
