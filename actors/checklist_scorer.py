"""The scoring stage: decoded frames in, per-question p_yes and answer mass out.

A callable class for Ray Data's actor pool: the model is loaded once in `__init__`, each
`__call__` answers every question of every decoded row of the batch. Knows nothing of Ray.
"""
from __future__ import annotations

import logging
import os
import time

import numpy as np

from actors.adapters import load_adapter
from actors.adapters.base import AnswerKind, MediaInput, Readout
from actors.adapters.devices import resolve_device
from actors.systemic_failure import (
    CANARY_PROMPT,
    FailureStreak,
    canary_item,
    low_answer_mass,
    startup_failed,
    uniform_failure,
)
from actors.model_store import local_model
from pipeline.model_family import GENERIC_RULE
from pipeline.null_columns import nulls_as_none
from pipeline.resize_policy import frames_are_final
from schemas import status
from schemas.checklist import Checklist
from schemas.checklist_set import checklists_from_json
from schemas.job_config import DecodeConfig, ModelConfig, StorageConfig

log = logging.getLogger(__name__)

# Test hook for fault-tolerance tests: the first scorer call of the job (across all actors)
# records its pid in this file and exits hard, so exactly one actor dies mid-batch and Ray
# must restart it and retry the batch. Unset in normal runs.
CRASH_ONCE_ENV = "VRSCORE_TEST_CRASH_ONCE_FILE"


def frames_of(row_frames: bytes, row_shape: np.ndarray) -> np.ndarray:
    shape = tuple(int(s) for s in row_shape)
    return np.frombuffer(row_frames, dtype=np.uint8).reshape(shape)


class ChecklistScorer:
    """Ray Data stage: adds `p_yes` and `answer_mass` as raw float32 bytes per row (b"" for rows not ok),
    and `level_probs` (`level_bytes`) where a checklist has rating questions.

    Bytes, not arrays: question lists differ in length between checklists, and ragged
    numpy columns mixed with nulls do not convert reliably to Arrow blocks.
    """

    def __init__(self, model: dict, decode: dict, checklists_json: str, cpu_threads: int | None = None,
                 storage: dict | None = None):
        given = ModelConfig.model_validate(model)
        _set_cpu_threads(cpu_threads, given.device)  # cuda without a GPU fails here, before the model is fetched
        # A model at a URI: this node's cached copy (downloaded once per node).
        self.model_cfg = local_model(given, StorageConfig.model_validate(storage or {}))
        self.checklists = checklists_from_json(checklists_json)
        # A broken model or device must stop the job, not pass as bad items (actors/systemic_failure.py).
        self._streak = FailureStreak(self.model_cfg.systemic_failure_batches)
        self._canary: dict[str, tuple[MediaInput, list[str]]] = {}
        self._not_taken: set[str] = set()  # kinds the model's family does not take: their rows fail alone
        self.adapters = {}
        # One model, but each checklist may carry its own system prompt.
        t0 = time.perf_counter()
        for kind, checklist in self.checklists.items():
            key = checklist.system_prompt
            shared = next((a for k, a in self.adapters.items() if self.checklists[k].system_prompt == key), None)
            self.adapters[kind] = shared or load_adapter(
                self.model_cfg, DecodeConfig.model_validate(decode), system_prompt=key
            )
        # How each question is read; a rating level that is not one token fails the actor here, as a
        # yes/no word does when the adapter loads
        self.kinds = {kind: answer_kinds(checklist) for kind, checklist in self.checklists.items()}
        for kind, kinds in self.kinds.items():
            for answer in dict.fromkeys(kinds):
                self.adapters[kind].answer_groups(answer)
        # Frames are taken as the model's input only where the decode stage applied the family's own rule.
        self._final = {kind: frames_final(DecodeConfig.model_validate(decode), a) for kind, a in self.adapters.items()}
        self._start_canaries(DecodeConfig.model_validate(decode))
        log.info("scorer ready in %.1fs (model %s)", time.perf_counter() - t0, self.model_cfg.model)

    def _start_canaries(self, decode: DecodeConfig) -> None:
        """Score one synthetic item per media kind the model takes, as rows are scored; a failure
        here means the model cannot score anything: the actor fails to start, no row is marked.
        So does an answer mass under `model.min_answer_mass` (the model is not answering yes or
        no where p_yes is read). The result is discarded, so rows are scored exactly as without it."""
        for kind, checklist in self.checklists.items():
            taken = _media_types(self.adapters[kind])
            if taken is not None and kind not in taken:
                self._not_taken.add(kind)  # such rows fail one by one with the adapter's own error
                continue
            if taken is None and kind != "image":
                continue  # the generic path: whether its processor takes video is not known
            item = canary_item(kind, decode)
            questions = checklist.render(CANARY_PROMPT if checklist.uses_prompt else None)
            try:
                readout = self._score(kind, [item], [questions])[0]
            except Exception as exc:  # whatever it is, the model cannot score anything
                raise startup_failed(kind, self.model_cfg.model, exc) from exc
            refusal = low_answer_mass(kind, self.model_cfg.model, readout.answer_mass, self.model_cfg.min_answer_mass)
            if refusal is not None:
                raise refusal
            self._canary[kind] = (item, questions)

    def _score(self, kind: str, items: list[MediaInput], questions: list[list[str]]) -> list[Readout]:
        adapter = self.adapters[kind]
        # vLLM batches either way; share_prefix only switches its prefix caching (set at load)
        batched = self.model_cfg.share_prefix or self.model_cfg.engine == "vllm"
        return adapter.readout(items, questions, self.kinds[kind]) if batched \
            else adapter.readout_reference(items, questions, self.kinds[kind])

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        _maybe_crash_for_test()
        batch = nulls_as_none(batch)
        n = len(batch["id"])
        p_yes, mass = np.full(n, b"", dtype=object), np.full(n, b"", dtype=object)
        levels = np.full(n, b"", dtype=object)
        statuses = np.array(batch["status"], dtype=object)
        errors = np.array(batch["error"], dtype=object)
        prompts = batch["prompt"] if "prompt" in batch else np.full(n, None, dtype=object)
        for kind in ("image", "video"):
            rows = [i for i in range(n) if statuses[i] == status.OK and batch["media_type"][i] == kind]
            if not rows:
                continue
            checklist = self.checklists[kind]
            items = [
                MediaInput(
                    frames=frames_of(batch["frames"][i], batch["frames_shape"][i]),
                    media_type=kind,
                    fps=_known(batch["fps"][i]),
                    duration=_known(batch["video_duration"][i]),
                    times=_times(batch, i) if kind == "video" else None,
                    resized=self._final[kind],
                )
                for i in rows
            ]
            questions = [checklist.render(prompts[i]) for i in rows]
            try:
                results = self._score(kind, items, questions)
            except Exception:
                # One bad item must not sink its batch: retry one by one to isolate it.
                results = []
                for item, qs in zip(items, questions):
                    try:
                        results.append(self._score(kind, [item], [qs])[0])
                    except Exception as exc:  # noqa: BLE001 - the message goes into the row
                        results.append(exc)
                self._check_systemic(kind, results)
            else:
                self._streak.observe(None)
            ok = next((j for j, res in enumerate(results) if not isinstance(res, Exception)), None)
            if ok is not None and kind not in self._canary:
                self._canary[kind] = (items[ok], questions[ok])
            for i, res in zip(rows, results):
                if isinstance(res, Exception):
                    statuses[i], errors[i] = status.SCORE_ERROR, f"{type(res).__name__}: {res}"
                else:
                    p_yes[i] = np.asarray(res.p_yes, dtype=np.float32).tobytes()
                    mass[i] = np.asarray(res.answer_mass, dtype=np.float32).tobytes()
                    levels[i] = level_bytes(res)
        out = {k: v for k, v in batch.items() if k not in ("frames", "frames_shape")}
        out.update(p_yes=p_yes, answer_mass=mass, status=statuses, error=errors)
        if any(c.has_ratings for c in self.checklists.values()):
            out["level_probs"] = levels
        return out

    def _check_systemic(self, kind: str, results: list) -> None:
        """Raise SystemicScoringError when a batch's failure is the model's, not its items'."""
        error = uniform_failure(results)
        if kind in self._not_taken:
            error = None  # the model refuses this kind by design: each row says so, nothing is broken
        elif error is not None and kind in self._canary:
            item, qs = self._canary[kind]
            try:
                self._score(kind, [item], [qs])
            except Exception as exc:  # noqa: BLE001 - a known-good item failing is the model's fault
                self._streak.canary_failed(error, exc)
            else:
                error = None  # the model still scores a known-good item: these items are at fault
        self._streak.observe(error)


def level_bytes(readout: Readout) -> bytes:
    """The rating questions' level probabilities, one after the other in question order, as float32
    bytes (the assembler splits them by the checklist's levels)."""
    parts = [np.asarray(p, dtype=np.float32) for p in readout.level_probs or [] if p is not None]
    return np.concatenate(parts).tobytes() if parts else b""


def answer_kinds(checklist: Checklist) -> list[AnswerKind]:
    """How each question of `checklist` is read, in question order."""
    return [AnswerKind(tuple(q.levels or ()), tuple(q.level_values or ()), q.readout == "absolute")
            for q in checklist.questions]


def frames_final(decode: DecodeConfig, adapter) -> bool:
    """Whether the decode stage's frames are the model's input as they are (`MediaInput.resized`):
    only when it applied the family's own rule, and one that gives the model's size. Frames of an
    unresolved config (`resize_rule` None: the source, capped) are resized by the adapter; a rule
    other than the model's is refused, since the family would take frames of the wrong size."""
    family = getattr(adapter, "family", None)
    own = GENERIC_RULE if family is None else family.resize_rule
    if decode.resize_rule not in (None, own):
        raise ValueError(f"the decode stage sizes frames by {decode.resize_rule!r}, but the model takes {own!r} "
                         "(pipeline/model_family.py resolves the model's rule on the driver)")
    return frames_are_final(decode.resize_rule, own)


def _times(batch: dict[str, np.ndarray], i: int) -> tuple[float, ...] | None:
    """Row i's frame times (the decode stage's `frame_times`), None where there are none."""
    times = batch["frame_times"][i] if "frame_times" in batch else None
    return None if times is None or len(times) == 0 else tuple(float(t) for t in times)


def _known(value: float) -> float | None:
    """A decode column's number, None where it is NaN (unknown)."""
    return None if np.isnan(value) else float(value)


def _media_types(adapter) -> tuple[str, ...] | None:
    """The kinds a family module takes; None on the generic path, whose processor takes images
    (it refuses to load without an image processor) and perhaps videos."""
    family = getattr(adapter, "family", None)
    return None if family is None else tuple(family.media_types)


def _set_cpu_threads(threads: int | None, device: str) -> None:
    """Ray sets OMP_NUM_THREADS to the actor's reserved CPUs (1 by default), which halves CPU
    scoring on a 2-core node; on CPU the scorer should use the cores the node has. `device` is the
    model's (job.json's): resolving it fails an actor told cuda that sees no GPU (GpuUnavailableError)."""
    import torch

    if resolve_device(device).type == "cpu":
        torch.set_num_threads(threads or os.cpu_count() or 1)


def _maybe_crash_for_test() -> None:
    marker = os.environ.get(CRASH_ONCE_ENV)
    if not marker:
        return
    pid = str(os.getpid())
    seen = open(marker).read().split() if os.path.exists(marker) else []
    if seen:  # one crash per job is enough
        return
    with open(marker, "a") as f:
        f.write(pid + "\n")
    os._exit(3)
