"""The answer mass (P(yes words) + P(no words) under the softmax over the whole vocabulary, where
p_yes is read) of every family's engine, fast path and reference path, against the stock
forward's full softmax (`tests/family_stock.py`: the family's stock processor, `model(**inputs)`,
`torch.softmax` over the whole logits), on images. Negative control: leaving one answer word out
(`no_words=["No"]`) pools fewer tokens, and the mass moves away from the stock one."""
from __future__ import annotations

import numpy as np
import pytest

from actors.adapters import MediaInput, load_adapter
from actors.demo_model import FAMILIES, build_demo_model
from schemas.job_config import DecodeConfig, ModelConfig
from tests.family_stock import stock_answer, verified_family

pytestmark = pytest.mark.equivalence  # run again on the lowest supported transformers (.ci/run)

QUESTIONS = ["Is the lighting natural?", "Is there a cat?", "Does the picture show \"a red fox in snow\"?"]
# 224 = 8 x 28 = 7 x 32, within every tiny checkpoint's pixel bounds: no family resizes it
IMAGES = [np.random.default_rng(k).integers(0, 256, (1, 224, 224, 3), dtype=np.uint8) for k in (7, 8)]
RTOL = 1e-4  # relative: a random-weight model's mass is small (a few answer words among thousands)

_PARAMS = [verified_family(f) for f in FAMILIES]


def _adapter(model_dir, family: str, **model: object):
    decode = DecodeConfig(resize_factor=32) if family.startswith("qwen3") else DecodeConfig()
    return load_adapter(ModelConfig(model=str(model_dir), device="cpu", dtype="float32", **model), decode)


@pytest.mark.parametrize("family", _PARAMS)
def test_answer_mass_equals_the_stock_full_softmax(family, tmp_path):
    model_dir = build_demo_model(tmp_path / family, family=family)
    stock = np.array([[stock_answer(model_dir, image, "image", q) for q in QUESTIONS] for image in IMAGES])
    want_p, want_mass = stock[..., 0], stock[..., 1]
    adapter = _adapter(model_dir, family)
    items = [MediaInput(image, "image") for image in IMAGES]
    for path in (adapter.readout, adapter.readout_reference):  # both items in one call: shared forwards
        for got, p, mass in zip(path(items, [QUESTIONS] * len(items)), want_p, want_mass):
            np.testing.assert_allclose(got.answer_mass, mass, rtol=RTOL, atol=0, err_msg=path.__name__)
            np.testing.assert_allclose(got.p_yes, p, rtol=0, atol=1e-4, err_msg=path.__name__)
    assert np.all((want_mass > 0) & (want_mass < 1))
    assert np.ptp(np.log(want_mass)) > 100 * RTOL  # masses differ by question and image: not vacuous
    # negative control: one no-word fewer is less of the vocabulary's probability
    fewer = _adapter(model_dir, family, no_words=["No"]).readout(items[:1], [QUESTIONS])[0]
    assert np.all(fewer.answer_mass < want_mass[0] * (1 - 10 * RTOL))
