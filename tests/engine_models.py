"""Tiny random checkpoints with capabilities the demo presets lack (sliding-window layers),
built from transformers' own classes with the demo tokenizer and preprocessor config."""
from __future__ import annotations

import json
from pathlib import Path

import torch
from transformers import Qwen2VLConfig, Qwen2VLForConditionalGeneration

from actors import demo_model as dm


def build_sliding_qwen2_vl(out: Path, window: int) -> Path:
    """Qwen2-VL whose second and third language layers attend within `window` tokens."""
    tok = dm.build_tokenizer()
    ids = {name: tok.convert_tokens_to_ids(t) for name, t in (
        ("image_token_id", "<|image_pad|>"), ("video_token_id", "<|video_pad|>"),
        ("vision_start_token_id", "<|vision_start|>"), ("vision_end_token_id", "<|vision_end|>"))}
    text = dict(vocab_size=-(-len(tok) // 64) * 64, hidden_size=32, intermediate_size=64, num_hidden_layers=3,
                num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=4096,
                rope_parameters={"rope_type": "default", "rope_theta": 1e4, "mrope_section": [2, 3, 3]},
                use_sliding_window=True, sliding_window=window, max_window_layers=1, initializer_range=0.2,
                bos_token_id=tok.pad_token_id, pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id)
    vision = dict(depth=1, embed_dim=32, num_heads=2, mlp_ratio=2, hidden_size=32, in_channels=3,
                  patch_size=dm.PATCH_SIZE, spatial_merge_size=dm.MERGE_SIZE,
                  temporal_patch_size=dm.TEMPORAL_PATCH_SIZE, initializer_range=0.2)
    config = Qwen2VLConfig(text_config=text, vision_config=vision, **ids)
    assert config.text_config.layer_types == ["full_attention", "sliding_attention", "sliding_attention"]
    torch.manual_seed(0)
    Qwen2VLForConditionalGeneration(config).eval().save_pretrained(out, safe_serialization=True)
    tok.save_pretrained(out)
    (out / "preprocessor_config.json").write_text(json.dumps(dm._preprocessor_config("qwen2_vl")))
    return out


# A LLaVA-style template: the image as `<image>` before the question, ChatML turns.
LLAVA_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m.role }}\n{% if m.content is string %}{{ m.content }}{% else %}"
    "{% for c in m.content %}{% if c.type == 'image' %}<image>\n{% elif c.type == 'text' %}{{ c.text }}{% endif %}"
    "{% endfor %}{% endif %}<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def build_llava(out: Path) -> Path:
    """A tiny LLaVA (a model type with no family module) with its stock processor saved beside it."""
    from transformers import LlavaConfig, LlavaForConditionalGeneration, LlavaProcessor
    from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil

    from actors.tiny_models.tokenizer import build_bpe_tokenizer

    tok = build_bpe_tokenizer(("<|endoftext|>", "<|im_start|>", "<|im_end|>", "<image>"), LLAVA_TEMPLATE,
                              eos="<|im_end|>", pad="<|endoftext|>")
    images = CLIPImageProcessorPil(size={"shortest_edge": 28}, crop_size={"height": 28, "width": 28})
    processor = LlavaProcessor(image_processor=images, tokenizer=tok, patch_size=14, chat_template=LLAVA_TEMPLATE,
                               vision_feature_select_strategy="default", num_additional_image_tokens=1)
    config = LlavaConfig(
        vision_config=dict(model_type="clip_vision_model", hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                           num_attention_heads=2, image_size=28, patch_size=14, initializer_range=0.2),
        text_config=dict(model_type="qwen2", vocab_size=-(-len(tok) // 64) * 64, hidden_size=32, intermediate_size=64,
                         num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=1, initializer_range=0.2),
        image_token_id=tok.convert_tokens_to_ids("<image>"), vision_feature_select_strategy="default",
        initializer_range=0.2)
    torch.manual_seed(0)
    LlavaForConditionalGeneration(config).eval().save_pretrained(out, safe_serialization=True)
    processor.save_pretrained(out)
    return out


def build_answering_qwen2_vl(out: Path, words: tuple[str, ...] = ("Yes", "yes", "No", "no")) -> Path:
    """The tiny Qwen2-VL made to answer: at every position nearly all of its next-token probability
    goes to `words` written without a leading space, as a trained model's does after its generation
    prompt. One embedding dimension carries a large constant for every token (so it dominates each
    position's final hidden state) and a larger one for `words`: with the head tied to the
    embeddings, their logits lead every other token's by about 17 nats. Their leading-space forms
    (' Yes') are ordinary tokens and get almost nothing."""
    dm.build_demo_model(out, preset="tiny", family="qwen2_vl")
    model = Qwen2VLForConditionalGeneration.from_pretrained(out, dtype=torch.float32)
    tok = dm.build_tokenizer()
    assert model.config.tie_word_embeddings
    ids = [tok.encode(w, add_special_tokens=False) for w in words]
    assert all(len(i) == 1 for i in ids), ids
    with torch.no_grad():
        embed = model.get_input_embeddings().weight
        embed[:, 0] = 30.0
        embed[[i[0] for i in ids], 0] = 33.0
    model.save_pretrained(out, safe_serialization=True)
    return out
