"""What the HTML report shows, computed batch by batch (pure pyarrow/numpy, no Ray).

Each batch of scores becomes a small partial (`batch_partial`: JSON-able counts, sums,
histograms on global bin edges and its own top/bottom k items per measure); `merge`
folds any number of partials into the `ReportData` the renderer draws. Only the partials,
never the rows, reach the driver.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from schemas.checklist import Checklist
from schemas.status import OK

ITEM_FIELDS = ("id", "uri", "media_type", "prompt")


@dataclass
class Histogram:
    edges: list[float]
    counts: dict[str, list[int]] = field(default_factory=dict)  # checklist name -> counts per bin
    total: float = 0.0  # sum of values, for the mean
    n: int = 0


@dataclass
class ReportData:
    rows: int = 0
    status_counts: dict[str, int] = field(default_factory=dict)
    error_examples: dict[str, str] = field(default_factory=dict)  # status -> one message
    histograms: dict[str, Histogram] = field(default_factory=dict)  # measure column -> histogram
    yes: dict[str, list[int]] = field(default_factory=dict)  # checklist name -> yes count per question
    p_yes_sum: dict[str, list[float]] = field(default_factory=dict)
    # checklist name -> per-question sum of answer_mass, and the rows it sums (outputs of versions
    # before the column have none)
    mass_sum: dict[str, list[float]] = field(default_factory=dict)
    mass_rows: dict[str, int] = field(default_factory=dict)
    answered: dict[str, int] = field(default_factory=dict)  # checklist name -> ok rows
    # checklist name -> rating question id -> per-level sum of level_probs, and the rows it sums
    level_sum: dict[str, dict[str, list[float]]] = field(default_factory=dict)
    level_rows: dict[str, int] = field(default_factory=dict)
    # checklist name -> measure -> items, best (top) or worst (bottom) first. Per checklist:
    # an image's and a video's scores are not on one scale.
    top: dict[str, dict[str, list[dict]]] = field(default_factory=dict)
    bottom: dict[str, dict[str, list[dict]]] = field(default_factory=dict)


def histogram_edges(lo: float | None, hi: float | None, bins: int = 24) -> list[float]:
    if lo is None or hi is None:
        return []
    if hi <= lo:  # one value: a single bin around it
        lo, hi = lo - 0.5, hi + 0.5
    return np.linspace(lo, hi, bins + 1).tolist()


def batch_partial(batch: pa.Table, edges: dict[str, list[float]], checklists: dict[str, Checklist], k: int) -> dict:
    """The partial report of one batch. `edges`: measure column -> global bin edges;
    `checklists` by name."""
    statuses = batch["status"].to_pylist()
    out: dict = {"rows": batch.num_rows, "status": {}, "examples": {}, "hist": {}, "yes": {}, "mass": {}, "levels": {},
                 "top": {}, "bottom": {}}
    for s, e in zip(statuses, batch["error"].to_pylist()):
        out["status"][s] = out["status"].get(s, 0) + 1
        if s != OK and e and s not in out["examples"]:
            out["examples"][s] = e
    ok = np.array([s == OK for s in statuses], dtype=bool)
    names = np.array(batch["checklist"].to_pylist(), dtype=object)
    values = {c: batch[c].to_numpy(zero_copy_only=False).astype(np.float64) for c in edges}
    for name, checklist in checklists.items():
        rows = np.flatnonzero(ok & (names == name))
        if not len(rows):
            continue
        for col, col_edges in edges.items():
            v = values[col][rows]
            present = ~np.isnan(v)
            if col_edges and present.any():
                counts, _ = np.histogram(np.clip(v[present], col_edges[0], col_edges[-1]), bins=col_edges)
                out["hist"].setdefault(col, {})[name] = [counts.tolist(), float(v[present].sum()), int(present.sum())]
                best, worst = _extremes(batch, rows[present], v[present], k)
                out["top"].setdefault(name, {})[col] = best
                out["bottom"].setdefault(name, {})[col] = worst
        taken = pa.array(rows[np.asarray(pc.is_valid(batch["answers"].take(pa.array(rows))))], type=pa.int64())
        if len(taken):
            n_q = len(checklist.questions)
            answers = pc.list_flatten(batch["answers"].take(taken)).to_numpy(zero_copy_only=False).reshape(-1, n_q)
            p_yes = pc.list_flatten(batch["p_yes"].take(taken)).to_numpy(zero_copy_only=False).reshape(-1, n_q)
            out["yes"][name] = [(answers > 0).sum(axis=0).tolist(), p_yes.astype(np.float64).sum(axis=0).tolist(),
                                len(taken)]
        if "answer_mass" in batch.column_names:
            masses = pc.drop_null(batch["answer_mass"].take(pa.array(rows, type=pa.int64())))
            if len(masses):
                mass = pc.list_flatten(masses).to_numpy(zero_copy_only=False).reshape(len(masses), -1)
                out["mass"][name] = [mass.astype(np.float64).sum(axis=0).tolist(), len(masses)]
        rated = [(i, q.id) for i, q in enumerate(checklist.questions) if q.answer == "rating"]
        if rated and "level_probs" in batch.column_names:
            levels = pc.drop_null(batch["level_probs"].take(pa.array(rows, type=pa.int64()))).to_pylist()
            if levels:
                out["levels"][name] = [{qid: np.sum([r[i] for r in levels], axis=0, dtype=np.float64).tolist()
                                        for i, qid in rated}, len(levels)]
    return out


def _extremes(batch: pa.Table, rows: np.ndarray, values: np.ndarray, k: int) -> tuple[list[dict], list[dict]]:
    """The k best and k worst of `rows` (batch row indices) by `values` (aligned with rows)."""
    ids = np.array(batch["id"].take(pa.array(rows, type=pa.int64())).to_pylist(), dtype=object)
    # Ties broken by id, so the report is the same whichever batch an item arrived in.
    best = np.lexsort((ids, -values))[:k]
    worst = np.lexsort((ids, values))[:k]
    return _items(batch, rows[best], values[best]), _items(batch, rows[worst], values[worst])


def _items(batch: pa.Table, rows: np.ndarray, values: np.ndarray) -> list[dict]:
    picked = batch.select(list(ITEM_FIELDS)).take(pa.array(rows, type=pa.int64())).to_pylist()
    return [{**item, "value": float(v)} for item, v in zip(picked, values)]


def merge(partials: list[dict], edges: dict[str, list[float]], k: int) -> ReportData:
    data = ReportData()
    data.histograms = {c: Histogram(e) for c, e in edges.items() if e}
    for p in partials:
        data.rows += p["rows"]
        for s, n in p["status"].items():
            data.status_counts[s] = data.status_counts.get(s, 0) + n
        for s, e in p["examples"].items():
            data.error_examples.setdefault(s, e)
        for col, by_checklist in p["hist"].items():
            h = data.histograms[col]
            for name, (counts, total, n) in by_checklist.items():
                h.counts[name] = _add(h.counts.get(name), counts)
                h.total, h.n = h.total + total, h.n + n
        for name, (yes, p_sum, n) in p["yes"].items():
            data.yes[name] = _add(data.yes.get(name), yes)
            data.p_yes_sum[name] = _add(data.p_yes_sum.get(name), p_sum)
            data.answered[name] = data.answered.get(name, 0) + n
        for name, (mass_sum, n) in p.get("mass", {}).items():
            data.mass_sum[name] = _add(data.mass_sum.get(name), mass_sum)
            data.mass_rows[name] = data.mass_rows.get(name, 0) + n
        for name, (sums, n) in p.get("levels", {}).items():
            acc = data.level_sum.setdefault(name, {})
            for qid, level_sums in sums.items():
                acc[qid] = _add(acc.get(qid), level_sums)
            data.level_rows[name] = data.level_rows.get(name, 0) + n
        for side, merged in (("top", data.top), ("bottom", data.bottom)):
            for name, by_col in p[side].items():
                for col, items in by_col.items():
                    merged.setdefault(name, {}).setdefault(col, []).extend(items)
    for name in data.top:
        for col in data.top[name]:
            data.top[name][col] = sorted(data.top[name][col], key=lambda it: (-it["value"], it["id"]))[:k]
            data.bottom[name][col] = sorted(data.bottom[name][col], key=lambda it: (it["value"], it["id"]))[:k]
    data.histograms = {c: h for c, h in data.histograms.items() if h.n}
    return data


def mass_means(data: ReportData, checklists: dict[str, Checklist]) -> dict[str, dict[str, float]]:
    """Checklist name -> question id -> mean answer mass over its ok rows that have one."""
    return {name: dict(zip(checklists[name].question_ids, (s / data.mass_rows[name] for s in sums)))
            for name, sums in data.mass_sum.items()}


def level_means(data: ReportData) -> dict[str, dict[str, list[float]]]:
    """Checklist name -> rating question id -> mean probability of each level over its ok rows."""
    return {name: {qid: [v / data.level_rows[name] for v in sums] for qid, sums in by_q.items()}
            for name, by_q in data.level_sum.items()}


def _add(acc: list | None, more: list) -> list:
    return list(more) if acc is None else [a + b for a, b in zip(acc, more)]
