"""Wire the judge stages into a Ray Data pipeline: the plan (OUT/plan/) -> units -> decode each
unit's items once (CPU actors; from a manifest that holds the media, the unit's items are read
back there first, pipeline/media_readback.py) -> judge both orders (model actors) -> pair_score -> write.

Pairs of a unit meet in one `map_groups` call (a shuffle of the plan's small rows, never of media);
the decoded unit then travels as one row to the judge.
"""
from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from ray.data import ActorPoolStrategy, Dataset

from pipeline.decode_pool import decode_pool
from pipeline.media_readback import MediaReadback, MediaSource
from pipeline.parquet_reader import read_parquet
from pipeline.score_pipeline import cluster_shape
from pipeline.storage import arrow_filesystem, storage_options
from pipeline.weighting import aggregate
from schemas.checklist import Checklist
from schemas.job_config import JobConfig
from schemas.judge_output import QUESTION_FIELDS
from schemas.scores import dimension_columns
from schemas.status import OK


class PairAssembler:
    """Adds `pair_score` and `dim_<name>` (pipeline/weighting.py, with p_a in place of p_yes: the
    feature 2 p_a - 1 is what `score_soft` takes) and casts to the output schema."""

    def __init__(self, checklist: Checklist, schema: pa.Schema):
        self.checklist, self.schema = checklist, schema
        self.dim_cols = dimension_columns(checklist.dimensions)

    def __call__(self, batch: pa.Table) -> pa.Table:
        n = batch.num_rows
        ok = np.asarray(pc.fill_null(pc.equal(batch["status"], OK), False), dtype=bool)
        score = np.full(n, np.nan)
        dims = {name: np.full(n, np.nan) for name in self.dim_cols}
        if ok.any():
            p_a = np.array([batch["p_a"][i].as_py() for i in np.flatnonzero(ok)], dtype=np.float64)
            agg = aggregate(self.checklist, p_a, soft_dimensions=True)
            score[ok] = agg.score_soft  # each question's feature is 2 p_a - 1
            for name in self.dim_cols:
                dims[name][ok] = agg.dimensions[name]
        columns = {name: batch[name] for name in batch.column_names}
        columns["pair_score"] = pa.array(score, mask=~ok)
        for name, col in self.dim_cols.items():
            columns[col] = pa.array(dims[name], mask=~ok)
        return pa.table({f.name: columns[f.name] for f in self.schema}, schema=self.schema)


def build_judge_dataset(cfg: JobConfig, checklist: Checklist, plan_path: str, out_schema: pa.Schema, *,
                        resuming: bool = False, unit_partitions: int | None = None,
                        media: MediaSource | None = None) -> Dataset:
    """The lazy dataset of output pair rows (`out_schema`) of the plan at `plan_path` (OUT/plan/);
    `unit_partitions`: the shuffle partitions that gather units (pipeline/judge_plan.py); `media`:
    the manifest that holds the media, read back per unit (None: a manifest of URIs)."""
    from actors.pair_judge import PairJudge  # heavy imports stay out of the driver's startup
    from actors.pair_units import UnitDecoder

    if cfg.decode.resize_rule is None:
        raise ValueError("cfg.decode.resize_rule is unresolved: resolve the model's rule on the driver first")
    res = cfg.resources
    fs, path = arrow_filesystem(plan_path, cfg.storage)
    ds = read_parquet(path, fs)
    pool = decode_pool(res, *cluster_shape(), rows=None, resuming=resuming)
    media_opts = {p: storage_options(cfg.storage, p) for p in ("s3", "s3a")}
    ds = ds.groupby("unit", num_partitions=unit_partitions).map_groups(
        UnitDecoder,
        fn_constructor_kwargs={"decode": cfg.decode.model_dump(), "storage_options": media_opts,
                               "threads": pool.threads,
                               "media": None if media is None else MediaReadback(media, cfg.storage)},
        compute=ActorPoolStrategy(min_size=pool.min_size, max_size=pool.max_size),
        num_cpus=res.decode_cpus,
        batch_format="pyarrow",
    )
    ds = ds.map_batches(
        PairJudge,
        fn_constructor_kwargs={"model": cfg.model.model_dump(), "decode": cfg.decode.model_dump(),
                               "checklist_json": checklist.model_dump_json(),
                               "cpu_threads": res.cpu_threads_per_actor, "storage": cfg.storage.model_dump()},
        compute=ActorPoolStrategy(min_size=res.scorer_actors, max_size=res.scorer_max_actors or res.scorer_actors,
                                  max_tasks_in_flight_per_actor=2),
        num_gpus=res.num_gpus_per_actor,
        num_cpus=res.num_cpus_per_actor,
        batch_size=1,  # one unit per call: its pairs already fill forwards under the token budget
        batch_format="pyarrow",
    )
    ds = ds.map_batches(PairAssembler(checklist, out_schema), batch_format="pyarrow", batch_size=None)
    return ds.repartition(target_num_rows_per_block=res.rows_per_file, strict=True)


__all__ = ["PairAssembler", "QUESTION_FIELDS", "build_judge_dataset"]
