"""The judge stage of `vrscore judge`: decoded units in, one row per pair out (before aggregation).

Each unit row (actors/pair_units.py) holds its pairs and their decoded items; every ok pair is
judged in both orders by `PairReader`, all pairs of a batch of units together. A pair fails as data,
never the batch: an item that failed to decode makes each of its pairs an error row with that
item's status and an error naming the item; a pair the model fails on is `score_error`.

A broken model or device is told apart from bad pairs as the score job's scorer does
(actors/systemic_failure.py): at start-up the actor judges a synthetic pair per media kind (the
canary; failing it, or with `model.min_answer_mass` set putting less than that on the position
words, fails the actor before any pair is written); a batch whose pairs all fail one by one with
one exception type judges the canary again, and stops the job if it now fails too.
"""
from __future__ import annotations

import logging
import time

import numpy as np
import pyarrow as pa

from actors.adapters.base import MediaInput
from actors.checklist_scorer import _set_cpu_threads, frames_final, frames_of
from actors.model_store import local_model
from actors.pair_reader import PairJudgement, PairReader
from actors.systemic_failure import (
    CANARY_PROMPT,
    POSITION_CHECKS,
    FailureStreak,
    canary_item,
    low_answer_mass,
    startup_failed,
    uniform_failure,
)
from schemas import status as st
from schemas.checklist import Checklist
from schemas.job_config import DecodeConfig, ModelConfig, StorageConfig
from schemas.judge_output import PAIR_BASE_FIELDS, P_TIE_FIELD

log = logging.getLogger(__name__)


def judged_schema(ties: bool) -> pa.Schema:
    """What this stage writes: the pairs' base fields (and p_tie), before pair_score and dimensions."""
    return pa.schema(PAIR_BASE_FIELDS + ([P_TIE_FIELD] if ties else []))


class PairJudge:
    """Ray Data stage (`map_batches`, pyarrow batches of unit rows); `model`, `decode`, `storage` are
    the job's configs dumped, `checklist_json` the pairwise checklist."""

    def __init__(self, model: dict, decode: dict, checklist_json: str, cpu_threads: int | None = None,
                 storage: dict | None = None):
        t0 = time.perf_counter()
        given = ModelConfig.model_validate(model)
        _set_cpu_threads(cpu_threads, given.device)  # cuda without a GPU fails here, before the model is fetched
        model_cfg = local_model(given, StorageConfig.model_validate(storage or {}))
        self.checklist = Checklist.model_validate_json(checklist_json)
        decode_cfg = DecodeConfig.model_validate(decode)
        self.reader = PairReader(model_cfg, decode_cfg, self.checklist)
        self.final = frames_final(decode_cfg, self.reader.engine)
        self.schema = judged_schema(bool(self.checklist.tie_words))
        self.model_cfg = model_cfg
        self._streak = FailureStreak(model_cfg.systemic_failure_batches)
        self._canary: dict[str, tuple[dict[str, MediaInput], list[tuple[str, str, str | None]]]] = {}
        self._start_canaries(decode_cfg)
        log.info("pair judge ready in %.1fs (model %s)", time.perf_counter() - t0, model_cfg.model)

    def _kinds(self) -> tuple[str, ...]:
        return ("image", "video") if self.checklist.media_type == "any" else (self.checklist.media_type,)

    def _start_canaries(self, decode: DecodeConfig) -> None:
        """Judge one synthetic pair per media kind, as pairs are judged; a failure, or an answer mass
        under `model.min_answer_mass`, fails the actor before any pair is marked. The result is discarded."""
        for kind in self._kinds():
            items = {"canary_a": canary_item(kind, decode), "canary_b": canary_item(kind, decode)}
            pairs = [("canary_a", "canary_b", CANARY_PROMPT if self.checklist.uses_prompt else None)]
            try:
                judgement = self.reader.judge(items, pairs)[0]
                if judgement.outcome is None:
                    raise RuntimeError(judgement.error)
            except Exception as exc:  # whatever it is, the model cannot judge anything
                raise startup_failed(f"pair of {kind}s", self.model_cfg.model, exc) from exc
            refusal = low_answer_mass(f"pair of {kind}s", self.model_cfg.model, np.concatenate(judgement.answer_mass),
                                      self.model_cfg.min_answer_mass, words="the position words",
                                      checks=POSITION_CHECKS)
            if refusal is not None:
                raise refusal
            self._canary[kind] = (items, pairs)

    def _items(self, unit: dict) -> tuple[dict[str, MediaInput], dict[str, tuple[str, str]]]:
        """(decoded items, failed items -> (status, error)) of one unit row."""
        items, failed = {}, {}
        kinds = self._kinds()
        for k, key in enumerate(unit["item_id"]):
            status, kind = unit["item_status"][k], unit["item_media_type"][k]
            if status != st.OK:
                failed[key] = (status, unit["item_error"][k])
            elif kind not in kinds:
                failed[key] = (st.UNSUPPORTED_MEDIA, f"a {kind}, and checklist {self.checklist.name!r} is for "
                                                     f"{self.checklist.media_type}s")
            else:
                fps, duration = unit["item_fps"][k], unit["item_duration"][k]
                items[key] = MediaInput(frames_of(unit["item_frames"][k], np.asarray(unit["item_shape"][k])), kind,
                                        fps=fps, resized=self.final, duration=duration)
        return items, failed

    def _judge(self, items: dict[str, MediaInput], pairs: list[tuple[str, str, str | None]]) -> list[PairJudgement]:
        try:
            judged = self.reader.judge(items, pairs)
        except Exception:  # one bad pair must not sink the others: judge them one by one
            results: list[PairJudgement | Exception] = []
            for pair in pairs:
                try:
                    results += self.reader.judge(items, [pair])
                except Exception as exc:  # noqa: BLE001 - the message goes into the row
                    results.append(exc)
            self._check_systemic(results, items)
            return [PairJudgement(None, f"{type(r).__name__}: {r}", st.SCORE_ERROR) if isinstance(r, Exception) else r
                    for r in results]
        self._streak.observe(None)
        return judged

    def _check_systemic(self, results: list, items: dict[str, MediaInput]) -> None:
        """Raise SystemicScoringError when a batch's failure is the model's, not its pairs'."""
        error = uniform_failure(results)
        kinds = {m.media_type for m in items.values()}
        canaries = [self._canary[k] for k in kinds if k in self._canary]
        if error is not None and canaries:
            try:
                for canary_items, canary_pairs in canaries:
                    self.reader.judge(canary_items, canary_pairs)
            except Exception as exc:  # noqa: BLE001 - a known-good pair failing is the model's fault
                self._streak.canary_failed(error, exc)
            else:
                error = None  # the model still judges a known-good pair: these pairs are at fault
        self._streak.observe(error)

    def __call__(self, units: pa.Table) -> pa.Table:
        rows: list[dict] = []
        todo: list[tuple[int, str, str, str | None]] = []  # (row, a, b, prompt) of pairs to judge
        all_items: dict[str, MediaInput] = {}
        for unit in units.to_pylist():
            items, failed = self._items(unit)
            all_items.update(items)
            for pid, a, b, group, prompt in zip(*(unit[f"pair_{c}"] for c in ("id", "a", "b", "group", "prompt"))):
                row = {"id": pid, "a": a, "b": b, "group": group, "prompt": prompt, "status": st.OK, "error": None}
                bad = next(((key, failed[key]) for key in (a, b) if key in failed), None)
                if bad is not None:
                    row["status"], row["error"] = bad[1][0], f"item {bad[0]!r}: {bad[1][1]}"
                elif prompt is None and self.checklist.uses_prompt:
                    row["status"], row["error"] = st.INVALID_ROW, "the pair has no prompt and the checklist needs one"
                else:
                    todo.append((len(rows), a, b, prompt))
                rows.append(row)
        judged = self._judge(all_items, [(a, b, p) for _, a, b, p in todo]) if todo else []
        for (r, *_), judgement in zip(todo, judged):
            if judgement.outcome is None:
                rows[r]["status"], rows[r]["error"] = judgement.status, judgement.error
                continue
            o = judgement.outcome
            rows[r].update(p_first_ab=o.p_first_ab.tolist(), p_first_ba=o.p_first_ba.tolist(), p_a=o.p_a.tolist(),
                           position_bias=o.position_bias.tolist(), consistent=o.consistent.tolist(),
                           answer_mass_ab=judgement.answer_mass[0].tolist(),
                           answer_mass_ba=judgement.answer_mass[1].tolist())
            if o.p_tie is not None:
                rows[r]["p_tie"] = o.p_tie.tolist()
        return pa.Table.from_pylist(rows, schema=self.schema)
