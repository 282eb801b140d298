"""`--frames fps:F[:MAX]`: frames at a fixed rate, and the frames every video row records
(frame_count, frame_times), from the rule's arithmetic to real clips and the output table."""
from __future__ import annotations

import decord
import numpy as np
import pytest
import torch

from actors.adapters.base import MediaInput
from actors.frame_sampling import fixed_rate_indices
from actors.media_decoder import MediaDecoder
from actors.synthetic_media import write_image, write_video
from schemas import status as st
from schemas.frames_spec import FramesSpec, parse_frames_spec
from schemas.job_config import DecodeConfig

CFG = DecodeConfig(resize_rule="smart_resize", resize_factor=28)


@pytest.mark.parametrize(("spec", "expected"), [
    ("fps:2", FramesSpec("fps", None, 2.0)), ("fps:0.5", FramesSpec("fps", None, 0.5)),
    ("fps:29.97:48", FramesSpec("fps", 48, 29.97)), ("fps:8:1", FramesSpec("fps", 1, 8.0)),
])
def test_parse_fps_spec(spec, expected):
    assert parse_frames_spec(spec) == expected
    DecodeConfig(frames=spec)


@pytest.mark.parametrize("spec", ["fps", "fps:", "fps:0", "fps:-2", "fps:2:0", "fps:2:", "fps:inf", "fps:nan",
                                  "fps:2:1.5", "fps:1e3", "fps:2:3:4"])
def test_fps_spec_rejects(spec):
    with pytest.raises(ValueError, match=r"fps:F\[:MAX\]"):
        DecodeConfig(frames=spec)


def starts(n: int, fps: float) -> np.ndarray:
    return (np.arange(n) / fps).astype(np.float32)  # decord's frame start times are float32


@pytest.mark.parametrize(("n", "src", "rate", "cap", "indices", "taken"), [
    (24, 12, 2, None, [0, 6, 12, 18], 2.0),             # 2 s: times 0, 0.5, 1.0, 1.5
    (25, 12, 2, None, [0, 6, 12, 18, 24], 2.0),         # 2.083 s: one more sample, at 2.0 s
    (50, 25, 2, None, [0, 12, 25, 37], 2.0),            # 0.5 s falls in frame 12 (0.48-0.52 s)
    (36, 12, 2, 4, [0, 9, 18, 27], 4 / 3),              # 3 s would need 6: 4 spread evenly, 0.75 s apart
    (36, 12, 2, 6, [0, 6, 12, 18, 24, 30], 2.0),        # exactly the cap: the rate stands
    (8, 8, 30, None, list(range(8)), 8.0),              # faster than the video: each frame once
    (16, 8, 0.5, None, [0], 0.5),                       # 2 s at one frame per 2 s
    (1, 8, 2, None, [0], 2.0),
])
def test_fixed_rate_indices(n, src, rate, cap, indices, taken):
    got, r = fixed_rate_indices(starts(n, src), n / src, rate, cap)
    assert got.tolist() == indices and r == pytest.approx(taken)


def test_fixed_rate_refuses_nonsense():
    with pytest.raises(ValueError):
        fixed_rate_indices(starts(4, 2), 0.0, 2.0)
    with pytest.raises(ValueError):
        fixed_rate_indices(starts(4, 2), 2.0, 2.0, 0)


def decode(frames: str, uris, media_types) -> dict:
    stage = MediaDecoder(CFG.model_copy(update={"frames": frames}).model_dump())
    n = len(uris)
    batch = {"id": np.arange(n), "uri": np.array([str(u) for u in uris], dtype=object),
             "media_type": np.array(media_types, dtype=object), "status": np.array([st.OK] * n, dtype=object),
             "error": np.array([None] * n, dtype=object)}
    try:
        return stage(batch)
    finally:
        stage.close()


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    d = tmp_path_factory.mktemp("clips")
    return {"3s12": write_video(d / "a.mp4", n_frames=36, size=(128, 96), fps=12, seed=1),   # 3 s at 12 fps
            "2s25": write_video(d / "b.mp4", n_frames=50, size=(128, 96), fps=25, seed=2),   # 2 s at 25 fps
            "5s10": write_video(d / "c.mp4", n_frames=50, size=(128, 96), fps=10, seed=3),   # 5 s at 10 fps
            "img": write_image(d / "i.png", (96, 64), seed=4)}


def test_fps2_on_clips_of_known_length_and_rate(clips):
    out = decode("fps:2", [clips["3s12"], clips["2s25"], clips["img"]], ["video", "video", "image"])
    assert out["status"].tolist() == [st.OK] * 3
    assert out["frames_shape"][0][0] == 6 and out["frame_times"][0].tolist() == [0, 0.5, 1, 1.5, 2, 2.5]
    # 25 fps has no frame at 0.5 s: the one on screen then starts at 0.48 s.
    assert out["frames_shape"][1][0] == 4
    assert out["frame_times"][1] == pytest.approx([0, 0.48, 1.0, 1.48], abs=1e-6)
    assert out["fps"][:2].tolist() == [2.0, 2.0] and np.isnan(out["fps"][2]) and len(out["frame_times"][2]) == 0
    # The frames are those at the times: frames 0, 6, ..., 30 of the 12 fps clip.
    h, w = out["frames_shape"][0][1:3]
    want = decord.VideoReader(str(clips["3s12"]), width=int(w), height=int(h)).get_batch([0, 6, 12, 18, 24, 30])
    assert np.array_equal(np.frombuffer(out["frames"][0], np.uint8).reshape(out["frames_shape"][0]), want.asnumpy())


def test_fps_cap_spreads_a_long_clip(clips):
    out = decode("fps:2:4", [clips["5s10"], clips["3s12"]], ["video", "video"])
    # Samples at 0, 1.25, 2.5, 3.75 s; at 10 fps the frames on screen then start at 0, 1.2, 2.5, 3.7 s.
    assert out["frame_times"][0] == pytest.approx([0, 1.2, 2.5, 3.7], abs=1e-6) and out["fps"][0] == pytest.approx(0.8)
    assert out["frame_times"][1].tolist() == [0, 0.75, 1.5, 2.25] and out["fps"][1] == pytest.approx(4 / 3)
    # Control: without the cap the same clip gives 10 frames at 2 fps.
    uncapped = decode("fps:2", [clips["5s10"]], ["video"])
    assert len(uncapped["frame_times"][0]) == 10 and uncapped["fps"][0] == 2.0


def test_every_rule_records_its_frame_times(clips):
    uniform = decode("uniform:4", [clips["3s12"]], ["video"])
    assert uniform["frame_times"][0] == pytest.approx(np.array([0, 12, 23, 35]) / 12, abs=1e-6)  # linspace(0, 35, 4)
    vr = decode("visionreward", [clips["3s12"]], ["video"])
    assert vr["frame_times"][0] == pytest.approx([0, 1, 2, 35 / 12], abs=1e-6)  # seconds 0..3, the last frame at 3 s


def test_qwen2_5_vl_temporal_positions_follow_the_sampled_rate(demo_model_dir_25, clips):
    """second_per_grid_ts = temporal_patch_size / the rate the frames were taken at."""
    from actors.adapters import load_adapter
    from schemas.job_config import ModelConfig

    out = decode("fps:2:4", [clips["5s10"]], ["video"])
    frames = np.frombuffer(out["frames"][0], np.uint8).reshape(out["frames_shape"][0])
    adapter = load_adapter(ModelConfig(model=str(demo_model_dir_25), device="cpu"), CFG)
    media = adapter.family.prepare_media(MediaInput(frames, "video", fps=float(out["fps"][0]), resized=True))
    kwargs = adapter.family.media_kwargs([media], torch.device("cpu"), torch.float32)
    assert kwargs["second_per_grid_ts"].tolist() == pytest.approx([2 / 0.8])


def test_python_api_reports_the_frames_seen(demo_model_dir_25, clips):
    from jobs.reward_api import ChecklistReward

    with ChecklistReward.load(str(demo_model_dir_25), frames="fps:2", device="cpu") as reward:
        video, image = reward.score("a red fox", [clips["3s12"], clips["img"]])
    assert video.ok and video.frame_times == [0, 0.5, 1, 1.5, 2, 2.5]
    assert image.ok and image.frame_times is None


def test_scores_written_before_the_frame_columns_rescore_with_them_null():
    import pyarrow as pa

    from pipeline.rescore import Rescorer, rescored_schema
    from schemas.checklist_set import all_dimensions, resolve_checklists
    from schemas.scores import scores_schema

    checklists = resolve_checklists(["default"])
    current = scores_schema(all_dimensions(checklists))
    old = pa.schema([f for f in current if f.name not in ("frame_count", "frame_times")])
    q = len(checklists["video"].questions)
    rows = [{"id": "v", "uri": "v.mp4", "media_type": "video", "prompt": "p", "group": "p",
             "checklist": checklists["video"].name, "status": "ok", "p_yes": [0.7] * q}]
    schema = rescored_schema(old, checklists, "{}")
    out = Rescorer(checklists, checklists, schema)(pa.Table.from_pylist(rows, schema=old))
    assert out.schema == schema and out["frame_count"].to_pylist() == [None] and out["score"][0].as_py() == 1.0


def test_a_resumed_output_begun_without_the_frame_columns_goes_on_without_them(tmp_path):
    import fsspec
    import pyarrow.parquet as pq

    from pipeline.score_run import as_written
    from pipeline.assemble import ScoreAssembler
    from tests.scores_fixtures import CHECKLISTS, random_rows, scores_table

    table = scores_table(random_rows(np.random.default_rng(0), 2, (2, 2)))
    (tmp_path / "old" / "scores").mkdir(parents=True)
    (tmp_path / "old" / "_checkpoint").mkdir()
    pq.write_table(table.drop_columns(["frame_count", "frame_times"]), tmp_path / "old" / "scores" / "w0_0-0.parquet")
    pq.write_table(table.select(["id"]), tmp_path / "old" / "_checkpoint" / "w0_0.parquet")
    old = as_written(fsspec.filesystem("file"), str(tmp_path / "old"), table.schema)
    assert old.names == [n for n in table.schema.names if n not in ("frame_count", "frame_times")]
    p = np.full(len(CHECKLISTS["image"].questions), 0.5, np.float32).tobytes()
    batch = {"id": np.array(["a"], object), "uri": np.array(["/a.png"], object),
             "media_type": np.array(["image"], object), "prompt": np.array(["p"], object),
             "group": np.array([None], object), "status": np.array(["ok"], object), "error": np.array([None], object),
             "p_yes": np.array([p], object), "answer_mass": np.array([p], object),
             "frame_times": np.array([np.zeros(0, np.float32)], object)}
    assert ScoreAssembler(CHECKLISTS, old)(batch).schema == old
    assert ScoreAssembler(CHECKLISTS, table.schema)(batch)["frame_count"].to_pylist() == [None]
