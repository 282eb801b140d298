"""How many decode actors, and how many decoding threads each: sized to the cluster.

The decode stage must keep the scorers fed: on a GPU node one scorer takes the frames of
many CPU cores (docs/cluster.md sizes it from benchmarks/decode.py). So the pool is not
tied to the scorer count; by default it autoscales from 1 up to every CPU the scorers do
not reserve, less one CPU per node that Ray Data's read and write tasks need (pools that
take every CPU stall the pipeline: the reads wait for CPUs the actors hold).
"""
from __future__ import annotations

import math
from typing import NamedTuple

from schemas.job_config import ResourcesConfig


class DecodePool(NamedTuple):
    min_size: int
    max_size: int
    threads: int  # FFmpeg decoding threads per actor


def decode_pool(res: ResourcesConfig, cluster_cpus: float, nodes: int) -> DecodePool:
    """The decode pool for a cluster of `cluster_cpus` logical CPUs on `nodes` nodes.

    Threads: the CPUs left over for decoding shared among the pool's largest size, at
    least 1. With the default pool that is about `decode_cpus` per actor; with a small
    `decode_actors` override on a big node, each actor decodes with the idle cores.
    """
    scorer_cpus = res.num_cpus_per_actor * (res.scorer_max_actors or res.scorer_actors)
    free = max(0.0, cluster_cpus - scorer_cpus - max(1, nodes))
    by_cpus = max(1, math.floor(free / res.decode_cpus + 1e-9))
    min_size, max_size = res.decode_actors if res.decode_actors is not None else (1, by_cpus)
    threads = max(1, math.floor(max(free, res.decode_cpus) / max_size + 1e-9))
    return DecodePool(min_size, max_size, threads)
