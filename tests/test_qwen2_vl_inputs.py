"""Our numpy/PIL input preparation against transformers' stock Qwen2-VL processors."""
from __future__ import annotations

import importlib.util

import numpy as np
import pytest
from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil
from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import smart_resize as stock_smart_resize

from actors.adapters.packing import common_prefix_length, pack_forwards
from actors.adapters.qwen2_vl_inputs import VisionSpec, prepare_visual, smart_resize

pytestmark = pytest.mark.equivalence  # run again on the lowest supported transformers (.ci/run)

MIN_PIXELS, MAX_PIXELS = 56 * 56, 160 * 160


@pytest.fixture(scope="module")
def spec(demo_model_dir) -> VisionSpec:
    return VisionSpec.from_json(demo_model_dir / "preprocessor_config.json")


@pytest.fixture(scope="module")
def stock_images(demo_model_dir) -> Qwen2VLImageProcessorPil:
    return Qwen2VLImageProcessorPil.from_pretrained(
        demo_model_dir, min_pixels=MIN_PIXELS, max_pixels=MAX_PIXELS)


def _frames(rng: np.random.Generator, t: int, h: int, w: int) -> np.ndarray:
    return rng.integers(0, 256, (t, h, w, 3), dtype=np.uint8)


def test_smart_resize_is_the_stock_arithmetic():
    rng = np.random.default_rng(0)
    for h, w in [(28, 28), (1, 150), (57, 101), (1080, 1920), *rng.integers(10, 3000, (200, 2)).tolist()]:
        assert smart_resize(h, w, 28, MIN_PIXELS, MAX_PIXELS) == stock_smart_resize(h, w, 28, MIN_PIXELS, MAX_PIXELS)
    assert smart_resize(56, 84, 56, MIN_PIXELS, MAX_PIXELS) == (56, 112)


@pytest.mark.parametrize("size", [(56, 84), (112, 56), (57, 101), (300, 200), (20, 30)],
                         ids=["valid", "valid-portrait", "resized", "downscaled", "upscaled"])
def test_image_prep_equals_the_stock_image_processor(spec, stock_images, size):
    image = _frames(np.random.default_rng(1), 1, *size)
    stock = stock_images(images=[image[0]], return_tensors="np")
    ours = prepare_visual(image, spec, MIN_PIXELS, MAX_PIXELS)
    assert ours.grid_thw == tuple(stock["image_grid_thw"][0])
    np.testing.assert_array_equal(ours.pixel_values, stock["pixel_values"])
    assert ours.num_tokens == np.prod(ours.grid_thw) // spec.merge_size**2


def test_a_video_of_one_repeated_frame_equals_that_image(spec, stock_images):
    """The stock image processor repeats an image over the temporal patch: a video of that frame
    repeated must give the same patches (checks the temporal axis sits where the stock one does)."""
    frame = _frames(np.random.default_rng(2), 1, 84, 56)
    stock = stock_images(images=[frame[0]], return_tensors="np")["pixel_values"]
    for repeats in (1, 2):  # 1: padded with its own last frame
        video = prepare_visual(np.repeat(frame, repeats, axis=0), spec, MIN_PIXELS, MAX_PIXELS)
        np.testing.assert_array_equal(video.pixel_values, stock)


def test_video_frames_land_on_their_temporal_slots_and_odd_lengths_repeat_the_last(spec):
    t, tp, p = 5, spec.temporal_patch_size, spec.patch_size
    # frame k is a constant image of grey level 40*k: each patch column block then tells its frame
    video = np.stack([np.full((56, 84, 3), 40 * k, np.uint8) for k in range(t)])
    out = prepare_visual(video, spec, MIN_PIXELS, MAX_PIXELS)
    gt, gh, gw = out.grid_thw
    assert (gt, gh, gw) == (3, 4, 6) and out.num_tokens == 3 * 4 * 6 // 4
    patches = out.pixel_values.reshape(gt, gh * gw, 3, tp, p, p)
    mean, std = np.array(spec.image_mean), np.array(spec.image_std)
    for slot in range(gt * tp):
        level = 40 * min(slot, t - 1)  # slot 5 is padding: a copy of frame 4
        expected = (level / 255 - mean) / std
        got = patches[slot // tp, :, :, slot % tp]  # (tokens, channel, y, x)
        np.testing.assert_allclose(got, np.broadcast_to(expected[None, :, None, None], got.shape), atol=1e-5)


def test_resize_factor_must_be_a_multiple_of_patch_times_merge(spec):
    frames = _frames(np.random.default_rng(3), 1, 56, 56)
    assert prepare_visual(frames, spec, MIN_PIXELS, MAX_PIXELS, resize_factor=56).grid_thw == (1, 4, 4)
    with pytest.raises(ValueError, match="multiple"):
        prepare_visual(frames, spec, MIN_PIXELS, MAX_PIXELS, resize_factor=32)


def test_common_prefix():
    seqs = [np.array([1, 2, 3, 4]), np.array([1, 2, 3, 5, 6]), np.array([1, 2, 7])]
    assert common_prefix_length(seqs) == 2
    # identical sequences keep one token each for the answer position
    assert common_prefix_length([np.array([1, 2, 3])] * 2) == 2
    assert common_prefix_length([np.array([1, 2, 3]), np.array([1, 2, 3, 4])]) == 2


def test_pack_forwards_respects_the_budget_and_covers_every_question_once():
    rng = np.random.default_rng(4)
    prefix = rng.integers(50, 400, 30).tolist()
    suffix = [rng.integers(1, 40, rng.integers(0, 8)).tolist() for _ in range(30)]
    budget = 1000
    forwards = pack_forwards(prefix, suffix, budget)
    done = sorted((i, q) for f in forwards for chunk in f.chunks for i, qs in chunk.items() for q in qs)
    assert done == [(i, q) for i in range(30) for q in range(len(suffix[i]))]
    assert [i for f in forwards for i in f.items] == [i for i in range(30) if suffix[i]]
    assert any(len(f.items) > 1 for f in forwards)
    for f in forwards:
        p = max(prefix[i] for i in f.items)
        for chunk in f.chunks:
            longest = max(sum(suffix[i][q] for q in qs) for i, qs in chunk.items())
            # within budget, unless one question alone does not fit next to its prefix
            assert len(chunk) * (p + longest) <= budget or sum(len(qs) for qs in chunk.values()) == 1


def test_an_item_over_the_budget_gets_its_questions_chunked():
    forwards = pack_forwards([1000, 10], [[20] * 10, [5]], token_budget=1070)
    assert [f.items for f in forwards] == [[0], [1]]
    # 70 tokens of room next to the 1000-token prefix: three 20-token questions per chunk
    assert [c[0] for c in forwards[0].chunks] == [[0, 1, 2], [3, 4, 5], [6, 7, 8], [9]]
    assert forwards[1].chunks == [{1: [0]}]


@pytest.mark.gpu
@pytest.mark.skipif(importlib.util.find_spec("torchvision") is None, reason="the stock video processor needs torchvision")
@pytest.mark.parametrize("shape", [(5, 56, 84), (4, 112, 56), (3, 57, 101), (24, 224, 224)],
                         ids=["odd-valid", "even-valid", "odd-resized", "24x224"])
def test_video_prep_agrees_with_the_stock_video_processor(spec, shape):
    from transformers.models.qwen2_vl.video_processing_qwen2_vl import Qwen2VLVideoProcessor

    stock = Qwen2VLVideoProcessor(size={"shortest_edge": MIN_PIXELS, "longest_edge": 224 * 224},
                                  image_mean=list(spec.image_mean), image_std=list(spec.image_std))
    video = _frames(np.random.default_rng(5), *shape)
    expected = stock(videos=[video], return_tensors="np", do_sample_frames=False, cap_pixels_per_frame=False)
    ours = prepare_visual(video, spec, MIN_PIXELS, 224 * 224)
    assert ours.grid_thw == tuple(expected["video_grid_thw"][0])
    diff = np.abs(ours.pixel_values - expected["pixel_values_videos"])
    if smart_resize(shape[1], shape[2], spec.factor, MIN_PIXELS, 224 * 224) == shape[1:]:
        assert diff.max() < 1e-5  # no resize: the same arithmetic up to float32 rounding
    else:
        # PIL's and torchvision's antialiased bicubic filters differ by a grey level here and there
        assert diff.mean() < 0.01 and np.quantile(diff, 0.99) < 0.05


@pytest.mark.parametrize("size,bounds", [((29, 5771), None), ((15, 2250), (56 * 56, 64 * 28 * 28))],
                         ids=["ratio-199-rounds-to-206", "floor-above-max-pixels"])
def test_decoded_frames_are_not_resized_twice(demo_model_dir, spec, size, bounds):
    """At the rule's edges a resized frame is not a fixed point of the rule. The decode stage
    resizes once from the source, as the stock processor does; the adapter must take its
    frames as they are, or the model sees other pixels than stock (or the item fails)."""
    import io

    from PIL import Image

    from actors.frame_decode import decode_image
    from schemas.job_config import DecodeConfig

    cfg = DecodeConfig(resize_rule="smart_resize", resize_factor=28)  # the model's, as `vrscore score` resolves it
    if bounds is not None:
        cfg = cfg.model_copy(update={"image_min_pixels": bounds[0], "image_max_pixels": bounds[1]})
    buf = io.BytesIO()
    Image.fromarray(_frames(np.random.default_rng(5), 1, *size)[0]).save(buf, "PNG")
    frames = decode_image(buf.getvalue(), cfg).frames
    stock = Qwen2VLImageProcessorPil.from_pretrained(
        demo_model_dir, min_pixels=cfg.image_min_pixels, max_pixels=cfg.image_max_pixels,
    )(images=[Image.open(buf).convert("RGB")], return_tensors="np")
    ours = prepare_visual(frames, spec, cfg.image_min_pixels, cfg.image_max_pixels, already_resized=True)
    assert ours.grid_thw == tuple(stock["image_grid_thw"][0])
    np.testing.assert_allclose(ours.pixel_values, stock["pixel_values"], atol=1e-5)
    # the same frames resized again would not be what the stock processor gives
    try:
        again = prepare_visual(frames, spec, cfg.image_min_pixels, cfg.image_max_pixels).grid_thw
    except ValueError:
        again = None
    assert again != ours.grid_thw


def test_frames_marked_resized_must_sit_on_the_grid(spec):
    with pytest.raises(ValueError, match="not multiples of the resize factor 28"):
        prepare_visual(_frames(np.random.default_rng(0), 1, 57, 56), spec, MIN_PIXELS, MAX_PIXELS, already_resized=True)
