"""Where a run's time went: the stage that bound it, from Ray Data's own statistics.

Per stage (read, decode, score, write): `busy_fraction`, the share of the stage's worker
time spent inside its tasks, from the stage's first task to the end of the run;
`rows_per_s`, rows out over the stage's active span; and `parallelism`, its task-seconds
per second of that span (how many tasks ran at once on average: for decode, how many
actors were decoding). Busy time is Ray Data's per-operator task wall time
(`Dataset.get_stats_summary()`); the time available is the actor pool's actor-seconds in
that window (actor lifetimes), or for the read and
write tasks one CPU per node (what the decode pool leaves them). A pool idles when its input
is late or its output is held back, so the busiest stage is the one the others waited for;
the scorers' idle share is their time waiting for frames. Counting from a stage's first batch
leaves model loading out. `window_s` is the stage's [first, last] batch in seconds from the
run's start; `decode_actors_max` the largest decode pool the run reached.

On one node the windows come from Ray Data's block timestamps and the actors' lifetimes from
Ray's actor table. On several nodes the block timestamps (each node's monotonic clock) are not
comparable: the pool stages' windows and actors are then what the stages report themselves, in
wall-clock time (pipeline/stage_clock.py), each actor counted from when it was ready to the end
of the run; the read and write stages are given the run's own span.
"""
from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field
from typing import Any

import fsspec

STAGES = ("read", "decode", "score", "write")
STATS_FILE = "stats.json"
_POOL_CLASS = {"decode": "MediaDecoder", "score": "ChecklistScorer"}


def stage_of(operator_name: str) -> str | None:
    """The stage a Ray Data operator belongs to (None: repartition, assemble and such)."""
    if "MediaDecoder" in operator_name:
        return "decode"
    if "ChecklistScorer" in operator_name:
        return "score"
    if "Write" in operator_name:
        return "write"
    if "Read" in operator_name or "ListFiles" in operator_name:
        return "read"
    return None


@dataclass
class StageTime:
    busy_s: float = 0.0
    rows: int = 0
    start: float = math.inf  # epoch seconds
    end: float = -math.inf
    actor_spans: list[tuple[float, float]] = field(default_factory=list)  # epoch (ready, end of the run)
    working_spans: list[tuple[float, float]] = field(default_factory=list)  # epoch (ready, last batch end)


def max_overlap(spans: list[tuple[float, float]]) -> int:
    """The most spans alive at one instant."""
    events = sorted([(s, 1) for s, _ in spans] + [(e, -1) for _, e in spans])
    best = alive = 0
    for _, step in events:
        alive += step
        best = max(best, alive)
    return best


def _overlap(span: tuple[float, float], lo: float, hi: float) -> float:
    return max(0.0, min(span[1], hi) - max(span[0], lo))


def stage_figures(stages: dict[str, StageTime], nodes: int, run_end: float,
                  run_start: float | None = None) -> dict[str, dict[str, Any]]:
    """{stage: {busy_fraction, rows_per_s, parallelism[, window_s]}} for the stages that ran;
    `window_s` (from `run_start`, when given) is the stage's window in seconds from the run's start."""
    out = {}
    for name in STAGES:
        t = stages.get(name)
        if t is None or t.end <= t.start:
            continue
        if name in _POOL_CLASS and t.actor_spans:
            available = sum(_overlap(s, t.start, run_end) for s in t.actor_spans)
        else:
            available = (run_end - t.start) * max(1, nodes)
        out[name] = {"busy_fraction": round(min(1.0, t.busy_s / available) if available > 0 else 0.0, 3),
                     "rows_per_s": round(t.rows / (t.end - t.start), 3),
                     "parallelism": round(t.busy_s / (t.end - t.start), 2)}
        if run_start is not None:
            out[name]["window_s"] = [round(t.start - run_start, 2), round(t.end - run_start, 2)]
    return out


_HINTS = {
    "decode": "decode-bound: scorers idle {idle:.0%} waiting for frames; add CPUs or raise "
              "resources.decode_actors, or sample fewer frames (decode.frames, decode.video_max_pixels)",
    "score": "score-bound: scorers busy {busy:.0%}; add GPUs (resources.scorer_actors) or tune "
             "resources.batch_size / model.token_budget",
    "read": "read-bound: the manifest read is the slowest stage; split the manifest into more files",
    "write": "write-bound: writing Parquet is the slowest stage; check the output store",
}


def bound_stage(figures: dict[str, dict[str, float]]) -> tuple[str | None, str]:
    """(stage, hint): the busiest stage, the others having waited for it."""
    if not figures:
        return None, "no stage ran (nothing left to score)"
    stage = max(figures, key=lambda s: figures[s]["busy_fraction"])
    busy = figures.get("score", {}).get("busy_fraction", 0.0)
    return stage, _HINTS[stage].format(idle=1 - busy, busy=busy)


def collect(summary: Any, run_start: float, run_end: float, nodes: int, clock: dict | None = None,
            actors: list[dict] | None = None) -> dict[str, StageTime]:
    """Per-stage times from a `DatasetStatsSummary`, and on several nodes the pool stages' own
    record (`clock`, as `StageClock.read()` gives it: windows and actor spans in epoch seconds,
    pipeline/stage_clock.py); on one node Ray's actor table (`actors`: dicts with ActorClassName,
    StartTime and EndTime in ms, as `ray._private.state.actors()`), whose EndTime is when the pool
    let an idle actor go."""
    offset = time.time() - time.perf_counter()  # block timestamps are the workers' perf_counter
    stages: dict[str, StageTime] = {}
    todo = [summary]
    while todo:
        s = todo.pop()
        todo += list(s.parents)
        for op in s.operators_stats:
            name = stage_of(op.operator_name)
            if name is None or op.wall_time is None:
                continue
            t = stages.setdefault(name, StageTime())
            t.busy_s += op.wall_time.sum
            # A write's output rows are its files' summaries: count the rows it took in.
            rows = op.total_input_num_rows if name == "write" else (op.output_num_rows and op.output_num_rows.sum)
            t.rows = max(t.rows, int(rows or 0))
            start = (op.earliest_start_time or 0) + offset
            end = (op.latest_end_time or 0) + offset
            if nodes > 1 or not run_start - 1 <= start <= end <= run_end + 1:
                start, end = run_start, run_end  # clocks not comparable: the run's span
            t.start, t.end = min(t.start, start), max(t.end, end)
    if actors is not None:
        for name, cls in _POOL_CLASS.items():
            spans = [(a["StartTime"] / 1000, (a["EndTime"] / 1000) or run_end) for a in actors
                     if cls in str(a.get("ActorClassName", "")) and a["StartTime"] / 1000 >= run_start - 1]
            stages.setdefault(name, StageTime()).actor_spans = spans
        return stages
    clock = clock or {}
    for name, (start, end) in clock.get("windows", {}).items():
        if name in stages:  # the stage's own wall-clock window, right on any number of nodes
            stages[name].start, stages[name].end = start, end
    for name in _POOL_CLASS:
        t = stages.setdefault(name, StageTime())
        # an actor is available from when it was ready to the end of the run, as the figures count
        t.actor_spans = [(ready, run_end) for ready, _ in clock.get("actors", {}).get(name, [])]
        t.working_spans = [(ready, last) for ready, last in clock.get("actors", {}).get(name, [])]
    return stages


def run_entry(stages: dict[str, StageTime], nodes: int, run_start: float, run_end: float) -> dict[str, Any]:
    """One `runs` entry of stats.json."""
    figures = stage_figures(stages, nodes, run_end, run_start)
    stage, hint = bound_stage(figures)
    decode = stages.get("decode")
    return {"finished_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "seconds": round(run_end - run_start, 2),
            "rows": stages["score"].rows if "score" in stages else 0, "bound_stage": stage, "hint": hint, "stages": figures,
            "decode_actors_max": max_overlap(_spans(decode)) if decode and _spans(decode) else None}


def _spans(t: StageTime) -> list[tuple[float, float]]:
    """The actors that worked at once: from ready to their last batch (the pool's spans for older callers)."""
    return t.working_spans or t.actor_spans


def append_run(fs: fsspec.AbstractFileSystem, path: str, entry: dict[str, Any]) -> None:
    """Add `entry` to the `runs` of the stats file at `path` (a resumed run appends)."""
    runs = json.loads(fs.cat_file(path)).get("runs", []) if fs.exists(path) else []
    fs.pipe_file(path, json.dumps({"runs": [*runs, entry]}, indent=2).encode())


def format_entry(entry: dict[str, Any]) -> str:
    """The summary's lines for one run."""
    parts = [f"{s} {f['busy_fraction']:.0%} busy, {f['rows_per_s']:.1f} rows/s" for s, f in entry["stages"].items()]
    return "\n".join([f"stages: {'; '.join(parts) or '-'}   decode actors (max): {entry['decode_actors_max']}",
                      entry["hint"]])


def record_run(ds: Any, fs: fsspec.AbstractFileSystem, out_dir: str, run_start: float,
               clock: Any = None) -> dict[str, Any] | None:
    """After `ds` was written: its run entry, appended to OUT/stats.json; `clock`: the run's
    StageClock actor (pipeline/stage_clock.py). None when Ray Data kept no statistics (nothing
    ran); statistics are advisory, so their failure is logged, never raised."""
    import logging

    import ray

    from pipeline.storage import join

    run_end = time.time()
    try:
        summary = ds.get_stats_summary()
        nodes = sum(1 for n in ray.nodes() if n.get("Alive") and n.get("Resources", {}).get("CPU", 0) > 0)
        if nodes <= 1:  # one clock for every block: Ray Data's windows, the actor table's lifetimes
            from ray._private import state  # the actor table without the dashboard's state API

            stages = collect(summary, run_start, run_end, 1, actors=list(state.actors().values()))
        else:  # several clocks: the stages' own record (no private API needed)
            record = ray.get(clock.read.remote()) if clock is not None else None
            stages = collect(summary, run_start, run_end, nodes, record)
        entry = run_entry(stages, max(1, nodes), run_start, run_end)
        append_run(fs, join(out_dir, STATS_FILE), entry)
    except Exception:
        logging.getLogger(__name__).warning("could not record the run's statistics", exc_info=True)
        return None
    return entry
