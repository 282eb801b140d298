"""The report of a judge output: per-question position bias and consistency equal their
direct means over the ok pairs, partials merge to the whole, and a judge leaning to the
first slot shows it (negative control: an unbiased one does not)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from jobs.cli import main
from pipeline.report_judge import judge_partial, merge_judge, question_means
from schemas.judge_output import pairs_schema
from tests.judge_fixtures import CHECKLIST, random_judged, write_judged
from tests.ray_fixtures import ray_session  # noqa: F401 - fixture

WEIGHTS = [q.weight for q in CHECKLIST.questions]


def table(rows):
    return pa.Table.from_pylist(rows, schema=pairs_schema(CHECKLIST.dimensions))


@pytest.mark.parametrize("bias", [0.0, 0.2])
def test_means_match_the_rows_and_partials_merge(bias):
    rows = random_judged(np.random.default_rng(4), groups=3, per_group=6, bias=bias)
    ok = [r for r in rows if r["status"] == "ok"]
    half = len(rows) // 2
    merged = merge_judge([judge_partial(table(rows[:half]), WEIGHTS), judge_partial(table(rows[half:]), WEIGHTS)],
                         len(WEIGHTS))
    whole = merge_judge([judge_partial(table(rows), WEIGHTS)], len(WEIGHTS))
    means, want = question_means(merged), question_means(whole)
    assert means.keys() == want.keys() and all(means[k] == pytest.approx(want[k]) for k in means)
    assert means["bias"] == pytest.approx(np.mean([r["position_bias"] for r in ok], axis=0), abs=1e-6)
    assert means["consistent"] == pytest.approx(np.mean([r["consistent"] for r in ok], axis=0))
    assert merged["counts"] == {"ok": len(ok), "decode_error": len(rows) - len(ok)}
    assert merged["agree_all"] == sum(all(c for w, c in zip(WEIGHTS, r["consistent"]) if w) for r in ok)
    assert sum(merged["margins"]) == len(ok)
    if bias:
        assert min(means["bias"]) > 0.1  # the judge's lean to the first slot is measured
    else:
        assert max(abs(b) for b in means["bias"]) < 0.05  # negative control


def test_report_command_on_a_judge_output(tmp_path: Path, ray_session, capsys):
    rows = random_judged(np.random.default_rng(6), groups=2, per_group=5, bias=0.2)
    write_judged(tmp_path / "judged", rows)
    out = tmp_path / "report.html"
    assert main(["report", "--scores", str(tmp_path / "judged"), "--out", str(out), "--quiet"]) == 0
    page = out.read_text()
    assert "Position bias and consistency per question" in page and "made-up-pairs" in page
    printed = capsys.readouterr().out
    ok = [r for r in rows if r["status"] == "ok"]
    bias = np.mean([r["position_bias"][0] for r in ok])
    assert f"faithful                 position bias {bias:+.4f}" in printed
