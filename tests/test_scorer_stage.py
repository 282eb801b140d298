"""The decode and scorer stages called in process, as Ray Data calls them: frames the decoder
resized are scored at that size, including sizes where resizing twice would change them."""
from __future__ import annotations

import numpy as np
from PIL import Image

from actors.checklist_scorer import ChecklistScorer
from actors.media_decoder import MediaDecoder
from pipeline.score_pipeline import validate_rows
from schemas import status
from schemas.checklist_set import checklists_to_json, resolve_checklists
from schemas.job_config import DecodeConfig, ModelConfig


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
    decode = DecodeConfig()
    decoded = MediaDecoder(decode.model_dump())(batch)
    assert tuple(decoded["frames_shape"][0]) == (1, 28, 5768, 3)
    scorer = ChecklistScorer(ModelConfig(model=str(demo_model_dir), dtype="float32").model_dump(),
                             decode.model_dump(), checklists_to_json(checklists))
    out = scorer(decoded)
    assert list(out["status"]) == [status.OK, status.OK], list(out["error"])
    for raw in out["p_yes"]:
        p = np.frombuffer(raw, dtype=np.float32)
        assert p.shape == (len(checklists["image"].questions),) and np.all((p > 0) & (p < 1))
