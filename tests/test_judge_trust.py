"""The judge stage's trust checks, as the score job's scorer has them (actors/systemic_failure.py):
the answer mass of the position words per order (`answer_mass_ab`/`answer_mass_ba`), the start-up
canary's `model.min_answer_mass` refusal, and the stop of a model that breaks mid-job while bad pairs
stay row errors. The model (`build_answering_qwen2_vl` with words "1" and "2") puts nearly all of its
probability on "1" and "2"; a checklist reading "A" and "B" instead (the negative control: answer words
the judge does not write) still gives normal-looking p_first, and only the mass tells."""
from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from actors.pair_judge import PairJudge
from actors.systemic_failure import SystemicScoringError
from actors.pair_units import UNIT_SCHEMA
from pipeline.answer_mass import low_mass_warning
from schemas.checklist import Checklist
from schemas.job_config import DecodeConfig, ModelConfig
from tests.engine_models import build_answering_qwen2_vl

K = 2  # model.systemic_failure_batches


class CudaLikeError(RuntimeError):
    """Stands for a lost CUDA context: every forward raises it."""




def pairwise(first: str = "1", second: str = "2") -> Checklist:
    return Checklist.model_validate(dict(
        name="pair", media_type="image", mode="pairwise", first_words=[first], second_words=[second],
        prompt_template=f"[[question]] Answer {first} or {second}.", aggregation={"rule": "mean"},
        questions=[{"id": "sharp", "text": "Which image is sharper?", "dimension": "d"},
                   {"id": "fox", "text": "Which image shows a fox better?", "dimension": "d"}]))


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return build_answering_qwen2_vl(tmp_path_factory.mktemp("answering12"), words=("1", "2"))


def _judge(model_dir, checklist: Checklist | None = None, **model: object) -> PairJudge:
    config = ModelConfig(model=str(model_dir), device="cpu", dtype="float32", systemic_failure_batches=K, **model)
    return PairJudge(config.model_dump(), DecodeConfig().model_dump(), (checklist or pairwise()).model_dump_json())


def _unit(n_pairs: int = 2, black: frozenset[int] = frozenset()) -> pa.Table:
    """One decoded unit: items i0..i{n}, pairs (i0, i1), (i1, i2), ...; items in `black` are all black."""
    rng = np.random.default_rng(3)
    frames = [np.zeros((1, 64, 80, 3), np.uint8) if k in black else rng.integers(1, 256, (1, 64, 80, 3), np.uint8)
              for k in range(n_pairs + 1)]
    ids = [f"i{k}" for k in range(n_pairs + 1)]
    pairs = [(f"{ids[k]}|{ids[k + 1]}", ids[k], ids[k + 1]) for k in range(n_pairs)]
    n = len(ids)
    return pa.table({
        "unit": [0], "pair_id": [[p[0] for p in pairs]], "pair_a": [[p[1] for p in pairs]],
        "pair_b": [[p[2] for p in pairs]], "pair_group": [["g"] * n_pairs], "pair_prompt": [[None] * n_pairs],
        "item_id": [ids], "item_media_type": [["image"] * n], "item_status": [["ok"] * n], "item_error": [[None] * n],
        "item_frames": [[f.tobytes() for f in frames]], "item_shape": [[list(f.shape) for f in frames]],
        "item_fps": [[None] * n], "item_duration": [[None] * n]}, schema=UNIT_SCHEMA)


def _masses(out: pa.Table) -> np.ndarray:
    return np.array([out["answer_mass_ab"].to_pylist(), out["answer_mass_ba"].to_pylist()])


def test_a_judge_answering_with_positions_starts_and_records_its_mass(model_dir):
    out = _judge(model_dir, min_answer_mass=0.9)(_unit())
    assert out["status"].to_pylist() == ["ok", "ok"]
    masses = _masses(out)
    assert masses.shape == (2, 2, 2) and np.all(masses > 0.99)  # (order, pair, question)


def test_a_judge_not_answering_with_positions_is_visible_and_refused(model_dir):
    # read as "A" and "B", which this model does not write: without the option the judge starts and
    # its p_first look like answers; only the mass says otherwise
    wrong = pairwise("A", "B")
    out = _judge(model_dir, wrong)(_unit())
    assert out["status"].to_pylist() == ["ok", "ok"]
    p_first = np.array(out["p_first_ab"].to_pylist())
    assert np.all((p_first > 0.05) & (p_first < 0.95))
    assert np.all(_masses(out) < 1e-3)
    means = {"order ab": {"sharp": 1e-4}}
    assert "not answering with a position where p_first is read" in low_mass_warning(
        means, answer="with a position", read="p_first")
    with pytest.raises(SystemicScoringError, match=r"puts \S+ of its probability on the position words") as info:
        _judge(model_dir, wrong, min_answer_mass=0.5)
    message = str(info.value)
    assert "synthetic pair of images" in message and "model.min_answer_mass is 0.5" in message
    assert all(c in message for c in ("first_words", "second_words", "answer_prefix", "model.answer_leading_space"))


@pytest.fixture
def faulty(model_dir, monkeypatch):
    """A judge whose forwards fail while `broken` (every pair), and on black items (bad pairs) always."""
    judge = _judge(model_dir)
    state = {"broken": False}
    engine = judge.reader.engine
    real = engine.readout_prepared

    def readout_prepared(prepared, kinds):
        if state["broken"]:
            raise CudaLikeError("CUDA error: an illegal memory access was encountered")
        if any(not p.media.frames.any() for p in prepared):
            raise ValueError("this pair is bad")
        return real(prepared, kinds)

    monkeypatch.setattr(engine, "readout_prepared", readout_prepared)
    return judge, state


def test_a_judge_that_breaks_mid_job_stops_and_marks_no_pair(faulty):
    judge, state = faulty
    assert judge(_unit())["status"].to_pylist() == ["ok", "ok"]
    state["broken"] = True
    with pytest.raises(SystemicScoringError, match="an item it had scored before now fails too") as info:
        judge(_unit())
    assert isinstance(info.value.__cause__, CudaLikeError)


def test_bad_pairs_stay_row_errors_however_many_batches(faulty):
    judge, _ = faulty
    for _ in range(2 * K):  # every pair of the batch fails with one type; the canary still judges
        out = judge(_unit(black=frozenset({1})))
        assert out["status"].to_pylist() == ["score_error"] * 2 and "this pair is bad" in out["error"][0].as_py()
    assert judge(_unit(3, black=frozenset({3})))["status"].to_pylist() == ["ok", "ok", "score_error"]


def test_the_summary_means_the_mass_of_ok_pairs_and_reads_files_without_it(tmp_path):
    import fsspec
    import pyarrow.parquet as pq

    from jobs.judge_job import _summary
    from schemas.judge_output import pairs_schema

    schema = pairs_schema(["d"])
    ok = {"id": "x", "a": "a", "b": "b", "status": "ok", "p_first_ab": [0.5, 0.5], "position_bias": [0.0, 0.1],
          "consistent": [True, False], "answer_mass_ab": [0.2, 0.9], "answer_mass_ba": [0.4, 0.7]}
    failed = {"id": "y", "a": "a", "b": "c", "status": "decode_error", "error": "item 'c': bad"}
    pq.write_table(pa.Table.from_pylist([ok, failed], schema=schema), tmp_path / "new.parquet")
    older = schema.remove(schema.get_field_index("answer_mass_ab")).remove(schema.get_field_index("answer_mass_ba"))
    pq.write_table(pa.Table.from_pylist([{**ok, "id": "z"}], schema=older), tmp_path / "old.parquet")
    files = [str(tmp_path / "new.parquet"), str(tmp_path / "old.parquet")]
    got = _summary(fsspec.filesystem("file"), files, {}, str(tmp_path), 1.0, ["sharp", "fox"])
    assert (got.pairs, got.ok) == (3, 2)
    assert got.answer_mass == {"order ab": pytest.approx({"sharp": 0.2, "fox": 0.9}),
                               "order ba": pytest.approx({"sharp": 0.4, "fox": 0.7})}
    text = got.format()
    assert "order ab:  sharp 0.200  fox 0.900" in text and "lowest sharp of order ab: 0.2" in text
