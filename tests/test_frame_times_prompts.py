"""The times the model is told are those of the frames decoded: Qwen3-VL's `<t seconds>`,
SmolVLM's `Frame from MM:SS` and GLM-4.1V's seconds, rendered by the stock processor's own
`replace_video_token` given the video's metadata (the source rate and the indices of the frames
taken), and Qwen2.5-VL's `second_per_grid_ts` from the stock rule (`VideoMetadata.sampled_fps`).

The clips are decoded by the decode stage under 'uniform:N' (frames not k / fps apart: fps is the
mean rate over the whole clip, the last frame is at its end), 'fps:F' on a 25 fps clip (no frame
at every 1/F s) and 'fps:F:MAX'. The negative control renders the same frames without their times
(k / fps): in the uneven cases the prompt must change, so the test cannot pass vacuously."""
from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from transformers.video_utils import VideoMetadata

from actors.adapters import MediaInput
from actors.checklist_scorer import frames_of
from actors.demo_model import build_demo_model
from actors.media_decoder import MediaDecoder
from actors.synthetic_media import write_video
from schemas import status as st
from schemas.job_config import DecodeConfig
from tests.family_equivalence import adapter
from tests.family_stock import image_processor_of

# (rule, clip: (frames, rate), the indices the rule takes, whether k / fps would misplace them)
CASES = [("uniform:4", (60, 12), [0, 20, 39, 59], True),  # 0, 1.67, 3.25, 4.92 s; k / 0.8 = 0, 1.25, 2.5, 3.75
         ("uniform:5", (50, 10), [0, 12, 24, 37, 49], False),  # 3.05 s, a patch's time on a rounding edge
         ("fps:2", (50, 25), [0, 12, 25, 37], False),  # 0, .48, 1, 1.48 s: close to k / 2
         ("fps:2:4", (50, 10), [0, 12, 25, 37], False)]
CASE_IDS = [c[0] + "@" + str(c[1][1]) for c in CASES]


@pytest.fixture(scope="module")
def decoded(tmp_path_factory) -> dict[str, tuple[MediaInput, VideoMetadata]]:
    """Per case: the decode stage's frames as the scorer hands them on, and the stock metadata."""
    d = tmp_path_factory.mktemp("clips")
    out = {}
    for (rule, (n, rate), indices, _), name in zip(CASES, CASE_IDS):
        path = write_video(d / f"{n}_{rate}.mp4", n_frames=n, size=(64, 64), fps=rate, seed=n)
        stage = MediaDecoder(DecodeConfig(frames=rule, resize_rule="fit_within").model_dump())
        try:
            got = stage({"id": np.array(["v"], dtype=object), "uri": np.array([str(path)], dtype=object),
                         "media_type": np.array(["video"], dtype=object),
                         "status": np.array([st.OK], dtype=object), "error": np.array([None], dtype=object)})
        finally:
            stage.close()
        assert got["status"][0] == st.OK and len(got["frame_times"][0]) == len(indices)
        item = MediaInput(frames_of(got["frames"][0], got["frames_shape"][0]), "video", fps=float(got["fps"][0]),
                          duration=float(got["video_duration"][0]),
                          times=tuple(float(t) for t in got["frame_times"][0]))
        out[name] = item, VideoMetadata(total_num_frames=n, fps=float(rate), frames_indices=list(indices),
                                        duration=n / rate)
    return out


def _without_times(item: MediaInput) -> MediaInput:
    return MediaInput(item.frames, "video", fps=item.fps, duration=item.duration)


@pytest.fixture(scope="module", params=["qwen3_vl", "smolvlm", "glm4v"])
def family_dir(request, tmp_path_factory):
    return request.param, build_demo_model(tmp_path_factory.mktemp(request.param), family=request.param)


def _stock_block(family: str, model_dir, metadata: VideoMetadata, grid) -> str:
    """The stock processor's `replace_video_token`, given the video's metadata."""
    processor = image_processor_of(str(model_dir))
    config = json.loads((model_dir / "video_preprocessor_config.json").read_text())
    processor.video_processor = SimpleNamespace(**config)  # what replace_video_token reads
    # a copy: Qwen3-VL's processor pads frames_indices in place
    inputs = {"video_metadata": [VideoMetadata(**{**dict(metadata), "frames_indices": list(metadata.frames_indices)})]}
    if grid is not None:
        inputs["video_grid_thw"] = torch.tensor([grid])
    return processor.replace_video_token(inputs, 0)


@pytest.mark.parametrize("case", CASE_IDS)
def test_prompt_times_equal_the_stock_processors_given_the_metadata(family_dir, decoded, case):
    family, model_dir = family_dir
    item, metadata = decoded[case]
    fam = adapter(model_dir).family
    media = fam.prepare_media(item)
    grid = getattr(getattr(media, "visual", None), "grid_thw", None)
    _, ours = fam.media_layout(media)
    stock = _stock_block(family, model_dir, metadata, grid)
    # Qwen3-VL: the stock expansion replaces <|video_pad|> only; ours is the block in the template's place
    assert ours == stock
    uneven = dict(zip(CASE_IDS, (c[3] for c in CASES)))[case]
    if uneven:  # negative control: the same frames at k / fps are told other times, in every family
        assert fam.media_layout(fam.prepare_media(_without_times(item)))[1] != stock


def test_qwen2_5_vl_temporal_positions_are_the_stock_rate(decoded, tmp_path):
    """second_per_grid_ts = temporal_patch_size / VideoMetadata.sampled_fps (processing_qwen2_5_vl)."""
    fam = adapter(build_demo_model(tmp_path / "q25", family="qwen2_5_vl")).family
    for case in CASE_IDS:
        item, metadata = decoded[case]
        kwargs = fam.media_kwargs([fam.prepare_media(item)], torch.device("cpu"), torch.float32)
        assert kwargs["second_per_grid_ts"].tolist() == pytest.approx([2 / metadata.sampled_fps], rel=1e-6), case
    # Negative control: a rate of one frame a second would place the frames otherwise.
    item, metadata = decoded[CASE_IDS[0]]
    other = MediaInput(item.frames, "video", fps=1.0, times=item.times)
    kwargs = fam.media_kwargs([fam.prepare_media(other)], torch.device("cpu"), torch.float32)
    assert kwargs["second_per_grid_ts"].tolist() != pytest.approx([2 / metadata.sampled_fps], rel=1e-6)
