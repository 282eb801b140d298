"""Telling a broken model or device apart from bad items, in the scorer stage (and the pair judge
stage of `vrscore judge`, actors/pair_judge.py, which applies the same rules to pairs).

A bad item fails alone: its row gets `score_error` and the job goes on. A lost CUDA context,
an out-of-memory device or a corrupted model fails every item, and marking each row
`score_error` would blame the data for it, and with it checkpoint those rows as done. So:
- at start-up the actor scores one synthetic item per media kind the model takes (`canary_item`,
  through the same adapter call as rows); if that fails, the actor fails to start, so a model
  broken from the start stops the job before any row is marked. The item is kept as the kind's
  known-good "canary";
- a batch in which every item failed, one by one too, with one exception type is suspect: the
  canary is scored again; if it now fails, the model is broken: stop at once; if it succeeds,
  the items are at fault;
- a kind without a start-up canary (the generic path's videos: whether its processor takes
  video is not known) takes its first scored item as canary; until then, `limit` consecutive
  suspect batches with the same exception type stop the job;
- rows of a kind the family does not take (videos for Gemma 3) fail one by one, never a stop.
With `model.min_answer_mass` set, the start-up canary also refuses a model that puts less than
that on the yes and no words where p_yes is read (`low_answer_mass`): it scores, but is not
answering there, so its p_yes would look normal and mean nothing.
Stopping is `SystemicScoringError`, raised out of the stage: Ray Data fails the job with it.
"""
from __future__ import annotations

import numpy as np

from actors.adapters.base import MediaInput
from actors.synthetic_media import make_picture, make_video_frames
from schemas.frames_spec import parse_frames_spec
from schemas.job_config import DecodeConfig

# A plain source size every family's resize rule and processor takes; the adapter resizes it
# (`resized=False`) with the family's own rule, so no family-specific size is needed here.
_CANARY_SIZE = (224, 224)
# A short prompt for checklists whose questions quote the item's prompt.
CANARY_PROMPT = "a picture"


class SystemicScoringError(RuntimeError):
    """The scorer fails on everything: a broken model or device, not bad items."""


def uniform_failure(results: list) -> BaseException | None:
    """The first error when every result is an exception of one type, else None."""
    if not results or not all(isinstance(r, BaseException) for r in results):
        return None
    return results[0] if len({type(r) for r in results}) == 1 else None


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {str(exc)[:300]}"


def canary_item(kind: str, decode: DecodeConfig) -> MediaInput:
    """A synthetic item of `kind` as a real decoded one could arrive: an image, or a two-frame
    video (one frame if `decode.frames` takes one), at a source size the adapter resizes."""
    if kind == "image":
        return MediaInput(frames=make_picture(_CANARY_SIZE)[None], media_type="image")
    n = min(parse_frames_spec(decode.frames).n or 2, 2)  # a short video gives 2 frames or fewer under any rule
    return MediaInput(frames=make_video_frames(n, _CANARY_SIZE), media_type="video", fps=1.0)


def startup_failed(kind: str, model: str, error: BaseException) -> SystemicScoringError:
    return SystemicScoringError(
        f"the scorer cannot score a synthetic {kind} at start-up with {model} ({_describe(error)}): a broken "
        "model, device or setting, not bad items. The job stops before any row is scored."
    )


# What the refusal asks a user to check, per kind of answer read: the yes/no words of a checklist
# (`vrscore score`), or the position words of a pairwise one (`vrscore judge`).
YES_NO_CHECKS = (
    "the text the answer starts after (model.answer_prefix, e.g. a closed think block for a thinking checkpoint); "
    "the answer words (model.yes_words and model.no_words must be the words the model writes first, and "
    "model.answer_leading_space whether they follow a space, as after 'Assistant:')")
POSITION_CHECKS = (
    "the text the answer starts after (the checklist's answer_prefix, after model.answer_prefix); the position "
    "words (the checklist's first_words and second_words must be what the judge writes first, and "
    "model.answer_leading_space whether they follow a space)")


def low_answer_mass(kind: str, model: str, masses: np.ndarray, minimum: float | None, *,
                    words: str = "the yes and no words", checks: str = YES_NO_CHECKS) -> SystemicScoringError | None:
    """The refusal when the mean answer mass of the canary's questions is under `minimum` (None = no check).
    `words` names the answer words read, `checks` the settings that place them."""
    if minimum is None or not len(masses):
        return None
    mean = float(np.nanmean(masses)) if not np.isnan(masses).all() else float("nan")
    if not mean < minimum:
        return None
    return SystemicScoringError(
        f"{model} puts {mean:.3g} of its probability on {words} where vrscore reads its answer "
        f"to a synthetic {kind} (mean answer mass over {len(masses)} questions, lowest {float(np.nanmin(masses)):.3g}; "
        f"model.min_answer_mass is {minimum}): the answer would be read where the model is not answering with them. "
        "Check, in this order: the chat template (a thinking model's prompt may end inside an open <think> block: "
        "set template options such as model.chat_template_kwargs.enable_thinking=false, or give model.chat_template); "
        f"{checks}. The job stops before any row is scored."
    )


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

    def canary_failed(self, error: BaseException, canary_error: BaseException) -> None:
        """An item this actor scored before now fails too: stop at once."""
        raise SystemicScoringError(
            f"the scorer failed on every item of a batch with {_describe(error)}, and an item it had scored "
            f"before now fails too ({_describe(canary_error)}): a broken model or device, not bad items. The "
            "job stops without marking those rows. Rows already written stay: fix the cause and rerun to resume."
        ) from canary_error
