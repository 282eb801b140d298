"""The summary, streamed file by file (pipeline/output_stats.py), equals the same figures
computed over the whole output at once; files still being written are skipped until done;
the job line says rows done of total, rows/s, errors by status and the time left."""
from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from pipeline.output_stats import OutputScanner, OutputStats
from pipeline.progress import JobProgress, format_duration, format_job_line
from schemas.job_config import StorageConfig

COLUMNS = ["score", "dim_quality"]


def _table(rng: np.random.Generator, n: int) -> pa.Table:
    statuses = rng.choice(["ok", "ok", "ok", "missing_file", "decode_error"], n)
    media = rng.choice(["image", "video", None], n, p=[0.5, 0.4, 0.1])
    score = [None if s != "ok" else float(v) for s, v in zip(statuses, rng.normal(size=n))]
    quality = [None if s != "ok" or rng.random() < 0.2 else float(v) for s, v in zip(statuses, rng.normal(size=n))]
    return pa.table({"id": [f"r{i}" for i in range(n)], "status": statuses.tolist(), "media_type": media.tolist(),
                     "score": pa.array(score, pa.float64()), "dim_quality": pa.array(quality, pa.float64())})


def _whole(table: pa.Table) -> tuple[dict, dict]:
    """The figures over the whole table at once, as the summary computed them before."""
    counts = {r["values"]: r["counts"] for r in pc.value_counts(table["status"]).to_pylist()}
    ok = table.filter(pc.equal(table["status"], "ok"))
    means = {}
    for kind in set(ok["media_type"].to_pylist()) - {None}:
        rows = ok.filter(pc.equal(ok["media_type"], kind))
        means[kind] = {c: pc.mean(rows[c]).as_py() for c in COLUMNS}
    return counts, means


def test_streamed_summary_equals_the_whole_table(tmp_path):
    rng = np.random.default_rng(0)
    tables = [_table(rng, n) for n in (37, 1, 200, 64)]
    for k, t in enumerate(tables):
        pq.write_table(t, tmp_path / f"part-{k}.parquet")
    stats = OutputScanner(str(tmp_path), StorageConfig(), COLUMNS).refresh(strict=True)
    counts, means = _whole(pa.concat_tables(tables))
    assert stats.rows == sum(t.num_rows for t in tables) and dict(stats.statuses) == counts
    assert stats.means().keys() == means.keys()
    for kind in means:
        assert stats.means()[kind] == pytest.approx(means[kind], rel=1e-12)
    # Negative control: one file fewer changes the figures.
    partial = OutputStats()
    for t in tables[1:]:
        partial.add_table(t, COLUMNS)
    assert partial.rows != stats.rows and partial.means() != stats.means()


def test_files_being_written_are_picked_up_later(tmp_path):
    rng = np.random.default_rng(1)
    pq.write_table(_table(rng, 10), tmp_path / "a.parquet")
    (tmp_path / "b.parquet").write_bytes(b"PAR1 half a file")  # no footer yet
    scanner = OutputScanner(str(tmp_path), StorageConfig(), COLUMNS)
    assert scanner.refresh().rows == 10
    with pytest.raises(pa.ArrowInvalid):
        scanner.refresh(strict=True)  # at the end of a job every file must read
    pq.write_table(_table(rng, 5), tmp_path / "b.parquet")
    assert scanner.refresh(strict=True).rows == 15
    assert scanner.refresh().rows == 15  # each file counted once


def test_job_line():
    stats = OutputStats()
    stats.add_table(pa.table({"status": ["ok"] * 6 + ["missing_file"] * 3 + ["timeout"],
                              "media_type": ["image"] * 10, "score": [1.0] * 10}), ["score"])
    line = format_job_line(stats, total=1000, new_rows=10, seconds=4.0)
    assert "rows 10/1,000 (1.0%)" in line and "2.5 rows/s" in line
    assert "errors 4 (missing_file 3, timeout 1)" in line
    assert "ETA 6m36s" in line  # 990 rows at 2.5 rows/s
    assert "ETA -" in format_job_line(OutputStats(), total=10, new_rows=0, seconds=3.0)
    unknown = format_job_line(stats, total=0, new_rows=10, seconds=4.0)  # WebDataset shards: no total
    assert unknown.startswith("[vrscore] rows 10   2.5 rows/s") and "ETA" not in unknown and "/0" not in unknown
    assert format_duration(3 * 3600 + 125) == "3h02m" and format_duration(59.4) == "59s"


def test_job_progress_reports_while_running_and_at_the_end(tmp_path):
    rng = np.random.default_rng(2)
    pq.write_table(_table(rng, 7), tmp_path / "earlier-run.parquet")
    lines: list[str] = []
    with JobProgress(OutputScanner(str(tmp_path), StorageConfig(), COLUMNS), total=20, interval=0.05,
                     write=lines.append) as progress:
        pq.write_table(_table(rng, 13), tmp_path / "this-run.parquet")
        progress._stop.wait(0.3)
    assert len(lines) >= 2 and "rows 20/20 (100.0%)" in lines[-1]
    quiet: list[str] = []
    with JobProgress(OutputScanner(str(tmp_path), StorageConfig(), COLUMNS), total=20, interval=0.05,
                     enabled=False, write=quiet.append):
        pass
    assert quiet == []


def _mass_table(rng: np.random.Generator, n: int, questions: dict[str, int]) -> pa.Table:
    statuses = rng.choice(["ok", "ok", "decode_error"], n)
    media = rng.choice(list(questions), n)
    mass = [None if s != "ok" else rng.random(questions[m]).tolist() for s, m in zip(statuses, media)]
    return pa.table({"status": statuses.tolist(), "media_type": media.tolist(), "score": pa.array([0.0] * n),
                     "answer_mass": pa.array(mass, pa.list_(pa.float32()))})


def test_streamed_answer_mass_means_per_question_and_older_files_without_it(tmp_path):
    rng = np.random.default_rng(2)
    questions = {"image": 5, "video": 3}
    tables = [_mass_table(rng, n, questions) for n in (40, 3, 90)]
    for k, t in enumerate(tables):
        pq.write_table(t, tmp_path / f"part-{k}.parquet")
    # a file of a version before the column (a resumed older job): counted, with no mass
    pq.write_table(_table(rng, 20).select(["status", "media_type", "score"]), tmp_path / "old.parquet")
    stats = OutputScanner(str(tmp_path), StorageConfig(), ["score"]).refresh(strict=True)
    whole = pa.concat_tables(tables)
    assert stats.rows == whole.num_rows + 20
    for kind, n_q in questions.items():
        rows = whole.filter(pc.and_(pc.equal(whole["status"], "ok"), pc.equal(whole["media_type"], kind)))
        want = np.array(rows["answer_mass"].to_pylist(), dtype=np.float64).mean(axis=0)
        assert stats.mass_means()[kind] == pytest.approx(want.tolist(), rel=1e-12) and len(want) == n_q
    partial = OutputStats()  # negative control: one file fewer changes the means
    partial.add_table(tables[0], ["score"])
    assert partial.mass_means()["image"] != pytest.approx(stats.mass_means()["image"], rel=1e-6)


def _summary(mass: dict[str, dict[str, float]]) -> str:
    from jobs.score_job import JobSummary

    return JobSummary(rows=4, ok=4, errors_by_status={}, means={"image": {"score": 0.1}}, seconds=1.0, out="/o",
                      answer_mass=mass).format()


def test_summary_shows_mean_answer_mass_per_question_and_warns_in_one_line_under_half():
    good = {"image": {f"q{k}": 0.9 + k / 100 for k in range(9)}, "video": {"motion": 0.97}}
    printed = _summary(good)
    assert "mean answer mass per question" in printed and "q0 0.900" in printed and "motion 0.970" in printed
    assert "warning" not in printed
    low = {"image": {**good["image"], "q3": 0.42, "q7": 0.05}, "video": good["video"]}
    warnings = [line for line in _summary(low).splitlines() if "warning" in line]
    assert len(warnings) == 1
    assert "2 of 10 questions have a mean answer mass under 0.5 (lowest q7 of image: 0.05)" in warnings[0]
    for setting in ("model.chat_template_kwargs", "model.answer_prefix", "model.yes_words", "answer_leading_space"):
        assert setting in warnings[0]
