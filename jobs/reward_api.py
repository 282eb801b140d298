"""Score a handful of images or videos from Python, as `vrscore score` would:

    from jobs.reward_api import ChecklistReward
    rm = ChecklistReward.load("Qwen/Qwen2-VL-2B-Instruct", checklist="default")
    ranked = rm.rank("a red fox in the snow", ["a.png", "b.png", "c.png"])

The media go through the pipeline's own stages in process (no Ray): row checks
(pipeline.score_pipeline.validate_rows), MediaDecoder, ChecklistScorer and ScoreAssembler,
so an item scores here what it scores in a batch job with the same settings (up to float
noise from batching; tests/test_reward_api.py checks it).
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from pipeline.assemble import ScoreAssembler
from pipeline.model_family import resolve_decode
from pipeline.score_pipeline import validate_rows
from pipeline.storage import storage_options
from schemas.checklist import Checklist, dimension_column
from schemas.checklist_set import all_dimensions, checklists_to_json, resolve_checklists
from schemas.job_config import DecodeConfig, ModelConfig, StorageConfig
from schemas.scores import scores_schema, z_column
from schemas.status import OK


@dataclass(frozen=True)
class ItemScore:
    index: int  # position in the list given to score()/rank()
    uri: str
    media_type: str | None
    status: str  # "ok" or a failure kind (schemas/status.py)
    error: str | None
    score: float | None
    score_soft: float | None
    checklist: str | None = None
    dimensions: dict[str, float] = field(default_factory=dict)  # dimension name -> score
    p_yes: dict[str, float] = field(default_factory=dict)  # question id -> p_yes
    # question id -> P(yes words) + P(no words) over the whole vocabulary (README: answer mass)
    answer_mass: dict[str, float] = field(default_factory=dict)
    # rating question id -> {level word: probability}, worst to best (its p_yes is the expected value)
    level_probs: dict[str, dict[str, float]] = field(default_factory=dict)
    # with a normalised checklist (`rescore --normalize-from`): the score's and each dimension's z-score
    z_score: float | None = None
    z_dimensions: dict[str, float] = field(default_factory=dict)
    p_cal: dict[str, float] = field(default_factory=dict)  # calibrated question id -> p_cal (README: calibrate)
    rank: int | None = None  # 1 = best; set by rank(), None for failed items
    frame_times: list[float] | None = None  # seconds of the video frames the model saw; None for images

    @property
    def ok(self) -> bool:
        return self.status == OK


class ChecklistReward:
    """A loaded checklist reward model. Build it with `load`; reuse it for many calls."""

    def __init__(self, checklists: dict[str, Checklist], model: ModelConfig, decode: DecodeConfig,
                 storage: StorageConfig | None = None):
        from actors.checklist_scorer import ChecklistScorer  # torch + transformers: only when used
        from actors.media_decoder import MediaDecoder

        storage = storage or StorageConfig()
        decode = resolve_decode(model, decode, storage)  # the model's resize rule, as `vrscore score` does
        self.checklists = checklists
        checklists_json = checklists_to_json(checklists)
        self._decoder = MediaDecoder(decode.model_dump(), {p: storage_options(storage, p) for p in ("s3", "s3a")})
        self._scorer = ChecklistScorer(model.model_dump(), decode.model_dump(), checklists_json,
                                       storage=storage.model_dump())
        self._schema = scores_schema(all_dimensions(checklists), checklists_json=checklists_json, model_id=model.model,
                                     level_probs=any(c.has_ratings for c in checklists.values()),
                                     p_cal=any(c.has_calibration for c in checklists.values()),
                                     normalized=any(c.aggregation.normalization for c in checklists.values()))
        self._assembler = ScoreAssembler(checklists, self._schema)

    @classmethod
    def load(cls, model: str, checklist: str | list[str] = "default", *, device: str = "auto", dtype: str = "auto",
             frames: str = "uniform:8", weights: list[str] | None = None, dimensions: str | None = None,
             storage: StorageConfig | None = None, **model_options) -> "ChecklistReward":
        """`model`: transformers id, local path or fsspec URI. `checklist`: as `vrscore score --checklist`
        ('default', YAML/JSON files, VisionReward *_qa.txt with `weights`). Other ModelConfig
        fields (share_prefix, token_budget, ...) go in `model_options`."""
        specs = [checklist] if isinstance(checklist, str) else list(checklist)
        return cls(resolve_checklists(specs, weights, dimensions),
                   ModelConfig(model=model, device=device, dtype=dtype, **model_options),
                   DecodeConfig(frames=frames), storage)

    def score(self, prompt: str | None, media: list[str | Path] | str | Path) -> list[ItemScore]:
        """One result per item, in input order; a failed item has its status and error."""
        uris = [str(m) for m in ([media] if isinstance(media, (str, Path)) else media)]
        n = len(uris)
        if n == 0:
            return []
        batch = {
            "id": np.array([str(i) for i in range(n)], dtype=object),
            "uri": np.array(uris, dtype=object),
            "prompt": np.array([prompt] * n, dtype=object),
        }
        batch = validate_rows(batch, {kind: c.uses_prompt for kind, c in self.checklists.items()})
        table = self._assembler(self._scorer(self._decoder(batch)))
        by_name = {c.name: c for c in self.checklists.values()}
        return [_item(i, row, by_name) for i, row in enumerate(table.to_pylist())]

    def rank(self, prompt: str | None, media: list[str | Path], by: str = "score") -> list[ItemScore]:
        """Results best first by `by` ('score' or 'score_soft'; ties keep input order), with
        `rank` set; failed items come last with rank None. All items must be of one kind."""
        if by not in ("score", "score_soft"):
            raise ValueError(f"by must be 'score' or 'score_soft', got {by!r}")
        results = self.score(prompt, media)
        used = sorted({r.checklist for r in results if r.ok})
        if len(used) > 1:
            raise ValueError(f"the items were scored with different checklists {used} (images and videos?): "
                             "their scores are not on one scale; rank each media kind separately")
        ranked = sorted((r for r in results if r.ok), key=lambda r: (-getattr(r, by), r.index))
        out = [replace(r, rank=k + 1) for k, r in enumerate(ranked)]
        return out + [r for r in results if not r.ok]

    def close(self) -> None:
        self._decoder.close()

    def __enter__(self) -> "ChecklistReward":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _item(index: int, row: dict, checklists: dict[str, Checklist]) -> ItemScore:
    checklist = checklists.get(row["checklist"])
    dims, p_yes, mass, levels, z_dims, p_cal = {}, {}, {}, {}, {}, {}
    if checklist is not None and row["status"] == OK:
        dims = {d: row[dimension_column(d)] for d in checklist.dimensions}
        p_yes = dict(zip(checklist.question_ids, row["p_yes"]))
        mass = dict(zip(checklist.question_ids, row["answer_mass"]))
        p_cal = {q: v for q, v in zip(checklist.question_ids, row.get("p_cal") or []) if v is not None}
        stored = row.get("level_probs") or []  # only where the checklist rates
        levels = {q.id: dict(zip(q.levels, probs)) for q, probs in zip(checklist.questions, stored) if probs is not None}
        if checklist.aggregation.normalization is not None:
            z_dims = {d: row[z_column(dimension_column(d))] for d in checklist.dimensions}
    return ItemScore(index=index, uri=row["uri"], media_type=row["media_type"], status=row["status"],
                     error=row["error"], score=row["score"], score_soft=row["score_soft"],
                     checklist=row["checklist"], dimensions=dims, p_yes=p_yes, answer_mass=mass, p_cal=p_cal,
                     level_probs=levels,
                     z_score=row.get("z_score") if z_dims else None, z_dimensions=z_dims,
                     frame_times=row["frame_times"])
