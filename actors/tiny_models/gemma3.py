"""Tiny Gemma 3 checkpoint (`gemma3`, images only).

Gemma 3 attends bidirectionally within an image's tokens (the model needs `token_type_ids` for
that), alternates sliding-window and full-attention layers with different RoPE bases, and wraps
each image as `\\n\\n<start_of_image>` + soft tokens + `<end_of_image>\\n\\n`. `from_config` leaves
the multimodal projector all zeros, so a random model would ignore the image: it is re-drawn here.
"""
from __future__ import annotations

from pathlib import Path

from transformers import Gemma3Config, PreTrainedModel

from actors.tiny_models.common import (
    HALF,
    SIZES,
    Sizes,
    save_checkpoint,
    token_ids,
    vocab_size,
)
from actors.tiny_models.tokenizer import build_bpe_tokenizer

# google/gemma-3-*-it's chat template: BOS written by the template, system text folded into the
# first user turn, assistant turns named "model".
GEMMA3_CHAT_TEMPLATE = (
    "{{ bos_token }}"
    "{%- if messages[0]['role'] == 'system' -%}"
    "{%- if messages[0]['content'] is string -%}{%- set first_user_prefix = messages[0]['content'] + '\\n\\n' -%}"
    "{%- else -%}{%- set first_user_prefix = messages[0]['content'][0]['text'] + '\\n\\n' -%}{%- endif -%}"
    "{%- set loop_messages = messages[1:] -%}"
    "{%- else -%}{%- set first_user_prefix = '' -%}{%- set loop_messages = messages -%}{%- endif -%}"
    "{%- for message in loop_messages -%}"
    "{%- if (message['role'] == 'user') != (loop.index0 % 2 == 0) -%}"
    "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{%- endif -%}"
    "{%- if (message['role'] == 'assistant') -%}{%- set role = 'model' -%}{%- else -%}"
    "{%- set role = message['role'] -%}{%- endif -%}"
    "{{ '<start_of_turn>' + role + '\\n' + (first_user_prefix if loop.first else '') }}"
    "{%- if message['content'] is string -%}{{ message['content'] | trim }}"
    "{%- elif message['content'] is iterable -%}{%- for item in message['content'] -%}"
    "{%- if item['type'] == 'image' -%}{{ '<start_of_image>' }}"
    "{%- elif item['type'] == 'text' -%}{{ item['text'] | trim }}{%- endif -%}{%- endfor -%}"
    "{%- else -%}{{ raise_exception('Invalid content type') }}{%- endif -%}"
    "{{ '<end_of_turn>\\n' }}{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{ '<start_of_turn>model\\n' }}{%- endif -%}"
)
NAMED_TOKENS = {"boi_token": "<start_of_image>", "eoi_token": "<end_of_image>", "image_token": "<image_soft_token>"}
SPECIAL_TOKENS = ("<pad>", "<eos>", "<bos>", "<start_of_turn>", "<end_of_turn>", *NAMED_TOKENS.values())
PATCH = 14
# (image side, tokens per image, sliding window) per preset. tiny: the window is shorter than a prompt
# with its image (~40 tokens), as 1024 is for the real model's 256-token images plus a few dozen
# questions, so the sliding layer really does cut off early tokens. bench: google/gemma-3-4b-it's
# 896-pixel image, 64^2 patches pooled 4x4 to 256 tokens, and its 1024-token window.
GEOMETRY = {"tiny": (56, 4, 32), "bench": (896, 256, 1024)}


def _config(tokenizer, s: Sizes, tile: int, tokens: int, window: int) -> Gemma3Config:
    head_dim = s.hidden // s.heads
    # as the real model: five sliding-window layers to one full-attention layer, a full one last
    layer_types = ["full_attention" if i % 6 == 5 or i == s.layers - 1 else "sliding_attention"
                   for i in range(s.layers)]
    text = dict(vocab_size=vocab_size(tokenizer), hidden_size=s.hidden, intermediate_size=s.intermediate,
                num_hidden_layers=s.layers, num_attention_heads=s.heads, num_key_value_heads=s.kv_heads,
                head_dim=head_dim, query_pre_attn_scalar=head_dim, sliding_window=window,
                layer_types=layer_types, max_position_embeddings=32768,
                rope_parameters={"full_attention": {"rope_type": "linear", "factor": 8.0, "rope_theta": 1e6},
                                 "sliding_attention": {"rope_type": "default", "rope_theta": 1e4}},
                initializer_range=s.init_range, **token_ids(tokenizer, pad_token_id="<pad>", eos_token_id="<eos>",
                                                            bos_token_id="<bos>"))
    vision = dict(model_type="siglip_vision_model", hidden_size=s.vision_hidden, intermediate_size=s.vision_intermediate,
                  num_hidden_layers=s.vision_layers, num_attention_heads=s.vision_heads, image_size=tile,
                  patch_size=PATCH, vision_use_head=False)
    ids = token_ids(tokenizer, boi_token_index="<start_of_image>", eoi_token_index="<end_of_image>",
                    image_token_index="<image_soft_token>")
    return Gemma3Config(text_config=text, vision_config=vision, mm_tokens_per_image=tokens,
                        initializer_range=s.init_range, tie_word_embeddings=True, **ids)


def build(out: Path, family: str, seed: int, preset: str = "tiny") -> Path:
    s = SIZES[preset]
    tile, tokens, window = GEOMETRY[preset]

    def draw_projector(model: PreTrainedModel) -> None:
        # from_config leaves it zero (real checkpoints load trained weights); zero would hide the image
        model.model.multi_modal_projector.mm_input_projection_weight.normal_(0.0, s.init_range)

    tokenizer = build_bpe_tokenizer(SPECIAL_TOKENS, GEMMA3_CHAT_TEMPLATE, eos="<eos>", pad="<pad>", bos="<bos>",
                                    named_tokens=NAMED_TOKENS)
    image = {
        "image_processor_type": "Gemma3ImageProcessor", "processor_class": "Gemma3Processor",
        "do_resize": True, "do_rescale": True, "do_normalize": True, "do_convert_rgb": True,
        "resample": 2, "rescale_factor": 1 / 255, "image_mean": HALF, "image_std": HALF,
        "size": {"height": tile, "width": tile}, "do_pan_and_scan": None,
    }
    processor = {"processor_class": "Gemma3Processor", "image_seq_length": tokens}
    return save_checkpoint(out, _config(tokenizer, s, tile, tokens, window), tokenizer, seed, image,
                           processor_config=processor, after_init=draw_projector)
