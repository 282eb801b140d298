"""One equivalence check for every family module: the engine's fast path against the stock p_yes
of `tests/family_stock.py` (stock processor for images, the stock processor code's layout for
videos, `model(**inputs).logits`), float32, images of three aspect ratios and videos of 1, 2 and 9
frames, with two negative controls: shifted suffix positions and a swapped image."""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np

from actors.adapters import MediaInput, load_adapter
from schemas.job_config import DecodeConfig, ModelConfig
from tests.family_stock import stock_p_yes

TOL = 1e-4
QUESTIONS = [
    "Is the image clear?",
    "Does the video meet all the requirements stated in the text \"a red fox running through snow\"?",
    "Yes or no?",
]


def check_family(model_dir: Path, decode: DecodeConfig, image_sizes: list[tuple[int, int]],
                 video_size: tuple[int, int], token_budget: int = 16384) -> None:
    """`image_sizes` (height, width): three aspect ratios, resized by the stock image processor and
    by the family alike; `video_size`: a size both the family and the stock layout keep as it is."""
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, (1, h, w, 3), dtype=np.uint8) for h, w in image_sizes]
    videos = [rng.integers(0, 256, (t, *video_size, 3), dtype=np.uint8) for t in (1, 2, 9)]
    items = [MediaInput(f, "image") for f in images] + [MediaInput(f, "video", fps=2.0) for f in videos]
    # videos sampled at 2 frames a second from 0: the stock layout's default times
    expected = [np.array([stock_p_yes(model_dir, it.frames, it.media_type, q) for q in QUESTIONS]) for it in items]
    adapter = load_adapter(ModelConfig(model=str(model_dir), device="cpu", dtype="float32",
                                       token_budget=token_budget), decode)
    fast = adapter.score(items, [QUESTIONS] * len(items))
    for got, want, item in zip(fast, expected, items):
        np.testing.assert_allclose(got, want, atol=TOL, rtol=0, err_msg=f"{item.media_type} {item.frames.shape}")
    assert np.ptp(np.concatenate(expected)) > 20 * TOL  # answers differ: agreement is not vacuous

    # negative control 1: the first image's questions about the second image
    swapped = adapter.score([items[1]], [QUESTIONS])[0]
    assert np.abs(swapped - expected[0]).max() > 10 * TOL
    # negative control 2: every suffix one position later (attention-only models; a recurrent
    # model's suffix positions are checked by the same fast-path agreement)
    if not adapter.stateful:
        original = adapter._prefix_forward

        def shifted(*args, **kwargs):
            prefix = original(*args, **kwargs)
            return replace(prefix, next_pos=[p + 1 for p in prefix.next_pos])

        adapter._prefix_forward = shifted
        moved = adapter.score(items, [QUESTIONS] * len(items))
        assert max(np.abs(m - e).max() for m, e in zip(moved, expected)) > 10 * TOL
