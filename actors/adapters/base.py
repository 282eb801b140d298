"""What every checklist adapter takes and returns; model code behind it knows nothing of Ray."""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

MEDIA_TYPES = ("image", "video")


@dataclass(frozen=True, eq=False)
class MediaInput:
    """Decoded frames of one item.

    frames: uint8 (T, H, W, 3) RGB; T == 1 for an image.
    media_type: "image" or "video".
    fps: the sampling rate of the given frames (frames per second of the source timeline),
        used for Qwen2.5-VL's temporal positions; None = unknown.
    duration: the whole video's length in seconds, as transformers' video readers report it
        (frame count / average frame rate), which SmolVLM writes into its prompt; None = unknown.
    times: each frame's time in seconds from the video's first frame (the decode stage's
        `frame_times`): what the processors that write times into the prompt (Qwen3-VL, SmolVLM,
        GLM-4.1V) compute from the video metadata (`frames_indices / fps`) of the frames taken.
        Frames of 'uniform:N' or of 'fps:F' on a clip whose rate F does not divide are not
        k / fps apart; None = unknown: frame k at k / fps, as the processors assume then.
    resized: True when the frames are already at the model's input size, resized from the
        source by the decode stage with the same rule and settings. The adapter then takes
        them as they are: resizing a resized frame is not always a no-op (rounding can push
        it past a pixel or aspect-ratio bound), and the stock processor resizes once, from
        the source.
    """

    frames: np.ndarray
    media_type: str
    fps: float | None = None
    resized: bool = False
    duration: float | None = None
    times: tuple[float, ...] | None = None

    def seconds(self, default_fps: float) -> list[float]:
        """Each frame's time: `times` when known, else k / fps (`default_fps` when that is unknown)."""
        if self.times is not None:
            return [float(t) for t in self.times]
        return [k / (self.fps or default_fps) for k in range(len(self.frames))]

    def __post_init__(self) -> None:
        if self.media_type not in MEDIA_TYPES:
            raise ValueError(f"media_type must be one of {MEDIA_TYPES}, got {self.media_type!r}")
        f = self.frames
        if not isinstance(f, np.ndarray) or f.dtype != np.uint8 or f.ndim != 4 or f.shape[-1] != 3 or f.shape[0] < 1:
            shape = getattr(f, "shape", None)
            raise ValueError(f"frames must be a uint8 array of shape (T, H, W, 3), got {type(f).__name__} {shape}")
        if self.media_type == "image" and f.shape[0] != 1:
            raise ValueError(f"an image has exactly one frame, got {f.shape[0]}")
        if self.fps is not None and not self.fps > 0:
            raise ValueError(f"fps must be positive, got {self.fps}")
        if self.duration is not None and not self.duration > 0:
            raise ValueError(f"duration must be positive, got {self.duration}")
        if self.times is not None and len(self.times) != f.shape[0]:
            raise ValueError(f"times must give one time per frame: {len(self.times)} times for {f.shape[0]} frames")


@dataclass(frozen=True)
class AnswerKind:
    """How one question's answer is read at the answer position (the checklist's `answer` and `readout`).

    levels: () for a yes/no question, read from the model's yes and no words; otherwise a rating's
        level words, worst to best, each pooled over its case forms as the yes and no words are.
    values: each level's value (rating only); p_yes is their expectation under the levels' softmax.
    absolute: yes/no only: p_yes = P(yes words) under the softmax over the whole vocabulary (VQAScore's
        readout) instead of P(yes words) / (P(yes words) + P(no words)).
    """

    levels: tuple[str, ...] = ()
    values: tuple[float, ...] = ()
    absolute: bool = False


YES_NO = AnswerKind()


@dataclass(frozen=True, eq=False)
class Readout:
    """What the model said at the answer position of each question of one item, in question order.

    p_yes: float32, softmax over [logsumexp(yes-word logits), logsumexp(no-word logits)].
    answer_mass: float32, P(any yes word) + P(any no word) under the softmax over the whole
        vocabulary: how much of its answer the model put on the words p_yes is read from. Low
        mass means p_yes is read where the model is not answering yes or no (a wrong template,
        answer word, leading space or thinking prefix). NaN where it was not computed. For a rating
        question: P(any level word).
    level_probs: per question, a rating's level probabilities (float32, levels order, summing to 1);
        None for a yes/no question. None as a whole where every question is yes/no.
    """

    p_yes: np.ndarray
    answer_mass: np.ndarray
    level_probs: list[np.ndarray | None] | None = None


class ChecklistAdapter(Protocol):
    """Answers yes/no checklist questions about media with a vision-language model."""

    model_id: str

    def readout(self, items: Sequence[MediaInput], questions: Sequence[Sequence[str]],
                answers: Sequence[AnswerKind] | None = None) -> list[Readout]:
        """Fast path. Per item i, p_yes and answer mass of shape (len(questions[i]),). `answers`: how
        question q of every item is read (None: every one yes/no, renormalised)."""
        ...

    def readout_reference(self, items: Sequence[MediaInput], questions: Sequence[Sequence[str]],
                          answers: Sequence[AnswerKind] | None = None) -> list[Readout]:
        """One complete forward per (item, question), nothing shared: the ground truth for `readout`."""
        ...

    def score(self, items: Sequence[MediaInput], questions: Sequence[Sequence[str]]) -> list[np.ndarray]:
        """`readout`'s p_yes alone. Per item i, float32 p_yes of shape (len(questions[i]),)."""
        ...

    def score_reference(self, items: Sequence[MediaInput], questions: Sequence[Sequence[str]]) -> list[np.ndarray]:
        """`readout_reference`'s p_yes alone."""
        ...
