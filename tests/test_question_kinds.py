"""Question kinds (`answer:` and `readout:` of a checklist question) read by every path of the engine
against a stock forward (`tests/family_stock.py`: the family's stock processor, `model(**inputs)`,
`torch.softmax` over the whole logits, each level's case forms summed), on tiny random models of
several families. The fast path (shared prefix) and the reference path agree at float32, 1e-4.
Negative controls: the absolute readout differs from the renormalised one; reversing a rating's
levels changes its expected value."""
from __future__ import annotations

import numpy as np
import pytest

from actors.adapters import MediaInput, load_adapter
from actors.adapters.base import YES_NO, AnswerKind
from actors.demo_model import build_demo_model
from schemas.job_config import DecodeConfig, ModelConfig
from tests.family_stock import stock_absolute, stock_answer, stock_rating

FAMILIES = ["qwen2_vl", "gemma3", "qwen3_5"]  # qwen3_5: linear-attention layers, the stateful fast path
QUESTIONS = ["Is the lighting natural?", "Is there a cat?", "Does the picture show \"a red fox in snow\"?"]
IMAGES = [np.random.default_rng(k).integers(0, 256, (1, 224, 224, 3), dtype=np.uint8) for k in (7, 8)]
ABSOLUTE = AnswerKind(absolute=True)
LEVELS = ("bad", "low", "good", "high", "beautiful")  # each a single token, bare, capitalised and after a space
EVEN = (0.0, 0.25, 0.5, 0.75, 1.0)
SKEWED = (0.0, 0.1, 0.2, 0.9, 1.0)
ATOL = 1e-4


@pytest.fixture(scope="module", params=FAMILIES)
def tiny(request, tmp_path_factory):
    family = request.param
    model_dir = build_demo_model(tmp_path_factory.mktemp(family) / family, family=family)
    decode = DecodeConfig(resize_factor=32) if family.startswith("qwen3") else DecodeConfig()
    return model_dir, load_adapter(ModelConfig(model=str(model_dir), device="cpu", dtype="float32"), decode)


def _both_paths(adapter, answers):
    items = [MediaInput(image, "image") for image in IMAGES]
    fast = adapter.readout(items, [QUESTIONS] * len(items), answers)
    reference = adapter.readout_reference(items, [QUESTIONS] * len(items), answers)
    return fast, reference


def test_absolute_yes_no_is_p_yes_under_the_whole_vocabulary(tiny):
    model_dir, adapter = tiny
    answers = [ABSOLUTE, YES_NO, ABSOLUTE]
    fast, reference = _both_paths(adapter, answers)
    for image, f, r in zip(IMAGES, fast, reference):
        stock = [stock_answer(model_dir, image, "image", q) for q in QUESTIONS]
        absolute = [stock_absolute(model_dir, image, "image", q) for q in QUESTIONS]
        want = np.array([absolute[0], stock[1][0], absolute[2]])
        for got in (f, r):
            np.testing.assert_allclose(got.p_yes, want, rtol=1e-4, atol=0)
            np.testing.assert_allclose(got.answer_mass, [m for _, m in stock], rtol=1e-4, atol=0)
            assert got.level_probs is None
        np.testing.assert_allclose(f.p_yes, r.p_yes, rtol=1e-4, atol=0)
        # negative control: the renormalised readout of the same logits is another number
        renormalised = np.array([p for p, _ in stock])
        assert np.all(np.abs(renormalised[[0, 2]] - want[[0, 2]]) > 100 * ATOL * want[[0, 2]])


def test_default_answers_are_the_renormalised_readout_unchanged(tiny):
    _, adapter = tiny
    items = [MediaInput(image, "image") for image in IMAGES]
    default = adapter.readout(items, [QUESTIONS] * 2)
    explicit = adapter.readout(items, [QUESTIONS] * 2, [YES_NO] * len(QUESTIONS))
    for d, e in zip(default, explicit):
        np.testing.assert_array_equal(d.p_yes, e.p_yes)
        np.testing.assert_array_equal(d.answer_mass, e.answer_mass)


def test_answer_kinds_must_match_the_questions(tiny):
    _, adapter = tiny
    with pytest.raises(ValueError, match="2 answer kinds for an item with 3 questions"):
        adapter.readout([MediaInput(IMAGES[0], "image")], [QUESTIONS], [YES_NO, YES_NO])


def test_rating_is_the_expected_value_of_the_stock_level_distribution(tiny):
    model_dir, adapter = tiny
    answers = [AnswerKind(LEVELS, EVEN), ABSOLUTE, AnswerKind(LEVELS, SKEWED)]
    fast, reference = _both_paths(adapter, answers)
    for image, f, r in zip(IMAGES, fast, reference):
        stock = [stock_rating(model_dir, image, "image", q, list(LEVELS), list(v))
                 for q, v in [(QUESTIONS[0], EVEN), (QUESTIONS[2], SKEWED)]]
        for got in (f, r):
            assert got.level_probs[1] is None
            for q, (value, probs, mass) in zip((0, 2), stock):
                assert abs(got.p_yes[q] - value) <= ATOL
                np.testing.assert_allclose(got.level_probs[q], probs, rtol=0, atol=ATOL)
                assert got.answer_mass[q] == pytest.approx(mass, rel=1e-4)
            assert got.p_yes[1] == pytest.approx(stock_absolute(model_dir, image, "image", QUESTIONS[1]), rel=1e-4)
        np.testing.assert_allclose(f.p_yes, r.p_yes, rtol=0, atol=ATOL)
        for q in (0, 2):
            np.testing.assert_allclose(f.level_probs[q], r.level_probs[q], rtol=0, atol=ATOL)
        assert all(0 < p < 1 for p in f.p_yes) and np.sum(f.level_probs[0]) == pytest.approx(1, abs=1e-5)

    # negative controls: levels read in another order give another expected value; other values too
    reordered = adapter.readout([MediaInput(IMAGES[0], "image")], [QUESTIONS],
                                [AnswerKind(LEVELS[::-1], EVEN), ABSOLUTE, AnswerKind(LEVELS[::-1], SKEWED)])[0]
    np.testing.assert_allclose(reordered.level_probs[0], fast[0].level_probs[0][::-1], rtol=0, atol=ATOL)
    assert abs(reordered.p_yes[2] - fast[0].p_yes[2]) > 100 * ATOL


def test_a_level_that_is_not_one_token_is_refused(tiny):
    _, adapter = tiny
    with pytest.raises(ValueError, match="'excellent'.* must be exactly one token|' excellent'.* must be exactly one token"):
        adapter.answer_groups(AnswerKind(("bad", "excellent"), (0.0, 1.0)))
