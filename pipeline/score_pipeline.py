"""Wire the scoring stages into a Ray Data pipeline. The only place that knows about Ray
resources: read -> validate -> decode (CPU actors) -> score (model actors) -> assemble -> write.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import ray
from ray.data import ActorPoolStrategy, DataContext, Dataset

from pipeline.assemble import ScoreAssembler
from pipeline.decode_pool import decode_pool
from pipeline.embedded_source import EmbeddedParquetSource, embedded_columns
from pipeline.manifest_files import Manifest, open_manifest
from pipeline.null_columns import nulls_as_none
from pipeline.parquet_source import ParquetManifestSource, read_as_planned
from pipeline.stage_clock import timed
from pipeline.storage import storage_options
from pipeline.webdataset_source import WebDatasetSource
from schemas import manifest, status
from schemas.checklist import Checklist
from schemas.embedded_media import BYTES_COLUMN, READ_ERROR_COLUMN, MediaColumn, media_column
from schemas.job_config import GENERATED_IDS, JobConfig


@dataclass(frozen=True)
class ManifestInfo:
    manifest: Manifest  # opened once (pipeline/manifest_files.py): every step reads it from here
    columns: list[str]
    schema: pa.Schema  # the columns read, with the types they are read as (manifest.read_schema)
    keep_fields: list[pa.Field]
    id_column: str | None = None  # JobConfig.id_column as resolved (GENERATED_IDS: from file and row)

    @property
    def media(self) -> MediaColumn | None:
        """Where the bytes are, for a manifest that holds them."""
        return self.manifest.media

    @property
    def webdataset(self) -> bool:
        return self.manifest.kind == "webdataset"

    @property
    def rows(self) -> int | None:
        """From the footers (None: unknown, WebDataset); sizes the decode stage's blocks."""
        return self.manifest.rows


def inspect_manifest(cfg: JobConfig, checklists: dict[str, Checklist], opened: Manifest | None = None) -> ManifestInfo:
    """Check the manifest's columns and their types from its Parquet footers, before any work;
    `opened`: the manifest as the job opened it (opened here when not given)."""
    opened = opened or open_manifest(cfg.manifest, cfg.storage, cfg.media_column)
    if opened.kind == "webdataset":
        if cfg.keep_columns or cfg.alignment_column or cfg.media_column or cfg.id_column:
            raise manifest.ManifestError("WebDataset shards have no columns: --keep-columns, --alignment-column, "
                                         "--media-column and --id-column are for Parquet manifests")
        return ManifestInfo(manifest=opened, columns=[], schema=pa.schema([]), keep_fields=[])
    schema, media = opened.schema, opened.media
    needs_prompt = any(c.uses_prompt for c in checklists.values())
    id_column = cfg.id_column
    if media is None:
        if id_column not in (None, "id"):
            raise manifest.ManifestError("--id-column is for manifests that hold the media bytes (--media-column); "
                                         "a manifest of URIs has its ids in 'id'")
        cols = manifest.columns_to_read(
            schema, needs_prompt=needs_prompt, keep_columns=cfg.keep_columns, alignment_column=cfg.alignment_column
        )
    else:
        if id_column is None and "id" not in schema.names:
            id_column = GENERATED_IDS
        cols = embedded_columns(schema, media, id_column, needs_prompt=needs_prompt, keep_columns=cfg.keep_columns,
                                alignment_column=cfg.alignment_column)
    for file in opened.files:
        manifest.check_column_types(file.schema, where=file.path)
        if id_column not in (None, "id", GENERATED_IDS):
            manifest.check_column_types(_as_id(file.schema, id_column), where=file.path)
    return ManifestInfo(manifest=opened, columns=cols, schema=manifest.read_schema(schema, cols),
                        keep_fields=[schema.field(c) for c in cfg.keep_columns], id_column=id_column)


def _as_id(schema: pa.Schema, column: str) -> pa.Schema:
    """A schema with only `column`, named 'id', so it is checked as the ids are."""
    return pa.schema([schema.field(column).with_name("id")])


def read_manifest(cfg: JobConfig, columns: list[str], info: ManifestInfo | None = None) -> Dataset:
    """The manifest's `columns`, read from the files and footers of `info.manifest` (the manifest
    is opened here when no `info` is given): a manifest of URIs by pipeline/parquet_source.py, with
    the types of `manifest.read_schema` (integer ids become strings in the read itself, before Ray
    Data's checkpoint filter compares them with the output's); one that holds the media by
    pipeline/embedded_source.py, and tar shards by pipeline/webdataset_source.py, both in blocks
    sized by bytes."""
    opened = info.manifest if info is not None else open_manifest(cfg.manifest, cfg.storage, cfg.media_column)
    id_column = info.id_column if info is not None else cfg.id_column
    if opened.kind == "webdataset":
        return ray.data.read_datasource(WebDatasetSource(opened.filesystem, opened.paths, opened.root,  # type: ignore[arg-type]
                                                         cfg.prompt_field, cfg.media_extensions, _block_bytes()))
    if opened.kind == "embedded":
        keep = [c for c in columns if c not in (*_EMBEDDED_OWN, opened.media.name, id_column)]  # type: ignore[union-attr]
        return ray.data.read_datasource(EmbeddedParquetSource(opened.files, opened.filesystem, opened.media,  # type: ignore[arg-type]
                                                              id_column, keep, _block_bytes()))
    return read_as_planned(ParquetManifestSource(opened, manifest.read_schema(opened.schema, columns)))


# Columns the embedded source makes itself from the manifest's.
_EMBEDDED_OWN = ("id", "uri", "media_type", "prompt", "group")
_BLOCK_BYTES = 128 * 1024**2


def _block_bytes() -> int:
    """Media bytes per block read from a manifest that holds them: Ray Data's own target."""
    return DataContext.get_current().target_max_block_size or _BLOCK_BYTES


def validate_rows(batch: dict[str, np.ndarray], prompt_needed_for: dict[str, bool]) -> dict[str, np.ndarray]:
    """Per-row checks before any I/O: status/error columns, media_type and group filled in."""
    batch = nulls_as_none(batch)
    n = len(batch["id"])
    none = np.full(n, None, dtype=object)
    media, prompts = batch.get("media_type", none), batch.get("prompt", none)
    out_media, out_status, out_error = (np.empty(n, dtype=object) for _ in range(3))
    data, unreadable = batch.get(BYTES_COLUMN), batch.get(READ_ERROR_COLUMN)
    for i in range(n):
        if unreadable is not None and unreadable[i] is not None:  # the source could not read it (a bad tar)
            out_media[i], out_status[i], out_error[i] = media[i], status.READ_ERROR, unreadable[i]
            continue
        if data is not None:  # the media is in the manifest (schemas/embedded_media.py)
            out_media[i], out_status[i], out_error[i] = manifest.check_embedded_row(
                None if data[i] is None else len(data[i]), media[i], prompts[i], prompt_needed_for)
            continue
        out_media[i], out_status[i], out_error[i] = manifest.check_row(
            batch["uri"][i], media[i], prompts[i], prompt_needed_for
        )
    out = dict(batch)
    out.update(
        id=np.array([str(x) for x in batch["id"]], dtype=object),
        media_type=out_media,
        prompt=np.array(prompts, dtype=object),
        group=np.array([g if g is not None else p for g, p in zip(batch.get("group", none), prompts)], dtype=object),
        status=out_status,
        error=out_error,
    )
    return out


def cluster_shape() -> tuple[float, int]:
    """(logical CPUs, nodes with CPUs) of the Ray cluster this driver is connected to."""
    nodes = [n for n in ray.nodes() if n.get("Alive") and n.get("Resources", {}).get("CPU", 0) > 0]
    return float(ray.cluster_resources().get("CPU", 1.0)), max(1, len(nodes))


def build_score_dataset(cfg: JobConfig, checklists: dict[str, Checklist], info: ManifestInfo,
                        out_schema: pa.Schema, checklists_json: str, ds: Dataset | None = None, *,
                        resuming: bool = False, clock=None) -> Dataset:
    """The lazy dataset of output rows (a pyarrow table per batch, `out_schema`); `resuming`:
    the output holds rows already (Ray Data's checkpoint filter will run); `clock`: a
    StageClock the decode and score stages report their batch times to (pipeline/stage_clock.py)."""
    from actors.checklist_scorer import ChecklistScorer  # heavy imports stay out of the driver's startup
    from actors.media_decoder import MediaDecoder

    if cfg.decode.resize_rule is None:  # the decode stage would not size frames by the model's rule
        raise ValueError("cfg.decode.resize_rule is unresolved: resolve the model's rule on the driver first "
                         "(pipeline.model_family.resolve_decode)")
    res = cfg.resources
    ds = ds if ds is not None else read_manifest(cfg, info.columns, info)
    by_rows = info.media is None and not info.webdataset
    # Rows of a URI manifest (a manifest holding the media comes in blocks sized by bytes, cut
    # by its own source: the decode pool is then sized by the CPUs alone).
    pool = decode_pool(res, *cluster_shape(), rows=info.rows if by_rows else None, resuming=resuming)
    if by_rows:
        # A read gives one block per file, and a block is one task in each stage: small blocks
        # from the start, so that decode has a task for every actor of its pool (a block of
        # `rows_per_file` rows kept a whole job on one decoder).
        ds = ds.repartition(target_num_rows_per_block=pool.block_rows)
    ds = ds.map_batches(
        functools.partial(validate_rows, prompt_needed_for={k: c.uses_prompt for k, c in checklists.items()}),
        batch_format="numpy",
        batch_size=pool.block_rows,
    )
    # Media URIs may live on another filesystem than the manifest: options per protocol.
    media_opts = {p: storage_options(cfg.storage, p) for p in ("s3", "s3a")}
    # The decode dict carries the model's resolved resize rule and factor (DecodeConfig.resize_rule).
    ds = ds.map_batches(
        timed(MediaDecoder, "decode", clock),
        fn_constructor_kwargs={"decode": cfg.decode.model_dump(), "storage_options": media_opts,
                               "threads": pool.threads},
        compute=ActorPoolStrategy(min_size=pool.min_size, max_size=pool.max_size, initial_size=pool.initial_size,
                                  max_tasks_in_flight_per_actor=pool.tasks_in_flight),
        num_cpus=res.decode_cpus,
        batch_size=pool.block_rows,
        batch_format="numpy",
    )
    ds = ds.map_batches(
        timed(ChecklistScorer, "score", clock),
        fn_constructor_kwargs={
            "model": cfg.model.model_dump(),
            "decode": cfg.decode.model_dump(),
            "checklists_json": checklists_json,
            "cpu_threads": res.cpu_threads_per_actor,
            "storage": cfg.storage.model_dump(),
        },
        compute=ActorPoolStrategy(
            min_size=res.scorer_actors, max_size=res.scorer_max_actors or res.scorer_actors,
            max_tasks_in_flight_per_actor=2,
        ),
        # a vLLM engine split over GPUs holds them all: JobConfig makes this model.tensor_parallel_size then
        num_gpus=res.num_gpus_per_actor,
        num_cpus=res.num_cpus_per_actor,
        batch_size=res.batch_size,
        batch_format="numpy",
        # No max_restarts/max_task_retries here: Ray Data's actor pools already restart a
        # dead actor and retry its batches without limit (the crash test holds it to that).
    )
    ds = ds.map_batches(
        ScoreAssembler(checklists, out_schema, cfg.alignment_column),
        batch_format="numpy",
        batch_size=None,
    )
    # Blocks of `rows_per_file` rows -> files of as many: each written file commits its rows
    # for resume. Strict: the small blocks of the stages above are combined, not only split.
    return ds.repartition(target_num_rows_per_block=res.rows_per_file, strict=True)

