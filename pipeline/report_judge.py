"""The report of a judge output: position bias and consistency, per question and overall.

Computed batch by batch (`judge_partial`: JSON-able counts and sums, pure pyarrow/numpy) and
folded on the driver (`merge_judge`); only the partials leave the cluster. Shown:
- pairs by status, with one error message per failing status;
- per question, over ok pairs: the mean position bias ((p_first_ab + p_first_ba) / 2 - 0.5,
  > 0 where the judge leans to the first slot) and its mean absolute value, the share of
  pairs whose two orders prefer the same item (`consistent`), the mean margin |2 p_a - 1|,
  and the share of a's wins (p_a > 0.5, near 50% when a is not chosen by quality);
- the share of ok pairs whose orders agree on every weighted question (what `vrscore pairs`
  keeps) and a histogram of the pairs' soft-outcome margins.
"""
from __future__ import annotations

import html

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from pipeline.bradley_terry import soft_outcomes
from pipeline.judged_pairs import all_orders_agree
from pipeline.report_html import CSS
from schemas.checklist import Checklist
from schemas.status import OK

MARGIN_BINS = 10  # histogram of |2 y - 1| over [0, 1]
SUMS = ("bias", "abs_bias", "consistent", "margin", "a_wins")


def _matrix(column: pa.ChunkedArray | pa.Array, width: int, dtype) -> np.ndarray:
    flat = pc.list_flatten(column)
    return pc.fill_null(pc.cast(flat, dtype), np.nan if dtype == pa.float64() else False).to_numpy(
        zero_copy_only=False).reshape(-1, width)


def judge_partial(batch: pa.Table, weights: list[float]) -> dict:
    """Counts and per-question sums of one batch of judged pairs."""
    statuses = batch["status"].to_pylist()
    counts: dict[str, int] = {}
    errors: dict[str, str] = {}
    for status, error in zip(statuses, batch["error"].to_pylist()):
        counts[status] = counts.get(status, 0) + 1
        if status != OK and status not in errors and error:
            errors[status] = error[:300]
    q = len(weights)
    ok = batch.filter(pc.fill_null(pc.equal(batch["status"], OK), False))
    full = ok.filter(pc.equal(pc.list_value_length(ok["p_a"]), q)) if ok.num_rows else ok
    bias = _matrix(full["position_bias"], q, pa.float64())
    p_a = _matrix(full["p_a"], q, pa.float64())
    consistent = _matrix(full["consistent"], q, pa.bool_())
    sums = {"bias": bias.sum(0), "abs_bias": np.abs(bias).sum(0), "consistent": consistent.sum(0),
            "margin": np.abs(2 * p_a - 1).sum(0), "a_wins": (p_a > 0.5).sum(0)}
    y = soft_outcomes(full["p_a"], weights)
    margins = np.histogram(np.abs(2 * y - 1), bins=MARGIN_BINS, range=(0, 1))[0]
    return {"counts": counts, "errors": errors, "ok": full.num_rows,
            "sums": {k: v.astype(float).tolist() for k, v in sums.items()},
            "agree_all": int(all_orders_agree(full["consistent"], weights).sum()), "margins": margins.tolist()}


def merge_judge(partials: list[dict], n_questions: int) -> dict:
    out = {"counts": {}, "errors": {}, "ok": 0, "sums": {k: [0.0] * n_questions for k in SUMS}, "agree_all": 0,
           "margins": [0] * MARGIN_BINS}
    for p in partials:
        for k, v in p["counts"].items():
            out["counts"][k] = out["counts"].get(k, 0) + v
        for k, v in p["errors"].items():
            out["errors"].setdefault(k, v)
        out["ok"] += p["ok"]
        out["agree_all"] += p["agree_all"]
        out["sums"] = {k: [a + b for a, b in zip(out["sums"][k], p["sums"][k])] for k in SUMS}
        out["margins"] = [a + b for a, b in zip(out["margins"], p["margins"])]
    return out


def question_means(data: dict) -> dict[str, list[float | None]]:
    """Per question the means over ok pairs (None without any)."""
    n = data["ok"]
    return {k: [s / n if n else None for s in v] for k, v in data["sums"].items()}


def _e(text: object) -> str:
    return html.escape(str(text), quote=True)


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.1f}%"


def _num(x: float | None) -> str:
    return "-" if x is None else f"{x:+.4f}"


def render_judge_report(data: dict, checklist: Checklist, *, source: str, model: str | None) -> str:
    means = question_means(data)
    total = sum(data["counts"].values())
    agree = data["agree_all"] / data["ok"] if data["ok"] else None
    tiles = "".join(f'<div class="tile"><b>{_e(v)}</b><span>{_e(k)}</span></div>' for k, v in
                    [("pairs", total), ("ok", data["ok"]), ("orders agree on every weighted question", _pct(agree))])
    rows = "".join(
        f"<tr><td><code>{_e(q.id)}</code><div class='qtext'>{_e(q.text)}</div></td><td class='num'>{q.weight:g}</td>"
        f"<td class='num'>{_num(means['bias'][i])}</td><td class='num'>{_num(means['abs_bias'][i])}</td>"
        f"<td class='num'>{_pct(means['consistent'][i])}</td><td class='num'>{_num(means['margin'][i])}</td>"
        f"<td class='num'>{_pct(means['a_wins'][i])}</td></tr>" for i, q in enumerate(checklist.questions))
    table = ("<table><tr><th>question</th><th>weight</th><th>position bias</th><th>|position bias|</th>"
             f"<th>consistent</th><th>margin |2p_a-1|</th><th>a wins</th></tr>{rows}</table>")
    peak = max(data["margins"]) or 1
    bars = "".join(f"<tr><td>{k / MARGIN_BINS:.1f}-{(k + 1) / MARGIN_BINS:.1f}</td><td class='num'>{c}</td>"
                   f"<td><div class='bar'><i style='width:{100 * c / peak:.1f}%'></i></div></td></tr>"
                   for k, c in enumerate(data["margins"]))
    errors = "".join(f"<tr><td>{_e(k)}</td><td class='num'>{v}</td><td>{_e(data['errors'].get(k, ''))}</td></tr>"
                     for k, v in sorted(data["counts"].items()))
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>vrscore judge report</title>"
            f"<style>{CSS}</style></head><body><main><h1>Pairwise judge report</h1>"
            f"<p class='sub'>{_e(source)} · checklist {_e(checklist.name)} · model {_e(model or '-')}</p>"
            f"<div class='tiles'>{tiles}</div><h2>Position bias and consistency per question</h2>"
            "<p class='sub'>position bias: (p_first_ab + p_first_ba)/2 - 0.5, &gt; 0 where the judge prefers the "
            "first slot whatever it shows; consistent: both orders prefer the same item.</p>"
            f"{table}<h2>Pair margins |2y-1| (y: weighted mean of p_a)</h2><table><tr><th>margin</th><th>pairs</th>"
            f"<th></th></tr>{bars}</table><h2>Status</h2><table><tr><th>status</th><th>pairs</th><th>example</th></tr>"
            f"{errors}</table></main></body></html>")
