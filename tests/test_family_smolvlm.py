"""SmolVLM's and Idefics3's family module: the fast path equals the stock forward.

These two models call their decoder `text_model`, not `language_model`: the engine must find it
through `get_decoder()` (these tests once needed an alias for it and failed without one).
"""
from __future__ import annotations

import numpy as np
import pytest
from transformers.video_utils import VideoMetadata

from actors.adapters import MediaInput
from actors.checklist_scorer import ChecklistScorer, frames_of
from actors.demo_model import build_demo_model
from actors.media_decoder import MediaDecoder
from actors.synthetic_media import write_video
from pipeline.model_family import resolve_decode
from pipeline.score_pipeline import validate_rows
from schemas.checklist_set import checklists_to_json, resolve_checklists
from schemas.job_config import DecodeConfig, ModelConfig, StorageConfig
from tests.family_equivalence import (
    adapter,
    fast_vs_stock,
    frames,
    shifted_positions_effect,
    swapped_media_effect,
)
from tests.family_stock import image_processor_of, stock_p_yes

IMAGES = [(64, 64), (80, 120), (200, 48)]  # one view; a 2x2 grid + global; a 1x4 strip + global


@pytest.fixture(scope="module", params=["smolvlm", "idefics3"])
def model_dir(request, tmp_path_factory):
    return build_demo_model(tmp_path_factory.mktemp(request.param), family=request.param)


def test_images_of_three_aspect_ratios_match_stock(model_dir):
    cases = [("image", frames(s, (1, *hw))) for s, hw in enumerate(IMAGES)]
    assert fast_vs_stock(model_dir, cases) < 1e-4


def test_videos_of_1_2_and_9_frames_match_stock(model_dir):
    if "video" not in adapter(model_dir).family.media_types:
        pytest.skip("Idefics3 takes no video")
    cases = [("video", frames(s, (t, 64, 64))) for s, t in enumerate([1, 2, 9])]
    assert fast_vs_stock(model_dir, cases + [("image", frames(7, (1, 80, 120)))]) < 1e-4


def test_negative_controls_change_p_yes(model_dir, monkeypatch):
    a, b = frames(0, (1, 80, 120)), frames(1, (1, 80, 120))
    assert swapped_media_effect(model_dir, "image", a, b) > 1e-3
    assert shifted_positions_effect(model_dir, "image", frames(2, (1, 64, 64)), monkeypatch) > 1e-4


# ---- the video intro's duration ----------------------------------------------------------------
# The stock processor writes `VideoMetadata.duration` (what transformers' video readers report:
# frame count / average frame rate) and the last frame's time only when that is unknown.

@pytest.fixture(scope="module")
def smolvlm_dir(tmp_path_factory):
    return build_demo_model(tmp_path_factory.mktemp("smolvlm"), family="smolvlm")


@pytest.mark.parametrize("duration", [10.0, None], ids=["container", "unknown"])
def test_video_intro_equals_the_stock_processors(smolvlm_dir, duration):
    # 8 frames taken every 5th of 40 at 4 fps: 0.8 frames a second, the last at 8.75 s of a 10 s video
    item = MediaInput(frames(3, (8, 64, 64)), "video", fps=0.8, duration=duration)
    family = adapter(smolvlm_dir).family
    _, ours = family.media_layout(family.prepare_media(item))
    processor = image_processor_of(str(smolvlm_dir))
    metadata = VideoMetadata(total_num_frames=40, fps=4.0, frames_indices=list(range(0, 40, 5)), duration=duration)
    assert ours == processor.replace_video_token({"video_metadata": [metadata]}, 0)
    assert f"from a {'0:00:10' if duration else '0:00:08'} [H:MM:SS] video" in ours


def test_a_decoded_video_is_introduced_with_the_containers_duration(smolvlm_dir, tmp_path):
    """Decode stage -> scorer -> family: a 10 s video whose last sampled frame is at 8.75 s."""
    path = write_video(tmp_path / "v.mp4", n_frames=40, size=(64, 64), fps=4, seed=3)
    checklists = resolve_checklists(["default"])
    batch = validate_rows({"id": np.array(["v"], dtype=object), "uri": np.array([str(path)], dtype=object),
                           "prompt": np.array(["a bar sweeping right"], dtype=object)},
                          {k: c.uses_prompt for k, c in checklists.items()})
    model = ModelConfig(model=str(smolvlm_dir), dtype="float32")
    decode = resolve_decode(model, DecodeConfig(frames="uniform:8"), StorageConfig())
    decoded = MediaDecoder(decode.model_dump())(batch)
    assert decoded["video_duration"][0] == 10.0 and decoded["fps"][0] == pytest.approx(0.8)
    scored = ChecklistScorer(model.model_dump(), decode.model_dump(), checklists_to_json(checklists))(decoded)
    assert list(scored["status"]) == ["ok"], list(scored["error"])
    got = np.frombuffer(scored["p_yes"][0], dtype=np.float32)
    pixels = frames_of(decoded["frames"][0], decoded["frames_shape"][0])
    seconds = decoded["frame_times"][0].tolist()  # the frames' own times (not k / fps: uniform:8 is uneven)
    questions = checklists["video"].render("a bar sweeping right")
    stock = [[stock_p_yes(smolvlm_dir, pixels, "video", q, seconds=seconds, duration=d) for q in questions]
             for d in (10.0, None)]
    np.testing.assert_allclose(got, stock[0], atol=1e-4, rtol=0)
    assert np.abs(np.array(stock[1]) - got).max() > 1e-4  # control: the last frame's 0:00:08 answers otherwise
