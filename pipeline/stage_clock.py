"""Stage windows measured by the stages themselves, on the clock all nodes share.

Ray Data stamps its blocks with each worker's `time.perf_counter()`, a clock that starts at
the node's boot: on a cluster of several machines an operator's earliest and latest stamps
mix clocks, and its window means nothing. So the pool stages (decode, score) tell a small
actor of the job, `StageClock`, in wall-clock time (the clock NTP keeps in step across the
cluster, as the output lease already requires), when each of their actors was ready and when
each batch ran. That is the stage's window (its first batch to its last) and the time each
actor was available, on any number of nodes, without Ray's private actor table.

One call to the clock per batch, waited for (about a millisecond, where a batch decodes or
scores for tenths of seconds): an unawaited call could still be in flight when its actor is
shut down at the end of the run. The clock is advisory: once a call fails, that stage instance
stops reporting and its batches go on.
"""
from __future__ import annotations

import logging
import time
import uuid
from typing import Any

import ray

log = logging.getLogger(__name__)


@ray.remote(num_cpus=0)
class StageClock:
    """Per stage: its window [first batch start, last batch end] and each actor's [ready, last batch end]."""

    def __init__(self):
        self._windows: dict[str, list[float]] = {}
        self._actors: dict[str, dict[str, list[float]]] = {}

    def ready(self, stage: str, actor: str, at: float) -> None:
        self._actors.setdefault(stage, {})[actor] = [at, at]

    def ran(self, stage: str, actor: str, start: float, end: float) -> None:
        window = self._windows.setdefault(stage, [start, end])
        window[0], window[1] = min(window[0], start), max(window[1], end)
        span = self._actors.setdefault(stage, {}).setdefault(actor, [start, end])
        span[1] = max(span[1], end)

    def read(self) -> dict[str, Any]:
        return {"windows": {s: tuple(w) for s, w in self._windows.items()},
                "actors": {s: [tuple(a) for a in actors.values()] for s, actors in self._actors.items()}}


class _Reporter:
    """What a stage instance keeps to report to the clock."""

    def __init__(self, clock, stage: str):
        self.clock, self.stage, self.key = clock, stage, uuid.uuid4().hex

    def call(self, method: str, *args: float) -> None:
        if self.clock is None:
            return
        try:
            ray.get(getattr(self.clock, method).remote(self.stage, self.key, *args))
        except Exception:  # advisory: the batch goes on without it
            log.warning("stage clock unreachable: %s stops reporting its batch times", self.stage, exc_info=True)
            self.clock = None


def timed(stage_cls: type, stage: str, clock) -> type:
    """`stage_cls` (a callable class for `map_batches`) reporting its batches to `clock`; the same
    name, so Ray Data's operator keeps the stage's name (pipeline/run_stats.py maps it)."""

    class Timed(stage_cls):  # type: ignore[misc, valid-type]
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self._clock_reporter = _Reporter(clock, stage)
            self._clock_reporter.call("ready", time.time())

        def __call__(self, batch):
            start = time.time()
            out = super().__call__(batch)
            self._clock_reporter.call("ran", start, time.time())
            return out

    Timed.__name__ = Timed.__qualname__ = stage_cls.__name__
    Timed.__doc__ = stage_cls.__doc__
    return Timed


__all__ = ["StageClock", "timed"]
