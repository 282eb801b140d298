"""Decode pool sizing, the bound-stage rule and the stage windows: pure functions, no Ray."""
from __future__ import annotations

import json
from types import SimpleNamespace

import fsspec
import pytest

from pipeline.decode_pool import DecodePool, decode_pool
from pipeline.run_stats import (
    StageTime,
    append_run,
    bound_stage,
    collect,
    max_overlap,
    run_entry,
    stage_figures,
    stage_of,
)
from schemas.job_config import ResourcesConfig


BIG = 100_000  # rows: enough blocks of decode_batch_size for any pool


@pytest.mark.parametrize("res, cpus, nodes, want", [
    # 8 CPUs, one scorer holding 1, one CPU for reads/writes: a fixed pool of 6 decoders of 1 thread
    (ResourcesConfig(), 8, 1, DecodePool(6, 6, 1, 6, 8, 1)),
    # a GPU node: 4 scorers of 1 CPU each on 2 nodes of 16 CPUs
    (ResourcesConfig(scorer_actors=4), 32, 2, DecodePool(26, 26, 1, 26, 8, 1)),
    # the scorers' reservation counts at their autoscaling maximum
    (ResourcesConfig(scorer_actors=1, scorer_max_actors=3, num_cpus_per_actor=2), 16, 1, DecodePool(9, 9, 1, 9, 8, 1)),
    # half-CPU decoders: twice as many
    (ResourcesConfig(decode_cpus=0.5), 8, 1, DecodePool(12, 12, 1, 12, 8, 1)),
    # an override: 2 actors share the 14 spare cores as threads; autoscaling keeps Ray's in-flight default
    (ResourcesConfig(decode_actors=(1, 2)), 16, 1, DecodePool(1, 2, 7, 2, 8, None)),
    (ResourcesConfig(decode_actors=(1, 1)), 16, 1, DecodePool(1, 1, 14, 1, 8, 1)),
    # a cluster too small for the reservations still gets one decoder
    (ResourcesConfig(scorer_actors=4), 4, 1, DecodePool(1, 1, 1, 1, 8, 1)),
])
def test_decode_pool_reaches_the_cpus_left(res, cpus, nodes, want):
    assert decode_pool(res, cpus, nodes, rows=BIG) == want


def test_decode_pool_is_not_tied_to_the_scorer_count():
    # the old rule was 2 decoders per scorer actor
    assert decode_pool(ResourcesConfig(scorer_actors=1), 64, 1, rows=BIG).max_size == 62


@pytest.mark.parametrize("rows, block_rows, size", [
    (10, 1, 6),  # 10 long videos on 8 CPUs: a block per row, every decoder busy
    (3, 1, 3),  # fewer blocks than CPUs: no idle actors
    (100, 4, 6),  # several blocks per actor, so that they finish together
    (10_000, 8, 6),  # a large job: blocks of decode_batch_size, whatever rows_per_file says
])
def test_decode_blocks_come_from_the_work_not_the_output_files(rows, block_rows, size):
    pool = decode_pool(ResourcesConfig(rows_per_file=1000), 8, 1, rows=rows)
    assert (pool.block_rows, pool.min_size, pool.max_size, pool.initial_size) == (block_rows, size, size, size)


def test_blocks_cut_by_bytes_keep_the_autoscaling_pool():
    # WebDataset shards and manifests holding the media: no row count, blocks from their source
    pool = decode_pool(ResourcesConfig(), 8, 1, rows=None)
    assert (pool.block_rows, pool.min_size, pool.max_size, pool.initial_size, pool.tasks_in_flight) == (8, 1, 6, 1, None)


def test_a_resumed_run_leaves_the_checkpoint_filter_its_cpu():
    # 4 CPUs: scorer 1, reads and writes 1, Ray Data's checkpoint filter 1 on a resumed run
    assert decode_pool(ResourcesConfig(), 4, 1, rows=BIG).max_size == 2
    assert decode_pool(ResourcesConfig(), 4, 1, rows=BIG, resuming=True).max_size == 1


def test_an_autoscaling_override_starts_at_what_the_blocks_can_use():
    pool = decode_pool(ResourcesConfig(decode_actors=(2, 8)), 16, 1, rows=5)
    assert (pool.min_size, pool.initial_size, pool.max_size, pool.block_rows) == (2, 5, 8, 1)


def test_decode_actors_must_be_ordered():
    with pytest.raises(ValueError, match="min <= max"):
        ResourcesConfig(decode_actors=(4, 2))


def test_max_overlap():
    assert max_overlap([(0, 10), (1, 2), (3, 5), (4, 6), (11, 12)]) == 3
    assert max_overlap([(0, 1), (1, 2)]) == 1  # one ends as the next starts
    assert max_overlap([]) == 0


@pytest.mark.parametrize("stage", ["decode", "score", "read", "write"])
def test_operator_names_map_to_stages(stage):
    names = {"decode": "MapBatches(validate_rows)->MapBatches(MediaDecoder)", "score": "MapBatches(ChecklistScorer)",
             "read": "ReadFiles", "write": "MapBatches(ScoreAssembler)->Write"}
    assert stage_of(names[stage]) == stage


def _stages(decode_busy: float, score_busy: float) -> dict[str, StageTime]:
    # two decoders and one scorer alive over [0, 100]; the stages started at 0 and 10
    return {
        "read": StageTime(busy_s=2, rows=50, start=0, end=5),
        "decode": StageTime(busy_s=decode_busy, rows=50, start=0, end=90, actor_spans=[(0, 100), (0, 100)]),
        "score": StageTime(busy_s=score_busy, rows=50, start=10, end=100, actor_spans=[(-5, 100)]),
        "write": StageTime(busy_s=1, rows=50, start=20, end=100),
    }


def test_decode_bound_run():
    figures = stage_figures(_stages(decode_busy=190, score_busy=27), nodes=1, run_end=100)
    assert figures["decode"] == {"busy_fraction": 0.95, "rows_per_s": round(50 / 90, 3), "parallelism": 2.11}
    assert figures["score"]["busy_fraction"] == 0.3  # counted from its first task: model loading left out
    stage, hint = bound_stage(figures)
    assert stage == "decode" and hint.startswith("decode-bound: scorers idle 70% waiting for frames")


def test_score_bound_run_is_the_control():
    figures = stage_figures(_stages(decode_busy=40, score_busy=85), nodes=1, run_end=100)
    assert bound_stage(figures)[0] == "score"


def test_a_resumed_run_appends(tmp_path):
    fs = fsspec.filesystem("file")
    path = str(tmp_path / "stats.json")
    first = run_entry(_stages(190, 27), nodes=1, run_start=0, run_end=100)
    append_run(fs, path, first)
    append_run(fs, path, run_entry(_stages(40, 85), nodes=1, run_start=0, run_end=100))
    runs = json.loads(fs.cat_file(path))["runs"]
    assert [r["bound_stage"] for r in runs] == ["decode", "score"]
    assert runs[0]["decode_actors_max"] == 2 and set(runs[0]["stages"]) == {"read", "decode", "score", "write"}


def _summary(ops: list[tuple[str, float, float, float]]) -> SimpleNamespace:
    """A DatasetStatsSummary's shape: operators with their busy seconds and (perf_counter) stamps."""
    return SimpleNamespace(parents=[], operators_stats=[
        SimpleNamespace(operator_name=name, wall_time=SimpleNamespace(sum=busy), total_input_num_rows=10,
                        output_num_rows=SimpleNamespace(sum=10), earliest_start_time=start, latest_end_time=end)
        for name, busy, start, end in ops])


def test_pool_windows_on_several_nodes_are_the_stages_own():
    # Two nodes: Ray Data's stamps are each worker's perf_counter, not comparable across nodes.
    summary = _summary([("ReadFiles", 1, -5e6, 9e6), ("MapBatches(MediaDecoder)", 30, -5e6, 9e6),
                        ("MapBatches(ChecklistScorer)", 40, 7e5, 3e5), ("Write", 2, -5e6, 9e6)])
    clock = {"windows": {"decode": (1010.0, 1060.0), "score": (1030.0, 1095.0)},
             "actors": {"decode": [(1005.0, 1060.0), (1006.0, 1040.0)], "score": [(1020.0, 1095.0)]}}
    stages = collect(summary, run_start=1000.0, run_end=1100.0, nodes=2, clock=clock)
    entry = run_entry(stages, nodes=2, run_start=1000.0, run_end=1100.0)
    assert entry["stages"]["decode"]["window_s"] == [10.0, 60.0]
    assert entry["stages"]["score"]["window_s"] == [30.0, 95.0]  # model loading (before 1030) left out
    assert entry["stages"]["score"]["busy_fraction"] == round(40 / 70, 3)  # its actor from 1030 to the run's end
    assert entry["stages"]["read"]["window_s"] == [0.0, 100.0]  # not ours to time: the run's span
    assert entry["decode_actors_max"] == 2
    # Control: without the stages' own record, a multi-node run falls back to the run's span.
    fallback = run_entry(collect(summary, 1000.0, 1100.0, nodes=2), nodes=2, run_start=1000.0, run_end=1100.0)
    assert fallback["stages"]["score"]["window_s"] == [0.0, 100.0] and fallback["decode_actors_max"] is None
