"""Open the output of `vrscore judge` for the downstream jobs (pairs, eval, report).

A judge output is recognised by its `pairs/` folder whose Parquet schema says it is one
(`schemas.judge_output.is_judge_schema`): `vrscore pairs` writes a `pairs/` folder too, of
another schema. `--scores` may name OUT or OUT/pairs. As for scores, only committed files
are read (`pipeline.scores_input.committed_files`) and only the footer is read here.
"""
from __future__ import annotations

import json
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.scores_input import ParquetOutput, committed_files
from pipeline.storage import arrow_filesystem, fsspec_filesystem, join
from schemas.checklist import Checklist
from schemas.judge_output import ITEMS_DIR, PAIRS_DIR, is_judge_schema
from schemas.job_config import StorageConfig
from schemas.scores import META_CHECKLISTS
from schemas.user_error import UserError


@dataclass(frozen=True)
class JudgeInput(ParquetOutput):
    root: str  # OUT
    data_uri: str  # OUT/pairs
    schema: pa.Schema
    checklist: Checklist
    storage: StorageConfig
    files: tuple[str, ...] | None = None  # committed files; None = every file under data_uri

    @property
    def weights(self) -> list[float]:
        """The questions' weights, in the order of the per-question lists."""
        return [q.weight for q in self.checklist.questions]

    @property
    def items_uri(self) -> str:
        return join(self.root, ITEMS_DIR)


def _pairs_dir(uri: str, storage: StorageConfig) -> str | None:
    fs = fsspec_filesystem(uri, storage)
    base = uri.rstrip("/")
    if fs.isdir(join(base, PAIRS_DIR)):
        return join(base, PAIRS_DIR)
    return base if base.rsplit("/", 1)[-1] == PAIRS_DIR and fs.isdir(base) else None


def is_judge_output(uri: str, storage: StorageConfig) -> bool:
    """Whether `uri` (OUT or OUT/pairs) holds the output of `vrscore judge`."""
    data_uri = _pairs_dir(uri, storage)
    if data_uri is None:
        return False
    try:
        schema, _ = _pairs_schema(data_uri, storage)
    except UserError:
        return False
    return is_judge_schema(schema)


def _pairs_schema(data_uri: str, storage: StorageConfig) -> tuple[pa.Schema, tuple[str, ...] | None]:
    """(schema, committed files or None for all) of a pairs folder."""
    files = committed_files(fsspec_filesystem(data_uri, storage), data_uri)
    if files == ():
        raise UserError(f"{data_uri} holds no committed pairs yet (the job is still running, or was stopped "
                        "before it finished a file)")
    arrow_fs, path = arrow_filesystem(data_uri, storage)
    try:
        return pq.ParquetDataset(list(files) if files is not None else path, filesystem=arrow_fs).schema, files
    except (OSError, pa.ArrowInvalid) as exc:
        raise UserError(f"cannot read judged pairs at {data_uri}: {exc}") from exc


def judge_checklist(schema: pa.Schema, where: str) -> Checklist:
    """The pairwise checklist the pairs were judged with (from the schema metadata)."""
    raw = (schema.metadata or {}).get(META_CHECKLISTS)
    if raw is None:
        raise UserError(f"{where}: no checklist in the judge output's metadata")
    data = json.loads(raw)
    found = [data] if "questions" in data else list(data.values())
    checklists = {json.dumps(c, sort_keys=True): Checklist.model_validate(c) for c in found}
    if len(checklists) != 1:
        raise UserError(f"{where}: judged with {len(checklists)} checklists; its pair rows do not say which "
                        "answered them")
    checklist = next(iter(checklists.values()))
    if not any(q.weight for q in checklist.questions):
        raise UserError(f"{where}: every question of checklist {checklist.name!r} weighs 0, so no pair has an outcome")
    return checklist


def open_judged(uri: str, storage: StorageConfig) -> JudgeInput:
    """The judge output at `uri` (OUT or OUT/pairs); UserError when it is not one."""
    data_uri = _pairs_dir(uri, storage)
    if data_uri is None:
        raise UserError(f"{uri}: not a judge output (no pairs/ folder)")
    schema, files = _pairs_schema(data_uri, storage)
    if not is_judge_schema(schema):
        raise UserError(f"{data_uri}: not the pairs of a judge output")
    root = data_uri.rstrip("/").rsplit("/", 1)[0]
    return JudgeInput(root, data_uri, schema, judge_checklist(schema, data_uri), storage, files)
