"""A system prompt on every family's chat template: its text reaches the model once, and p_yes
equals the stock forward with the same system prompt.

Templates differ in the system message content they render: LLaVA-OneVision's and Idefics3's read
only a list of text parts (a string renders as nothing), GLM-4.1V's writes the content as it is (a
list renders as its repr). Before the engine chose the form per template, every item of those two
families failed with "the chat template alters the question or system text".
"""
from __future__ import annotations

import numpy as np
import pytest

from actors.adapters import MediaInput, load_adapter
from actors.demo_model import FAMILIES, build_demo_model
from schemas.job_config import DecodeConfig, ModelConfig
from tests.family_stock import stock_p_yes, verified_family

pytestmark = pytest.mark.equivalence  # run again on the lowest supported transformers (.ci/run)

SYSTEM = "You judge generated images strictly and answer with one word."
QUESTIONS = ["Is the lighting natural?", "Is there a cat?"]
# 224 = 8 x 28 = 7 x 32, within every tiny checkpoint's pixel bounds: no family resizes it
IMAGE = np.random.default_rng(5).integers(0, 256, (1, 224, 224, 3), dtype=np.uint8)
TOL = 1e-4


def _decode(family: str) -> DecodeConfig:
    return DecodeConfig(resize_factor=32) if family.startswith("qwen3") else DecodeConfig()


def _adapter(model_dir, family: str, system: str | None, **model: object):
    return load_adapter(ModelConfig(model=str(model_dir), device="cpu", dtype="float32", **model),
                        _decode(family), system_prompt=system)


_PARAMS = [verified_family(f) for f in FAMILIES]


@pytest.fixture(scope="module", params=_PARAMS)
def family_model(request, tmp_path_factory):
    return request.param, build_demo_model(tmp_path_factory.mktemp(request.param), family=request.param)


def test_system_prompt_is_in_the_prompt_once_and_scores_as_stock(family_model):
    family, model_dir = family_model
    adapter = _adapter(model_dir, family, SYSTEM)
    item = MediaInput(IMAGE, "image")
    for ids in adapter.prepare(item, QUESTIONS).sequences:
        assert adapter.tokenizer.decode(ids).count(SYSTEM) == 1
    expected = np.array([stock_p_yes(model_dir, IMAGE, "image", q, system=SYSTEM) for q in QUESTIONS])
    np.testing.assert_allclose(adapter.score([item], [QUESTIONS])[0], expected, atol=TOL, rtol=0)
    np.testing.assert_allclose(adapter.score_reference([item], [QUESTIONS])[0], expected, atol=TOL, rtol=0)
    # negative control: without the system prompt the model answers differently
    without = _adapter(model_dir, family, None).score([item], [QUESTIONS])[0]
    assert np.abs(without - expected).max() > 10 * TOL


def test_a_template_that_drops_the_system_prompt_is_refused_at_load(tmp_path):
    model_dir = build_demo_model(tmp_path / "qwen2_vl", family="qwen2_vl")
    template = tmp_path / "no_system.jinja"
    template.write_text(
        "{% for m in messages if m.role != 'system' %}<|im_start|>{{ m.role }}\n"
        "{% for c in m.content %}{% if c.type == 'text' %}{{ c.text }}{% else %}"
        "<|vision_start|><|{{ c.type }}_pad|><|vision_end|>{% endif %}{% endfor %}<|im_end|>\n"
        "{% endfor %}<|im_start|>assistant\n")
    with pytest.raises(ValueError, match="renders the system prompt neither as a string nor as a list"):
        _adapter(model_dir, "qwen2_vl", SYSTEM, chat_template=str(template))
    # the same template without a system prompt loads
    assert _adapter(model_dir, "qwen2_vl", None, chat_template=str(template)).system_prompt is None
