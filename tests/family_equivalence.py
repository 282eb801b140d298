"""The checks every family module passes: the engine's fast path against an independent stock forward.

`tests/family_stock.py` builds each (item, question) the way the family's stock processor does and
reads p_yes from `model(**inputs).logits[0, -1]`; the engine packs the questions of several items
behind shared prefixes. They must agree in float32. Two negative controls show the agreement is
not vacuous: the fast path on another image must disagree with the stock p_yes, and so must the
fast path with every question suffix shifted one position on.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from actors.adapters import MediaInput, load_adapter
from actors.adapters import engine as engine_module
from schemas.job_config import DecodeConfig, ModelConfig
from tests.family_stock import stock_p_yes

QUESTIONS = [
    "Is the lighting natural?",
    "Does the image look sharp and clear, without obvious blur or noise?",
    "Is there a cat?",
]
FPS = 2.0


def frames(seed: int, shape: tuple[int, int, int]) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (*shape, 3), dtype=np.uint8)


def adapter(model_dir: Path, **model: object):
    config = ModelConfig(model=str(model_dir), device="cpu", dtype="float32", **model)
    return load_adapter(config, DecodeConfig())


def item(media: str, pixels: np.ndarray) -> MediaInput:
    return MediaInput(pixels, media, fps=FPS if media == "video" else None)


def stock(model_dir: Path, media: str, pixels: np.ndarray, questions=QUESTIONS) -> np.ndarray:
    seconds = [i / FPS for i in range(len(pixels))]
    return np.array([stock_p_yes(model_dir, pixels, media, q, seconds=seconds) for q in questions])


def fast_vs_stock(model_dir: Path, cases: list[tuple[str, np.ndarray]], **model: object) -> float:
    """Max |fast - stock| over all cases scored in ONE call (so items share forwards)."""
    scorer = adapter(model_dir, **model)
    fast = scorer.score([item(m, p) for m, p in cases], [QUESTIONS] * len(cases))
    return max(float(np.abs(f - stock(model_dir, m, p)).max()) for f, (m, p) in zip(fast, cases))


def swapped_media_effect(model_dir: Path, media: str, a: np.ndarray, b: np.ndarray, **model: object) -> float:
    """|fast on b - stock on a|: how far p_yes moves when the media is swapped."""
    fast = adapter(model_dir, **model).score([item(media, b)], [QUESTIONS])[0]
    return float(np.abs(fast - stock(model_dir, media, a)).max())


def shifted_positions_effect(model_dir: Path, media: str, pixels: np.ndarray, monkeypatch, **model: object) -> float:
    """|fast with every suffix one position late - stock|: the positions are really used.
    The engine stays patched until `monkeypatch` is undone (the end of the test)."""
    original = engine_module.ChecklistEngine._prefix_forward

    def late(self, group, lengths):
        prefix = original(self, group, lengths)
        prefix.next_pos = [p + 1 for p in prefix.next_pos]
        return prefix

    monkeypatch.setattr(engine_module.ChecklistEngine, "_prefix_forward", late)
    fast = adapter(model_dir, **model).score([item(media, pixels)], [QUESTIONS])[0]
    return float(np.abs(fast - stock(model_dir, media, pixels)).max())
