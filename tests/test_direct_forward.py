"""The pipeline's p_yes equals a direct single-question forward pass of the same model.

The direct path uses only transformers' stock pieces (chat template, the PIL image
processor, `model(**inputs).logits`), none of vrscore's adapter code, on the same image file.
"""
from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from actors.synthetic_media import write_image
from jobs.score_job import run_score_job
from schemas.checklist import default_checklist
from schemas.job_config import DecodeConfig, JobConfig, ModelConfig, ResourcesConfig
from tests.stock_forward import stock_image_p_yes
from tests.ray_fixtures import ray_session  # noqa: F401  (session fixture)

PROMPT = "a lighthouse on a cliff at sunset"


@pytest.mark.usefixtures("ray_session")
def test_pipeline_p_yes_equals_direct_forward(tmp_path, demo_model_dir):
    # one image already on the 28-pixel grid, one the decoder must resize
    images = {f"x{k}": write_image(tmp_path / f"x{k}.png", size=size, seed=7 + k)
              for k, size in enumerate([(224, 168), (200, 130)])}
    pq.write_table(pa.table({"id": list(images), "uri": [str(p) for p in images.values()],
                             "prompt": [PROMPT] * len(images)}), tmp_path / "m.parquet")
    decode = DecodeConfig(image_min_pixels=56 * 56, image_max_pixels=256 * 28 * 28)
    cfg = JobConfig(manifest=str(tmp_path / "m.parquet"), out=str(tmp_path / "out"), decode=decode,
                    model=ModelConfig(model=str(demo_model_dir), dtype="float32"),
                    resources=ResourcesConfig(batch_size=2))
    run_score_job(cfg, quiet=True)
    rows = {r["id"]: r for r in pq.read_table(tmp_path / "out" / "scores").to_pylist()}

    texts = default_checklist("image").render(PROMPT)
    for id_, path in images.items():
        assert rows[id_]["status"] == "ok", rows[id_]["error"]
        expected = stock_image_p_yes(demo_model_dir, Image.open(path), texts, decode.image_min_pixels,
                                     decode.image_max_pixels)
        np.testing.assert_allclose(np.array(rows[id_]["p_yes"]), expected, atol=2e-5)
        # random weights still give distinct answers per question: the comparison is not vacuous
        assert np.ptp(expected) > 1e-4
