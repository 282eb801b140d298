"""How many decode actors, how many decoding threads each, and how the work is cut for them.

The decode stage must keep the scorers fed: on a GPU node one scorer takes the frames of
many CPU cores (docs/cluster.md sizes it from benchmarks/decode.py). So the pool is not
tied to the scorer count; by default it takes every CPU the scorers do not reserve, less
one CPU per node that Ray Data's read and write tasks need (pools that take every CPU
stall the pipeline: the reads wait for CPUs the actors hold).

A pool uses only as many actors as it has tasks, one per block that reaches it, so the
blocks into decode are cut from the work: `decode_batch_size` rows, fewer when the job has
too few rows to give every actor several blocks (never `rows_per_file`, the output layout,
restored after scoring). And the default pool starts at its size and keeps it until its
input is done: Ray Data's autoscaler grows a pool only while each actor holds two tasks,
and then within the CPU budget it gives the operator. Measured on 10 one-row blocks of
1080p video on 8 logical CPUs (benchmarks/decode_scaling.py): left to grow from 1, the pool
stopped at 2 actors (1.6 decodes at once, with 2 or 4 tasks in flight per actor); started
at 6, it ran 4.4 decodes at once with 2 tasks in flight and 5.0 with 1.
"""
from __future__ import annotations

import math
from typing import NamedTuple

from schemas.job_config import ResourcesConfig

# The CPU of Ray Data's checkpoint filter, an actor of 1 CPU between the read and decode on a
# resumed run: a fixed pool that took it too would leave none for the read tasks, and the job
# would wait forever (a resumed job on 4 CPUs did).
CHECKPOINT_FILTER_CPUS = 1

# Blocks per decode actor when `decode_batch_size` would leave actors without work: several
# each, so that the last blocks to finish are short and the actors finish together.
BLOCKS_PER_DECODER = 4


class DecodePool(NamedTuple):
    min_size: int
    max_size: int
    threads: int  # FFmpeg decoding threads per actor
    initial_size: int  # actors started before the first block arrives
    block_rows: int  # rows per block into decode, and per decode task
    # None: Ray Data's default (an autoscaling pool needs queued tasks to see its load);
    # 1 for a fixed pool, where a task queued behind a long video could run on an idle actor.
    tasks_in_flight: int | None


def decode_pool(res: ResourcesConfig, cluster_cpus: float, nodes: int, rows: int | None, *,
                resuming: bool = False) -> DecodePool:
    """The decode pool for a job of `rows` rows (None: unknown, or blocks not cut by rows) on
    a cluster of `cluster_cpus` logical CPUs on `nodes` nodes; `resuming`: the run continues
    an output (Ray Data filters the rows already written in an actor of its own).

    Size: by default every spare CPU (a `decode_cpus` each), but no more actors than blocks;
    `resources.decode_actors` overrides the range, and the pool then starts at the most the
    blocks can use. Threads: the CPUs left over for decoding shared among the pool's largest
    size, at least 1. With the default pool that is about `decode_cpus` per actor; with a
    small `decode_actors` override on a big node, each actor decodes with the idle cores.
    """
    scorer_cpus = res.num_cpus_per_actor * (res.scorer_max_actors or res.scorer_actors)
    free = max(0.0, cluster_cpus - scorer_cpus - max(1, nodes) - (CHECKPOINT_FILTER_CPUS if resuming else 0))
    by_cpus = max(1, math.floor(free / res.decode_cpus + 1e-9))
    largest = res.decode_actors[1] if res.decode_actors is not None else by_cpus
    if rows is None:
        block_rows, blocks = res.decode_batch_size, largest
    else:
        block_rows = max(1, min(res.decode_batch_size, rows // (largest * BLOCKS_PER_DECODER)))
        blocks = max(1, math.ceil(rows / block_rows))
    if res.decode_actors is None and rows is None:
        # blocks cut by bytes, their number unknown here: the pool autoscales from 1, as before
        min_size, max_size, initial = 1, by_cpus, 1
    elif res.decode_actors is None:
        min_size = max_size = initial = min(by_cpus, blocks)
    else:
        min_size, max_size = res.decode_actors
        initial = max(min_size, min(max_size, blocks))
    threads = max(1, math.floor(max(free, res.decode_cpus) / max_size + 1e-9))
    in_flight = 1 if min_size == max_size else None
    return DecodePool(min_size, max_size, threads, initial, block_rows, in_flight)
