"""Calibration math (pipeline/calibration.py) without Ray: the fit is the maximum-likelihood one,
a planted miscalibration is undone on labels the fit never saw (and calibrated data is left
alone), ECE follows its stated binning, and p_cal does not depend on the rows batched together."""
from __future__ import annotations

import numpy as np
import pytest
from pydantic import ValidationError
from scipy.optimize import minimize

from pipeline.output_dir import result_differences
from pipeline.calibration import (calibrate_question, calibrated, expected_calibration_error, figures, fit, logit,
                                  p_cal_rows, platt_targets, sigmoid)
from schemas.checklist import Calibration, Checklist, Question

PLANTED = 3.0  # true p = sigmoid(logit(p_yes) / 3): the model is three times too sure


def planted(rng: np.random.Generator, n: int, temperature: float = PLANTED) -> tuple[np.ndarray, np.ndarray]:
    """float32 p_yes and 0/1 labels drawn from sigmoid(logit(p_yes) / temperature)."""
    p_yes = sigmoid(rng.normal(0.0, 4.0, n)).astype(np.float32)
    labels = (rng.random(n) < sigmoid(logit(p_yes) / temperature)).astype(np.int64)
    return p_yes, labels


@pytest.mark.parametrize("method", ["platt", "temperature"])
def test_a_planted_miscalibration_is_undone_on_labels_the_fit_never_saw(method):
    rng = np.random.default_rng(0)
    p_train, y_train = planted(rng, 200)
    p_test, y_test = planted(rng, 5000)  # never seen by the fit
    c = fit(logit(p_train), y_train, method).calibration
    assert c.a == pytest.approx(1 / PLANTED, rel=0.3)
    before, after = figures(p_test, y_test), figures(sigmoid(c.a * logit(p_test) + c.b), y_test)
    assert after["log_loss"] < 0.85 * before["log_loss"], (before, after)
    assert after["ece"] < 0.5 * before["ece"], (before, after)


def test_negative_control_calibrated_answers_are_left_nearly_as_they_are():
    rng = np.random.default_rng(1)
    p_train, y_train = planted(rng, 2000, temperature=1.0)
    c = fit(logit(p_train), y_train, "platt").calibration
    assert c.a == pytest.approx(1.0, abs=0.12) and c.b == pytest.approx(0.0, abs=0.15)
    p_test, y_test = planted(rng, 5000, temperature=1.0)
    before, after = figures(p_test, y_test), figures(sigmoid(c.a * logit(p_test) + c.b), y_test)
    assert after["log_loss"] == pytest.approx(before["log_loss"], rel=0.02)


@pytest.mark.parametrize("method", ["platt", "temperature"])
def test_the_fit_is_the_maximum_likelihood_one_on_platt_targets(method):
    rng = np.random.default_rng(2)
    p, y = planted(rng, 60)
    z, t = logit(p), platt_targets(y)

    def nll(theta):
        u = theta[0] * z + (theta[1] if method == "platt" else 0.0)
        return np.sum(np.logaddexp(0, u) - t * u)

    start = [1.0, 0.0] if method == "platt" else [1.0]
    want = minimize(nll, start, method="Nelder-Mead", options={"xatol": 1e-10, "fatol": 1e-12, "maxiter": 10000}).x
    got = fit(z, y, method)
    assert got.converged
    assert got.calibration.a == pytest.approx(want[0], abs=1e-6)
    assert got.calibration.b == pytest.approx(want[1] if method == "platt" else 0.0, abs=1e-6)


def test_separable_labels_give_a_finite_fit():
    z = np.linspace(-3, 3, 32)
    c = fit(z, (z > 0).astype(np.int64), "platt").calibration
    assert np.isfinite(c.a) and 0 < c.a < 100


def test_ece_uses_ten_equal_width_bins():
    p = np.array([0.05, 0.05, 0.15, 0.95, 1.0])
    y = np.array([0, 1, 0, 1, 1])
    # bins: [0, .1): two at 0.05, one positive -> |1 - 0.1|; [.1, .2): |0 - 0.15|; [.9, 1]: |2 - 1.95|
    assert expected_calibration_error(p, y) == pytest.approx((0.9 + 0.15 + 0.05) / 5)


def test_held_out_figures_do_not_depend_on_the_order_of_the_labels():
    rng = np.random.default_rng(3)
    p, y = planted(rng, 80)
    key = rng.integers(0, 2**32, 80).astype(np.int64)
    first = calibrate_question(key, logit(p), y, "platt", 5)
    order = rng.permutation(80)
    second = calibrate_question(key[order], logit(p)[order], y[order], "platt", 5)
    assert first[1] == second[1] and first[0].calibration == second[0].calibration
    h = first[1]["held_out"]
    assert h["after"]["log_loss"] < h["before"]["log_loss"]


CHECKLIST = Checklist.model_validate({
    "name": "c", "media_type": "image", "aggregation": {"rule": "mean"},
    "questions": [{"id": "a", "text": "A?", "dimension": "d", "calibration": {"method": "platt", "a": 0.4, "b": -0.3}},
                  {"id": "b", "text": "B?", "dimension": "d"},
                  {"id": "c", "text": "C?", "dimension": "d", "calibration": {"method": "temperature", "a": 0.5}}]})


def test_p_cal_is_null_without_calibration_and_the_same_bits_in_any_batch():
    rng = np.random.default_rng(4)
    p = rng.random((50, 3)).astype(np.float32)
    p[0, 0], p[1, 2] = 0.0, 1.0  # clipped before the logit
    whole = calibrated(CHECKLIST, p)
    assert np.isnan(whole[:, 1]).all() and np.isfinite(whole[:, [0, 2]]).all()
    np.testing.assert_allclose(whole[:, 0], sigmoid(0.4 * logit(p[:, 0]) - 0.3), rtol=1e-6)
    pieces = np.concatenate([calibrated(CHECKLIST, p[i:i + 7]) for i in range(0, 50, 7)])
    assert pieces.tobytes() == whole.tobytes()
    rows = p_cal_rows(CHECKLIST, p[:2])
    assert rows[0][1] is None and rows[0][0] == float(whole[0, 0])


def test_calibration_is_refused_on_a_rating_and_checked():
    with pytest.raises(ValidationError, match="calibration is for yes_no"):
        Question(id="r", text="R?", dimension="d", answer="rating", levels=["1", "2"],
                 calibration={"method": "platt", "a": 1.0, "b": 0.0})
    with pytest.raises(ValidationError, match="temperature scaling has b = 0"):
        Calibration(method="temperature", a=1.0, b=0.5)
    with pytest.raises(ValidationError, match="Extra inputs"):
        Calibration(method="platt", a=1.0, b=0.0, t=2.0)


def test_a_resume_with_another_calibration_is_refused_and_says_so():
    old = {"image": CHECKLIST.model_dump(mode="json")}
    recalibrated = CHECKLIST.model_copy(update={"questions": [
        q.model_copy(update={"calibration": None}) for q in CHECKLIST.questions]})
    new = {"image": recalibrated.model_dump(mode="json")}
    assert any("only its calibration" in d for d in result_differences({}, {}, old, new))
    reworded = {"image": {**new["image"], "name": "other"}}
    diffs = result_differences({}, {}, old, reworded)
    assert diffs == ["checklist for image changed"]


def test_an_output_begun_before_calibration_existed_still_resumes():
    written = CHECKLIST.model_copy(update={"questions": [
        q.model_copy(update={"calibration": None}) for q in CHECKLIST.questions]}).model_dump(mode="json")
    for q in written["questions"]:
        del q["calibration"]  # checklist.json of a version without the field
    now = {"image": Checklist.model_validate(written).model_dump(mode="json")}
    assert result_differences({}, {}, {"image": written}, now) == []


def test_p_cal_is_a_column_vrscore_writes():
    from schemas.scores import reserved_column, scores_schema

    assert reserved_column("p_cal") == "is a column vrscore writes"
    names = scores_schema(["d"], p_cal=True).names
    assert names[names.index("p_yes") + 1] == "p_cal" and "p_cal" not in scores_schema(["d"]).names
