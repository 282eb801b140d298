"""The decode and scorer stages called in process, as Ray Data calls them: frames the decoder
resized are scored at that size, including sizes where resizing twice would change them."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from actors.adapters.engine import ChecklistEngine
from actors.adapters.families.qwen2_vl import Qwen2VLFamily
from actors.checklist_scorer import ChecklistScorer
from actors.media_decoder import MediaDecoder
from actors.synthetic_media import write_video
from actors.systemic_failure import FailureStreak, SystemicScoringError, uniform_failure
from pipeline.model_family import resolve_decode
from pipeline.score_pipeline import validate_rows
from schemas import status
from schemas.checklist_set import checklists_to_json, resolve_checklists
from schemas.job_config import DecodeConfig, ModelConfig, StorageConfig


def test_an_image_at_the_aspect_ratio_edge_is_scored(tmp_path, demo_model_dir):
    # 5771x29 is within the 200:1 limit; resized once it is 5768x28 (206:1), which the rule
    # would refuse if it were applied again on the scorer side.
    rng = np.random.default_rng(3)
    paths = {}
    for name, (h, w) in {"edge": (29, 5771), "plain": (120, 160)}.items():
        paths[name] = tmp_path / f"{name}.png"
        Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(paths[name])
    checklists = resolve_checklists(["default"])
    batch = {"id": np.array(list(paths), dtype=object), "uri": np.array([str(p) for p in paths.values()], dtype=object),
             "prompt": np.array(["a long thin banner"] * 2, dtype=object)}
    batch = validate_rows(batch, {k: c.uses_prompt for k, c in checklists.items()})
    model = ModelConfig(model=str(demo_model_dir), dtype="float32")
    decode = resolve_decode(model, DecodeConfig(), StorageConfig())  # Qwen2-VL's rule, as `vrscore score` resolves it
    decoded = MediaDecoder(decode.model_dump())(batch)
    assert tuple(decoded["frames_shape"][0]) == (1, 28, 5768, 3)
    scorer = ChecklistScorer(model.model_dump(), decode.model_dump(), checklists_to_json(checklists))
    out = scorer(decoded)
    assert list(out["status"]) == [status.OK, status.OK], list(out["error"])
    for raw in out["p_yes"]:
        p = np.frombuffer(raw, dtype=np.float32)
        assert p.shape == (len(checklists["image"].questions),) and np.all((p > 0) & (p < 1))


# --- a broken model or device stops the job; bad items do not ---------------------------------

K = 3


class CudaLikeError(RuntimeError):
    """Stands for a lost CUDA context: every forward raises it."""


def _decoded_images(tmp_path, n: int, black: set[int] = frozenset()) -> dict:
    """n decoded images; those in `black` are all black (the 'bad items' of the test)."""
    rng = np.random.default_rng(5)
    uris = []
    for k in range(n):
        pixels = np.zeros((64, 80, 3), np.uint8) if k in black else rng.integers(1, 256, (64, 80, 3), dtype=np.uint8)
        uris.append(str(tmp_path / f"{k}.png"))
        Image.fromarray(pixels).save(uris[-1])
    checklists = resolve_checklists(["default"])
    batch = {"id": np.array([f"r{k}" for k in range(n)], dtype=object), "uri": np.array(uris, dtype=object),
             "prompt": np.array(["a cat"] * n, dtype=object)}
    batch = validate_rows(batch, {k: c.uses_prompt for k, c in checklists.items()})
    return MediaDecoder(DecodeConfig().model_dump())(batch)


def _scorer(demo_model_dir) -> ChecklistScorer:
    return ChecklistScorer(ModelConfig(model=str(demo_model_dir), dtype="float32", systemic_failure_batches=K)
                           .model_dump(), DecodeConfig().model_dump(), checklists_to_json(resolve_checklists(["default"])))


@pytest.fixture(scope="module")
def scorer(demo_model_dir):
    return _scorer(demo_model_dir)


@pytest.fixture
def faults(scorer, monkeypatch):
    """Switches for the model under the scorer: `broken` fails every forward; black images
    fail alone (a bad item), whatever else is in the forward."""
    state = {"broken": False}
    adapter = scorer.adapters["image"]
    real = adapter.readout

    def readout(items, questions, answers=None):
        if state["broken"]:
            raise CudaLikeError("CUDA error: an illegal memory access was encountered")
        if any(not it.frames.any() for it in items):
            raise ValueError("this item is bad")
        return real(items, questions, answers)

    monkeypatch.setattr(adapter, "readout", readout)
    monkeypatch.setattr(scorer, "_streak", FailureStreak(K), raising=False)  # fresh per test
    return state


def test_a_model_broken_from_the_start_stops_before_any_row_is_marked(tmp_path, demo_model_dir, monkeypatch):
    batch = _decoded_images(tmp_path, 2)

    def broken(self, items, questions, answers=None):
        raise CudaLikeError("CUDA error: an illegal memory access was encountered")

    monkeypatch.setattr(ChecklistEngine, "readout", broken)
    with pytest.raises(SystemicScoringError, match="cannot score a synthetic image at start-up .*CudaLikeError") as info:
        out = _scorer(demo_model_dir)(batch)  # before the start-up canary: both rows marked score_error
        pytest.fail(f"scored, statuses {list(out['status'])}")
    assert isinstance(info.value.__cause__, CudaLikeError)


def test_the_start_up_canary_covers_every_kind_and_leaves_rows_unchanged(tmp_path, demo_model_dir, scorer,
                                                                         monkeypatch):
    assert set(scorer._canary) == {"image", "video"}  # the demo family takes both
    batch = _decoded_images(tmp_path, 3)
    got = [np.frombuffer(raw, dtype=np.float32) for raw in scorer(batch)["p_yes"]]
    # The same rows on a fresh actor that never scores a canary.
    monkeypatch.setattr(ChecklistScorer, "_start_canaries", lambda self, decode: None)
    plain = _scorer(demo_model_dir)
    assert plain._canary == {}
    want = [np.frombuffer(raw, dtype=np.float32) for raw in plain(batch)["p_yes"]]
    for g, w in zip(got, want):
        np.testing.assert_array_equal(g, w)
    # Negative control: the comparison sees a change of item (rows differ from each other).
    assert not np.array_equal(got[0], want[1])


def test_a_model_that_breaks_before_its_first_batch_stops_at_that_batch(tmp_path, scorer, faults):
    faults["broken"] = True  # broken after start-up, before any row: the start-up canary is the known-good item
    with pytest.raises(SystemicScoringError, match="an item it had scored before now fails too") as info:
        scorer(_decoded_images(tmp_path, 2))
    assert isinstance(info.value.__cause__, CudaLikeError)


def test_a_kind_without_a_start_up_canary_stops_after_k_batches(tmp_path, scorer, faults, monkeypatch):
    monkeypatch.setattr(scorer, "_canary", {}, raising=False)  # as the generic path's videos
    faults["broken"] = True
    batch = _decoded_images(tmp_path, 2)
    for _ in range(K - 1):  # nothing known-good to check against yet
        assert list(scorer(batch)["status"]) == [status.SCORE_ERROR] * 2
    with pytest.raises(SystemicScoringError, match=rf"every item of {K} consecutive batches with CudaLikeError"):
        scorer(batch)


def test_a_model_that_breaks_mid_job_stops_at_the_first_batch_and_marks_no_row(tmp_path, scorer, faults):
    batch = _decoded_images(tmp_path, 2)
    assert list(scorer(batch)["status"]) == [status.OK] * 2
    faults["broken"] = True
    with pytest.raises(SystemicScoringError, match="an item it had scored before now fails too") as info:
        scorer(batch)
    assert isinstance(info.value.__cause__, CudaLikeError)


def test_bad_items_stay_row_errors_however_many_batches(tmp_path, scorer, faults):
    (tmp_path / "g").mkdir()
    bad = _decoded_images(tmp_path, 2, black={0, 1})  # every item of the batch fails, with one type
    for _ in range(2 * K):  # the known-good item still scores: the items are at fault
        out = scorer(bad)
        assert list(out["status"]) == [status.SCORE_ERROR] * 2 and "this item is bad" in out["error"][0]
    mixed = _decoded_images(tmp_path / "g", 3, black={1})
    assert list(scorer(mixed)["status"]) == [status.OK, status.SCORE_ERROR, status.OK]


def test_rows_of_a_kind_the_family_does_not_take_stay_row_errors(tmp_path, demo_model_dir, monkeypatch):
    # As Gemma 3 (images only) with videos in the manifest: every video batch fails with one
    # type, and no video canary can exist; that is the rows' kind, not a broken model.
    monkeypatch.setattr(Qwen2VLFamily, "media_types", ("image",))
    scorer = _scorer(demo_model_dir)
    assert set(scorer._canary) == {"image"}
    uris = [str(write_video(tmp_path / f"{k}.mp4", n_frames=4, seed=k)) for k in range(2)]
    batch = {"id": np.array(["v0", "v1"], dtype=object), "uri": np.array(uris, dtype=object),
             "prompt": np.array(["a cat"] * 2, dtype=object)}
    checklists = resolve_checklists(["default"])
    decoded = MediaDecoder(DecodeConfig(frames="uniform:2").model_dump())(
        validate_rows(batch, {k: c.uses_prompt for k, c in checklists.items()}))
    for _ in range(K + 1):
        out = scorer(decoded)
        assert list(out["status"]) == [status.SCORE_ERROR] * 2 and "takes image, not video" in out["error"][0]


def test_failure_streak_counts_one_exception_type_in_a_row():
    streak = FailureStreak(2)
    streak.observe(ValueError("a"))
    streak.observe(KeyError("b"))  # another type: the count starts again
    streak.observe(None)  # a batch with a scored item ends the streak
    streak.observe(KeyError("c"))
    with pytest.raises(SystemicScoringError, match="2 consecutive batches with KeyError"):
        streak.observe(KeyError("d"))
    assert uniform_failure([ValueError(), ValueError()]) is not None
    assert uniform_failure([ValueError(), KeyError()]) is None and uniform_failure([ValueError(), 0.5]) is None
