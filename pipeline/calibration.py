"""Per-question calibration of p_yes: Platt and temperature scaling, their held-out figures, p_cal.

Pure numpy. A calibration maps z = logit(p_yes) (p_yes clipped to [1e-6, 1 - 1e-6], a float32
p_yes can be exactly 0 or 1) to p_cal = sigmoid(a*z + b); temperature scaling is b = 0, a = 1/T.
Both are fitted by maximum likelihood with Newton's method (the negative log-likelihood is
convex in (a, b)) on Platt's smoothed targets, (N+ + 1)/(N+ + 2) for a 1 and 1/(N- + 2) for a 0:
with a few dozen labels the classes are often separable, and the plain 0/1 targets then put the
optimum at an infinite slope. The held-out figures are scored against the plain labels.

Expected calibration error (ECE): 10 equal-width bins of the predicted probability over
[0, 1] (the last one closed), sum over bins of (n_bin / n) * |mean label - mean prediction|.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from schemas.checklist import CALIBRATION_EPS, Calibration, Checklist

ECE_BINS = 10
MAX_NEWTON_STEPS = 100


def logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(np.asarray(p, dtype=np.float64), CALIBRATION_EPS, 1.0 - CALIBRATION_EPS)
    return np.log(p) - np.log1p(-p)


def sigmoid(u: np.ndarray) -> np.ndarray:
    return np.exp(-np.logaddexp(0.0, -u))  # no overflow for any u


def apply_one(calibration: Calibration, p_yes: np.ndarray) -> np.ndarray:
    """float64 calibrated probabilities of one question's p_yes."""
    return sigmoid(calibration.a * logit(p_yes) + calibration.b)


def calibrated(checklist: Checklist, p_yes: np.ndarray) -> np.ndarray:
    """(N, Q) float32 p_cal for p_yes (N, Q) in checklist order; NaN for questions without a
    calibration. Elementwise, so a row's values do not depend on the rows batched with it."""
    p_yes = np.asarray(p_yes, dtype=np.float32)
    out = np.full(p_yes.shape, np.nan, dtype=np.float32)
    for j, q in enumerate(checklist.questions):
        if q.calibration is not None:
            out[:, j] = apply_one(q.calibration, p_yes[:, j]).astype(np.float32)
    return out


def p_cal_rows(checklist: Checklist, p_yes: np.ndarray) -> list[list[float | None]]:
    """The `p_cal` column's values for p_yes (N, Q): one list per row, null where a question has
    no calibration. `score` and `rescore` both write through here, so they agree bit for bit."""
    return [[None if np.isnan(v) else float(v) for v in row] for row in calibrated(checklist, p_yes)]


def platt_targets(y: np.ndarray) -> np.ndarray:
    pos, neg = int(np.sum(y == 1)), int(np.sum(y == 0))
    return np.where(y == 1, (pos + 1.0) / (pos + 2.0), 1.0 / (neg + 2.0))


@dataclass(frozen=True)
class Fit:
    calibration: Calibration
    converged: bool
    steps: int


def _nll(x: np.ndarray, t: np.ndarray, theta: np.ndarray) -> float:
    u = x @ theta
    return float(np.sum(np.logaddexp(0.0, u) - t * u))


def fit(z: np.ndarray, y: np.ndarray, method: str) -> Fit:
    """Maximum-likelihood Platt (a, b) or temperature (a = 1/T) on logits z and 0/1 labels y.
    Newton with backtracking from the identity (a = 1, b = 0); deterministic for given arrays."""
    z = np.asarray(z, dtype=np.float64)
    x = np.stack([z, np.ones_like(z)], axis=1) if method == "platt" else z[:, None]
    t = platt_targets(np.asarray(y))
    theta = np.array([1.0, 0.0]) if method == "platt" else np.array([1.0])
    loss, converged, steps = _nll(x, t, theta), False, 0
    for steps in range(1, MAX_NEWTON_STEPS + 1):
        s = sigmoid(x @ theta)
        grad = x.T @ (s - t)
        hess = (x * (s * (1.0 - s))[:, None]).T @ x
        step = np.linalg.lstsq(hess, grad, rcond=None)[0]
        scale = 1.0
        while scale > 1e-10:  # backtrack until the loss does not rise
            candidate = theta - scale * step
            new_loss = _nll(x, t, candidate)
            if new_loss <= loss:
                break
            scale /= 2.0
        else:
            converged = True  # no step lowers the loss: at the optimum to rounding
            break
        theta, loss = candidate, new_loss
        if np.max(np.abs(scale * step)) < 1e-10:
            converged = True
            break
    if method == "temperature" and theta[0] <= 0:
        # p_yes ranks the labels backwards: a negative "temperature" is no temperature scaling
        raise ValueError(f"temperature scaling needs a = 1/T > 0, the fit gives a = {theta[0]:.4g} "
                         "(p_yes is anti-correlated with the labels); use --method platt")
    b = float(theta[1]) if method == "platt" else 0.0
    return Fit(Calibration(method=method, a=float(theta[0]), b=b), converged, steps)


def log_loss(p: np.ndarray, y: np.ndarray) -> float:
    """Mean negative log-likelihood of 0/1 labels under p (clipped as for the logit)."""
    p = np.clip(np.asarray(p, dtype=np.float64), CALIBRATION_EPS, 1.0 - CALIBRATION_EPS)
    return float(-np.mean(np.where(y == 1, np.log(p), np.log1p(-p))))


def expected_calibration_error(p: np.ndarray, y: np.ndarray, bins: int = ECE_BINS) -> float:
    """ECE over `bins` equal-width bins of p in [0, 1] (see the module doc)."""
    p = np.asarray(p, dtype=np.float64)
    which = np.minimum((p * bins).astype(np.int64), bins - 1)
    gap = np.abs(np.bincount(which, y.astype(np.float64), bins) - np.bincount(which, p, bins))
    return float(np.sum(gap) / len(p)) if len(p) else float("nan")


def held_out(z: np.ndarray, y: np.ndarray, fold: np.ndarray, method: str) -> np.ndarray:
    """Cross-validated p_cal: each label's from a fit on the other folds' labels; NaN for a label
    whose fold is the only one (no other labels to fit on)."""
    out = np.full(len(z), np.nan)
    for k in np.unique(fold):
        test = fold == k
        if test.all():
            continue
        c = fit(z[~test], y[~test], method).calibration
        out[test] = sigmoid(c.a * z[test] + c.b)
    return out


def figures(p: np.ndarray, y: np.ndarray) -> dict:
    return {"log_loss": log_loss(p, y), "ece": expected_calibration_error(p, y)}


def calibrate_question(key: np.ndarray, z: np.ndarray, y: np.ndarray, method: str, folds: int) -> tuple[Fit, dict]:
    """One question's fit on all its labels and its held-out figures. The labels are first put in
    one order (by fold key, logit, label), so the same labels give the same bits in any arrival
    order; fold = key % folds (the key is a hash of the item id, so an item's labels stay together)."""
    order = np.lexsort((y, z, key))
    key, z, y = key[order], z[order], y[order]
    fold = key % folds
    final = fit(z, y, method)
    cv = held_out(z, y, fold, method)
    scored = ~np.isnan(cv)
    raw = sigmoid(z)
    report = {
        "labels": int(len(y)), "positives": int(np.sum(y == 1)), "method": method,
        "a": final.calibration.a, "b": final.calibration.b, "converged": final.converged, "newton_steps": final.steps,
        "held_out": {"folds": folds, "labels": int(scored.sum()),
                     "before": figures(raw[scored], y[scored]), "after": figures(cv[scored], y[scored])},
        "in_sample": {"before": figures(raw, y),
                      "after": figures(sigmoid(final.calibration.a * z + final.calibration.b), y)},
    }
    return final, report
