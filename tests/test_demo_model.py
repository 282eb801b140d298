"""The random-weight demo checkpoints load back like real Qwen2-VL family checkpoints."""
from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file
from transformers import (
    AutoConfig,
    AutoModelForImageTextToText,
    AutoTokenizer,
    Qwen2_5_VLForConditionalGeneration,
    Qwen2VLForConditionalGeneration,
)
from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

from actors.adapters.qwen2_vl_inputs import VisionSpec
from actors.demo_model import (
    _ANSWER_WORDS,
    _COMMON_WORDS,
    PRESETS,
    SPECIAL_TOKENS,
    _model_config,
    build_demo_model,
    build_tokenizer,
)


@pytest.fixture(params=["qwen2_vl", "qwen2_5_vl"])
def family_dir(request, demo_model_dir, demo_model_dir_25):
    return request.param, {"qwen2_vl": demo_model_dir, "qwen2_5_vl": demo_model_dir_25}[request.param]


def test_reloads_with_auto_classes_from_safetensors(family_dir):
    family, path = family_dir
    assert (path / "model.safetensors").exists() and not list(path.glob("*.bin"))
    model = AutoModelForImageTextToText.from_pretrained(path, use_safetensors=True)
    assert model.config.model_type == family
    assert sum(p.numel() for p in model.parameters()) < 500_000
    tokenizer = AutoTokenizer.from_pretrained(path)
    assert len(tokenizer) <= model.config.text_config.vocab_size
    for name, token in (("image_token_id", "<|image_pad|>"), ("video_token_id", "<|video_pad|>"),
                        ("vision_start_token_id", "<|vision_start|>"), ("vision_end_token_id", "<|vision_end|>")):
        assert getattr(model.config, name) == tokenizer.convert_tokens_to_ids(token)
    # vision output width = text width (the merger feeds the language model)
    ids = torch.tensor([[tokenizer.convert_tokens_to_ids("<|im_start|>"), 5, 6]])
    assert model(input_ids=ids).logits.shape == (1, 3, model.config.text_config.vocab_size)


def test_reloaded_tokenizer_matches_built_one_and_has_the_chat_template(demo_model_dir):
    built, loaded = build_tokenizer(), AutoTokenizer.from_pretrained(demo_model_dir)
    text = 'Does the video meet all the requirements stated in the text "A cat playing piano"? Yes'
    assert loaded.encode(text) == built.encode(text)
    assert loaded.decode(loaded.encode(text)) == text
    messages = [{"role": "user", "content": [{"type": "video"}, {"type": "text", "text": "Is it stable?"}]}]
    assert loaded.apply_chat_template(messages, tokenize=False, add_generation_prompt=True) == (
        "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
        "<|im_start|>user\n<|vision_start|><|video_pad|><|vision_end|>Is it stable?<|im_end|>\n"
        "<|im_start|>assistant\n"
    )


def test_answer_words_and_vocabulary_words_are_single_tokens():
    tokenizer = build_tokenizer()
    for token in SPECIAL_TOKENS:
        assert len(tokenizer.encode(token, add_special_tokens=False)) == 1
    words = (_ANSWER_WORDS + " " + _COMMON_WORDS).split()
    forms = [f for w in words for f in (w, w.capitalize(), " " + w, " " + w.capitalize())]
    assert [f for f in forms if len(tokenizer.encode(f, add_special_tokens=False)) != 1] == []
    # about one token per word, like Qwen's own tokenizer on checklist questions
    question = "Is the composition aesthetically pleasing and does the lighting look natural?"
    assert len(tokenizer.encode(question)) == 12


def test_deterministic_given_seed(tmp_path, demo_model_dir):
    again = load_file(build_demo_model(tmp_path / "a", preset="tiny", seed=0) / "model.safetensors")
    other = load_file(build_demo_model(tmp_path / "b", preset="tiny", seed=1) / "model.safetensors")
    first = load_file(demo_model_dir / "model.safetensors")
    assert all(torch.equal(first[k], again[k]) for k in first)
    assert not all(torch.equal(first[k], other[k]) for k in first)


def test_preprocessor_config_is_the_stock_image_processors(demo_model_dir):
    stock = Qwen2VLImageProcessorPil.from_pretrained(demo_model_dir)
    spec = VisionSpec.from_json(demo_model_dir / "preprocessor_config.json")
    assert (spec.patch_size, spec.temporal_patch_size, spec.merge_size) == (
        stock.patch_size, stock.temporal_patch_size, stock.merge_size)
    assert spec.image_mean == tuple(stock.image_mean) and spec.image_std == tuple(stock.image_std)
    config = AutoConfig.from_pretrained(demo_model_dir)
    assert config.vision_config.patch_size == spec.patch_size
    assert config.vision_config.spatial_merge_size == spec.merge_size


def test_unknown_preset_or_family_is_refused(tmp_path):
    with pytest.raises(ValueError, match="unknown preset"):
        build_demo_model(tmp_path, preset="huge")
    with pytest.raises(ValueError, match="unknown family"):
        build_demo_model(tmp_path, family="llava")
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("family", ["qwen2_vl", "qwen2_5_vl"])
@pytest.mark.parametrize("preset", ["tiny", "bench", "qwen2_vl_2b"])
def test_every_preset_builds_a_valid_model(preset, family):
    config = _model_config(PRESETS[preset], family, build_tokenizer())
    model_class = Qwen2VLForConditionalGeneration if family == "qwen2_vl" else Qwen2_5_VLForConditionalGeneration
    with torch.device("meta"):  # shapes only: no memory, no time
        model = model_class(config)
    params = sum(p.numel() for p in model.parameters())
    if (preset, family) == ("qwen2_vl_2b", "qwen2_vl"):
        assert 2.1e9 < params < 2.3e9  # Qwen2-VL-2B-Instruct: 2.21B
    elif preset == "bench":
        assert 20e6 < params < 60e6
