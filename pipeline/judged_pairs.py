"""DPO pairs from judged pairs (`vrscore pairs --scores OUT` on a `vrscore judge` output).

A judged pair becomes a preference pair when it is ok and:
- its soft outcome y (the questions' p_a, weighted by |weight|: pipeline/bradley_terry.py) is
  not 0.5, and its margin |2 y - 1| is at least `min_margin`; chosen is a where y > 0.5;
- both orders agree: every question of non-zero weight is `consistent` (both orders preferred
  the same item). A judge that changes its mind with the order of the two media has told
  us nothing we can train on, whatever its average says.
Written in `schemas/pairs.py`'s layout (group "" for pairs given without one): chosen_score
= y for the chosen item (its probability of being preferred), rejected_score = 1 - y;
gap_<name> is the pair's dim_<name> oriented towards the chosen item (> 0: that dimension
prefers it too).

The uris and media types come from the manifest, joined in the cluster by item id (two
shuffles: by item, then by pair), so neither the manifest nor the pairs reach the driver.
"""
from __future__ import annotations

import functools
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from pipeline.bradley_terry import soft_outcomes
from schemas.pairs import gap_column, pairs_schema
from schemas.status import OK

if TYPE_CHECKING:
    from ray.data import Dataset

UNJOINED = ("chosen_uri", "rejected_uri", "media_type")  # filled by the manifest join
SIDE_SCHEMA = pa.schema([("key", pa.string()), ("pair", pa.string()), ("side", pa.string()),
                         ("uri", pa.string()), ("media_type", pa.string())])


def all_orders_agree(consistent: pa.Array | pa.ChunkedArray, weights: list[float]) -> np.ndarray:
    """Per pair: every question of non-zero weight has both orders preferring the same item."""
    if isinstance(consistent, pa.ChunkedArray):
        consistent = consistent.combine_chunks() if consistent.num_chunks else pa.array([], consistent.type)
    counted = np.abs(np.asarray(weights, dtype=np.float64)) > 0
    lengths = pc.fill_null(pc.list_value_length(consistent), 0).to_numpy(zero_copy_only=False)
    out = np.zeros(len(consistent), dtype=bool)
    full = lengths == len(counted)
    if full.any():
        flat = pc.fill_null(pc.list_flatten(consistent.filter(pa.array(full))), False)
        matrix = flat.to_numpy(zero_copy_only=False).reshape(-1, len(counted))
        out[full] = matrix[:, counted].all(axis=1)
    return out


def dpo_candidates(batch: pa.Table, weights: list[float], min_margin: float, dimension_columns: list[str]) -> pa.Table:
    """The preference pairs of a batch of judged pairs (the module doc's rule), in
    `pairs_schema(dimension_columns)` plus the pair's id (`pair`); uris and media type null."""
    y = soft_outcomes(batch["p_a"], weights)
    ok = np.asarray(pc.fill_null(pc.equal(batch["status"], OK), False), dtype=bool)
    with np.errstate(invalid="ignore"):
        keep = ok & np.isfinite(y) & (y != 0.5) & (np.abs(2 * y - 1) >= min_margin)
    keep &= all_orders_agree(batch["consistent"], weights)
    rows = batch.filter(pa.array(keep))
    y = y[keep]
    a_wins = y > 0.5
    a, b = pc.cast(rows["a"], pa.string()), pc.cast(rows["b"], pa.string())
    mask = pa.array(a_wins)
    schema = pairs_schema(dimension_columns)
    data = {
        "group": pc.fill_null(pc.cast(rows["group"], pa.string()), ""), "prompt": pc.cast(rows["prompt"], pa.string()),
        "media_type": pa.nulls(len(y), pa.string()),
        "chosen_id": pc.if_else(mask, a, b), "rejected_id": pc.if_else(mask, b, a),
        "chosen_uri": pa.nulls(len(y), pa.string()), "rejected_uri": pa.nulls(len(y), pa.string()),
        "chosen_score": pa.array(np.where(a_wins, y, 1 - y)), "rejected_score": pa.array(np.where(a_wins, 1 - y, y)),
    }
    sign = pa.array(np.where(a_wins, 1.0, -1.0))
    for d in dimension_columns:
        data[gap_column(d)] = pc.multiply(pc.cast(rows[d], pa.float64()), sign)
    table = pa.Table.from_pydict({f.name: data[f.name] for f in schema}, schema=schema)
    return table.append_column("pair", pc.cast(rows["id"], pa.string()))


def _sides(batch: pa.Table) -> pa.Table:
    """Two rows per candidate, keyed by item id: which pair needs that item's uri, on which side."""
    n = batch.num_rows
    return pa.table({"key": pa.concat_arrays([batch["chosen_id"].combine_chunks(), batch["rejected_id"].combine_chunks()]),
                     "pair": pa.concat_arrays([batch["pair"].combine_chunks()] * 2),
                     "side": pa.array(["chosen"] * n + ["rejected"] * n, pa.string()),
                     "uri": pa.nulls(2 * n, pa.string()), "media_type": pa.nulls(2 * n, pa.string())},
                    schema=SIDE_SCHEMA)


def _manifest_rows(batch: pa.Table) -> pa.Table:
    n = batch.num_rows
    media = batch["media_type"] if "media_type" in batch.column_names else pa.nulls(n, pa.string())
    return pa.table({"key": pc.cast(batch["id"], pa.string()), "pair": pa.nulls(n, pa.string()),
                     "side": pa.nulls(n, pa.string()), "uri": pc.cast(batch["uri"], pa.string()),
                     "media_type": pc.cast(media, pa.string())}, schema=SIDE_SCHEMA)


def _fill_item(group: pa.Table) -> pa.Table:
    """One item's requests, answered with its manifest row's uri and media type."""
    is_manifest = pc.is_null(group["side"])
    found = group.filter(is_manifest)
    asks = group.filter(pc.invert(is_manifest))
    if not found.num_rows or not asks.num_rows:
        return asks
    n = asks.num_rows
    return asks.set_column(3, "uri", pa.array([found["uri"][0].as_py()] * n, pa.string())).set_column(
        4, "media_type", pa.array([found["media_type"][0].as_py()] * n, pa.string()))


def _assemble(group: pa.Table, schema: pa.Schema) -> pa.Table:
    """One pair's candidate row (side null) with the uris its two side rows found."""
    pair = group.filter(pc.is_null(group["side"])).select(schema.names).cast(schema)
    if pair.num_rows != 1:  # Ray hands an empty block to map_groups when no pair was kept
        return schema.empty_table()
    sides = {r["side"]: r for r in group.filter(pc.is_valid(group["side"])).select(["side", "uri", "media_type"])
             .to_pylist()}
    chosen, rejected = sides.get("chosen", {}), sides.get("rejected", {})
    media = chosen.get("media_type") if chosen.get("media_type") == rejected.get("media_type") else None
    return (pair.set_column(schema.get_field_index("chosen_uri"), "chosen_uri", pa.array([chosen.get("uri")], pa.string()))
            .set_column(schema.get_field_index("rejected_uri"), "rejected_uri",
                        pa.array([rejected.get("uri")], pa.string()))
            .set_column(schema.get_field_index("media_type"), "media_type", pa.array([media], pa.string())))


def _as_union(batch: pa.Table, columns: list[pa.Field]) -> pa.Table:
    """A batch (candidates or answered sides) in the one schema both share for the shuffle."""
    n = batch.num_rows
    return pa.table({f.name: batch[f.name] if f.name in batch.column_names else pa.nulls(n, f.type) for f in columns},
                    schema=pa.schema([f.with_nullable(True) for f in columns]))


def with_manifest_uris(candidates: Dataset, manifest: Dataset, schema: pa.Schema, partitions: int) -> Dataset:
    """`candidates` (dpo_candidates rows) with chosen/rejected uris and the media type from
    `manifest` (id, uri[, media_type]); a pair whose item the manifest lacks keeps a null uri."""
    asks = candidates.select_columns(["chosen_id", "rejected_id", "pair"]).map_batches(_sides, batch_format="pyarrow")
    answered = (asks.union(manifest.map_batches(_manifest_rows, batch_format="pyarrow"))
                .groupby("key", num_partitions=partitions).map_groups(_fill_item, batch_format="pyarrow"))
    union = [*schema, pa.field("pair", pa.string()), pa.field("side", pa.string()), pa.field("uri", pa.string())]
    return (candidates.map_batches(functools.partial(_as_union, columns=union), batch_format="pyarrow")
            .union(answered.map_batches(functools.partial(_as_union, columns=union), batch_format="pyarrow"))
            .groupby("pair", num_partitions=partitions)
            .map_groups(functools.partial(_assemble, schema=schema), batch_format="pyarrow"))
