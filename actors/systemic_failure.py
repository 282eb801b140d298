"""Telling a broken model or device apart from bad items, in the scorer stage.

A bad item fails alone: its row gets `score_error` and the job goes on. A lost CUDA context,
an out-of-memory device or a corrupted model fails every item, and marking each row
`score_error` would blame the data for it, and with it checkpoint those rows as done. So:
- a batch in which every item failed, one by one too, with one exception type is suspect;
- where the actor has scored an item before (its "canary", kept per media kind), that item
  is scored again: if it now fails with the same type, the model is broken: stop at once;
  if it succeeds, the items are at fault;
- without a canary (nothing scored yet on this actor), `limit` consecutive suspect batches
  with the same exception type stop the job.
Stopping is `SystemicScoringError`, raised out of the stage: Ray Data fails the job with it.
"""
from __future__ import annotations


class SystemicScoringError(RuntimeError):
    """The scorer fails on everything: a broken model or device, not bad items."""


def uniform_failure(results: list) -> BaseException | None:
    """The first error when every result is an exception of one type, else None."""
    if not results or not all(isinstance(r, BaseException) for r in results):
        return None
    return results[0] if len({type(r) for r in results}) == 1 else None


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {str(exc)[:300]}"


class FailureStreak:
    """Consecutive batches in which every item failed with one exception type."""

    def __init__(self, limit: int):
        self.limit = limit
        self.kind: type | None = None
        self.count = 0

    def reset(self) -> None:
        self.kind, self.count = None, 0

    def observe(self, error: BaseException | None) -> None:
        """`error`: the batch's uniform failure (None = some item scored, or mixed errors)."""
        if error is None:
            self.reset()
            return
        self.count = self.count + 1 if type(error) is self.kind else 1
        self.kind = type(error)
        if self.count >= self.limit:
            raise SystemicScoringError(
                f"the scorer failed on every item of {self.count} consecutive batches with {_describe(error)}. "
                "This looks like a broken model or device, not bad items (model.systemic_failure_batches); the "
                "job stops without marking those rows. Rows already written stay: fix the cause and rerun to resume."
            ) from error

    def canary_failed(self, error: BaseException) -> None:
        """An item this actor scored before now fails like the whole batch: stop at once."""
        raise SystemicScoringError(
            f"the scorer failed on every item of a batch with {_describe(error)}, and an item it had scored "
            "before now fails the same way: a broken model or device, not bad items. The job stops without "
            "marking those rows. Rows already written stay: fix the cause and rerun to resume."
        ) from error
