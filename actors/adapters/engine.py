"""The checklist engine: scoring yes/no questions about media, the same for every model family.

p_yes of a question = softmax over [logsumexp(yes-word logits), logsumexp(no-word logits)] at
the answer position, the next token after the assistant generation prompt. What differs between
families (media tensors, prompt layout, token types, positions) comes from a family module
(`actors/adapters/family.py`).

Reference path (`readout_reference`): one complete stock forward `model(**inputs)` per question.

Fast path (`readout`): all prompts of an item share the template start and the media tokens,
often more. Per `Forward` of `pack_forwards`:
  1. prefix forward: the items' prefixes (longest common token prefix of each item's full
     prompts) right-padded into one batch with a 2D padding mask; the vision tower runs once
     per item inside it; position ids come from the family's rule (1D, or `get_rope_index`).
  2. suffix forward(s) through the language model alone: one row per item against that item's
     row of the prefix KV cache, holding all its question suffixes one after the other. A
     block-diagonal 4D mask lets each suffix see its prefix and itself (causally) but no other
     question; each suffix's positions restart where its prefix ended (plain 2D positions, also
     for M-RoPE models: a text-only suffix has equal components); the hidden state at the end of
     each suffix goes through the LM head.

Both paths read p_yes and the answer mass (`Readout`) from the same whole-vocabulary logits at
the answer position: the mass costs one log-sum-exp over the LM head's output per question. The
same logits give the other question kinds (`AnswerKind`, `packing.read_kinds`): yes/no read
absolutely (P(yes words) under the whole softmax) and ratings (the levels' distribution).

Packed suffixes rather than expanding the cache to one row per question, measured on the
`bench` preset (Qwen2-VL), 2 cores, median s/item over 7 alternating runs:
  24-frame 224x224 video, 29 questions:  expansion 1.146 s, packed suffixes 0.943 s
  448x448 image, 30 questions:           expansion 0.490 s, packed suffixes 0.410 s
Expansion copies the prefix KV once per question; packed rows read each prefix once and carry
no padding between questions. The cost: the suffix forward takes a 4D mask, which sdpa and
eager attention accept and flash_attention_2 does not (refused at load when share_prefix is on).
"""
from __future__ import annotations

import inspect
from collections.abc import Sequence
from copy import deepcopy
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from transformers import AutoModelForImageTextToText, DynamicCache

from actors.adapters.base import AnswerKind, MediaInput, Readout
from actors.adapters.checklist_prompts import ChecklistPrompts, PreparedItem
from actors.adapters.devices import resolve_device, resolve_dtype
from actors.adapters.packing import (
    AnswerGroups,
    additive_mask,
    common_prefix_length,
    pack_forwards,
    pack_suffixes,
    pool_p_yes,
    read_kinds,
    within_window,
)
from schemas.job_config import DecodeConfig, ModelConfig

# Attention implementations that take the suffix forward's block-diagonal 4D mask as is.
MASKABLE_ATTENTION = ("sdpa", "eager")
# Layer types whose whole state is keys and values; anything else is a state carried along the sequence.
ATTENTION_LAYERS = frozenset({"full_attention", "sliding_attention", "chunked_attention"})
# Answer positions per LM-head call on the fast path: bounds the whole-vocabulary logits held
# at once (64 x 152k float32 = 39 MB) whatever the batch.
HEAD_ROWS = 64


@dataclass(eq=False)
class _Prefix:
    """The KV cache of a batch of prefixes, their padding mask and the position after each."""

    kv: list[tuple[torch.Tensor, torch.Tensor]]  # per layer: keys, values (rows, kv heads, width, head dim)
    mask: torch.Tensor  # bool (rows, width)
    next_pos: list[int]


class ChecklistEngine:
    """ChecklistAdapter for every registered family (see `actors/adapters/families/`)."""

    def __init__(self, model: ModelConfig, decode: DecodeConfig, family_class: type,
                 system_prompt: str | None = None):
        self.model_id = model.model
        self.share_prefix = model.share_prefix
        self.token_budget = model.token_budget
        self.system_prompt = system_prompt
        self.device = resolve_device(model.device)
        self.dtype = resolve_dtype(model.dtype, self.device)
        if model.share_prefix and model.attn_implementation not in MASKABLE_ATTENTION:
            raise ValueError(f"share_prefix needs an attention implementation that takes a 4D mask "
                             f"{MASKABLE_ATTENTION}, got {model.attn_implementation!r}; "
                             "use one of those or share_prefix=False")
        text = ChecklistPrompts(model, decode, family_class, system_prompt)
        self.text = text
        config, self.tokenizer, self.family, self.prompts = text.config, text.tokenizer, text.family, text.prompts
        self.template_kwargs, self.answer_prefix = text.template_kwargs, text.answer_prefix
        self.answer_ids, self.num_yes, self.leading_space = text.answer_ids, text.num_yes, text.leading_space
        self.pad_id = text.pad_id
        remote = model.trust_remote_code

        self.model = AutoModelForImageTextToText.from_pretrained(
            model.model, config=config, dtype=self.dtype, attn_implementation=model.attn_implementation,
            trust_remote_code=remote, use_safetensors=True,
        ).to(self.device).eval()
        text_config = self.model.config.get_text_config()
        self.language_model = self.model.get_decoder()  # whatever its family calls it (SmolVLM: text_model)
        layer_types = set(getattr(text_config, "layer_types", None) or [])
        self.sliding_window = getattr(text_config, "sliding_window", None) if "sliding_attention" in layer_types else None
        # layers that carry a state other than keys and values (linear attention, convolutions,
        # state spaces) cannot share one packed row among questions: each question continues its
        # own copy of the prefix state
        self.stateful = bool(layer_types - ATTENTION_LAYERS)
        if model.share_prefix and "chunked_attention" in layer_types:
            raise ValueError(f"{model.model} has chunked-attention layers, which the shared-prefix path does not "
                             "mask; use share_prefix=False")
        self.softcap = getattr(text_config, "final_logit_softcapping", None)
        self.head = self.model.get_output_embeddings()
        self.answer_weight = self.head.weight[self.answer_ids].detach()
        self.answer_bias = None if self.head.bias is None else self.head.bias[self.answer_ids].detach()
        # False: the fast path runs the yes/no rows of the head only and the answer mass is NaN;
        # benchmarks/checklist_throughput.py switches it off to measure what the mass costs
        self.answer_mass = True
        # transformers 5.2x renamed past_key_values to cache (the old name warns, then goes in 5.40)
        self.cache_kw = "cache" if "cache" in inspect.signature(self.language_model.forward).parameters \
            else "past_key_values"

    # ---- inputs -------------------------------------------------------------------------
    def prepare(self, item: MediaInput, questions: Sequence[str]) -> PreparedItem:
        """Media tensors and the token sequence of every question of `item`."""
        return self.text.prepare(item, questions)

    def _capped(self, logits: torch.Tensor) -> torch.Tensor:
        if self.softcap:  # as the model's own forward does (Gemma): cap * tanh(logits / cap)
            logits = torch.tanh(logits / self.softcap) * self.softcap
        return logits

    def answer_groups(self, kind: AnswerKind) -> AnswerGroups:
        """The token ids `kind` is read from (ValueError for a level that is not one token)."""
        return self.text.answer_groups(kind)

    def _kinds(self, answers: Sequence[AnswerKind] | None, questions: Sequence[Sequence[str]]) -> list[AnswerGroups]:
        return self.text.kinds(answers, questions)

    def _read(self, hidden: torch.Tensor, kinds: Sequence[AnswerGroups]) -> tuple[np.ndarray, np.ndarray, list]:
        """(p_yes, answer mass, level probabilities) of final hidden states (rows, width) at answer
        positions, row r read as kinds[r]."""
        plain = all(k.values is None and not k.absolute for k in kinds)
        if not self.answer_mass and plain and all(k == kinds[0] for k in kinds):
            logits = self._capped(torch.nn.functional.linear(hidden, self.answer_weight, self.answer_bias))
            return pool_p_yes(logits, self.num_yes), np.full(len(hidden), np.nan, np.float32), [None] * len(hidden)
        parts = [read_kinds(self._capped(self.head(rows)), kinds[start:start + HEAD_ROWS])
                 for start, rows in zip(range(0, len(hidden), HEAD_ROWS), hidden.split(HEAD_ROWS))]
        return (np.concatenate([p for p, _, _ in parts]), np.concatenate([m for _, m, _ in parts]),
                [levels for _, _, part in parts for levels in part])

    def score(self, items: Sequence[MediaInput], questions: Sequence[Sequence[str]]) -> list[np.ndarray]:
        return [r.p_yes for r in self.readout(items, questions)]

    def score_reference(self, items: Sequence[MediaInput], questions: Sequence[Sequence[str]]) -> list[np.ndarray]:
        return [r.p_yes for r in self.readout_reference(items, questions)]

    # ---- reference path -----------------------------------------------------------------
    @torch.inference_mode()
    def readout_reference(self, items: Sequence[MediaInput], questions: Sequence[Sequence[str]],
                          answers: Sequence[AnswerKind] | None = None) -> list[Readout]:
        _check_lengths(items, questions)
        kinds = self._kinds(answers, questions)
        return [self.reference_prepared(self.prepare(item, qs), kinds) for item, qs in zip(items, questions)]

    @torch.inference_mode()
    def reference_prepared(self, prepared: PreparedItem, kinds: Sequence[AnswerGroups]) -> Readout:
        """One complete stock forward per question of a prepared prompt, question q read as kinds[q]."""
        media = self.family.media_kwargs(prepared.visuals, self.device, self.dtype)
        result = _empty(len(prepared.sequences))
        for q, seq in enumerate(prepared.sequences):
            ids = torch.from_numpy(seq)[None].to(self.device)
            out = self.model(input_ids=ids, attention_mask=torch.ones_like(ids), use_cache=False,
                             logits_to_keep=1, **self.family.token_types(ids), **media)
            p_yes, mass, levels = read_kinds(out.logits[:, -1], [kinds[q]])
            result.p_yes[q], result.answer_mass[q], result.level_probs[q] = p_yes[0], mass[0], levels[0]
        return _finished(result)

    # ---- fast path ----------------------------------------------------------------------
    @torch.inference_mode()
    def readout(self, items: Sequence[MediaInput], questions: Sequence[Sequence[str]],
                answers: Sequence[AnswerKind] | None = None) -> list[Readout]:
        if not self.share_prefix:
            return self.readout_reference(items, questions, answers)
        _check_lengths(items, questions)
        kinds = self._kinds(answers, questions)
        return self.readout_prepared([self.prepare(item, qs) if qs else None for item, qs in zip(items, questions)],
                                     kinds)

    @torch.inference_mode()
    def readout_prepared(self, prepared: list[PreparedItem | None], kinds: Sequence[AnswerGroups]) -> list[Readout]:
        """The fast path on prepared prompts (None: a prompt without questions), question q of each
        read as kinds[q]."""
        prepared = list(prepared)
        prefix_lens = [common_prefix_length(p.sequences) if p else 0 for p in prepared]
        results = [_empty(len(p.sequences) if p else 0) for p in prepared]
        for i, (p, n) in enumerate(zip(prepared, prefix_lens)):
            if p and self._media_after(p, n):  # a template that puts the question before the media
                results[i] = self.reference_prepared(p, kinds)
                prepared[i] = None
        suffix_lens = [[len(s) - n for s in p.sequences] if p else [] for p, n in zip(prepared, prefix_lens)]
        if self.stateful:
            for i, p in enumerate(prepared):
                if p:
                    results[i] = self._score_stateful(p, prefix_lens[i], kinds)
            return [_finished(r) for r in results]
        # items whose media a model cannot take in one forward (family.batch_key) go in separate ones
        batch_key = getattr(self.family, "batch_key", lambda media: "any")
        keys = [batch_key(p.visual) if p else None for p in prepared]
        for key in dict.fromkeys(k for k in keys if k is not None):
            group_lens = [lens if k == key else [] for lens, k in zip(suffix_lens, keys)]
            for fwd in pack_forwards(prefix_lens, group_lens, self.token_budget):
                prefix = self._prefix_forward([prepared[i] for i in fwd.items], [prefix_lens[i] for i in fwd.items])
                for chunk in fwd.chunks:
                    rows = [fwd.items.index(i) for i in chunk]
                    suffixes = [[prepared[i].sequences[q][prefix_lens[i]:] for q in qs] for i, qs in chunk.items()]
                    read = [kinds[q] for qs in chunk.values() for q in qs]
                    answers = zip(*self._suffix_forward(prefix, rows, suffixes, read))
                    for i, qs in chunk.items():
                        for q in qs:
                            results[i].p_yes[q], results[i].answer_mass[q], results[i].level_probs[q] = next(answers)
        return [_finished(r) for r in results]

    def _media_after(self, item: PreparedItem, prefix_len: int) -> bool:
        """Whether a media token lies past the shared prefix (the suffix forward takes text only)."""
        tail = torch.from_numpy(np.concatenate([s[prefix_len:] for s in item.sequences]))[None]
        return any(bool(t.any()) for t in self.family.token_types(tail).values())

    def _prefix_positions(self, ids: torch.Tensor, mask: torch.Tensor, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        if self.family.position_rule == "1d":
            return (mask.cumsum(-1) - 1).clamp(min=0)
        rope_index = self.model.model.get_rope_index
        accepted = inspect.signature(rope_index).parameters
        position_ids, _ = rope_index(ids, attention_mask=mask, **{k: v for k, v in inputs.items() if k in accepted})
        return position_ids

    def _prefix_forward(self, group: list[PreparedItem], lengths: list[int]) -> _Prefix:
        width = max(lengths)
        ids = torch.full((len(group), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(group), width), dtype=torch.long)
        for row, (item, n) in enumerate(zip(group, lengths)):
            ids[row, :n] = torch.from_numpy(item.sequences[0][:n])
            mask[row, :n] = 1
        ids, mask = ids.to(self.device), mask.to(self.device)
        inputs = {**self.family.media_kwargs([v for it in group for v in it.visuals], self.device, self.dtype),
                  **self.family.token_types(ids)}
        position_ids = self._prefix_positions(ids, mask, inputs)
        # no config: every layer keeps its whole prefix; sliding windows are applied by the masks
        cache = DynamicCache()
        self.model.model(input_ids=ids, attention_mask=mask, position_ids=position_ids, use_cache=True,
                         **{self.cache_kw: cache}, **inputs)
        flat = position_ids if position_ids.ndim == 2 else position_ids.amax(0)
        # the suffix continues one after the prefix's last token, a text token (whose M-RoPE
        # components are equal); not after the largest position: a Qwen2-VL video's temporal
        # positions run past the text that follows it
        last = torch.tensor(lengths, device=self.device) - 1
        next_pos = flat[torch.arange(len(group), device=self.device), last] + 1
        return _Prefix([(layer.keys, layer.values) for layer in cache.layers], mask.bool(), next_pos.tolist())

    def _suffix_forward(self, prefix: _Prefix, rows: list[int], suffixes: list[list[np.ndarray]],
                        kinds: list[AnswerGroups]) -> tuple[np.ndarray, np.ndarray, list]:
        """(p_yes, answer mass, level probabilities) of every suffix, read as `kinds` (one per suffix,
        in order); row r packs suffixes[r] one after the other against prefix row rows[r]."""
        layout = pack_suffixes(suffixes, prefix.mask[rows].cpu(), [prefix.next_pos[r] for r in rows], self.pad_id)
        mask: Any = additive_mask(layout.allowed, self.dtype, self.device)
        if self.sliding_window is not None:
            sliding = within_window(layout, self.sliding_window)
            mask = {"full_attention": mask, "sliding_attention": additive_mask(sliding, self.dtype, self.device)}
        select = torch.tensor(rows, device=self.device)
        cache = DynamicCache([(k[select], v[select]) for k, v in prefix.kv])
        out = self.language_model(input_ids=layout.ids.to(self.device), attention_mask=mask,
                                  position_ids=layout.positions.to(self.device), use_cache=True,
                                  **{self.cache_kw: cache})
        return self._read(out.last_hidden_state[layout.answers], kinds)

    def _score_stateful(self, item: PreparedItem, n: int, kinds: list[AnswerGroups]) -> Readout:
        """One item on a model with recurrent layers: its prefix alone (no padding may enter the
        state), then its questions in chunks under the token budget, each question in its own row
        on its own copy of the prefix state, right-padded (padding after a question's last token
        cannot reach it: every layer is causal)."""
        ids = torch.from_numpy(item.sequences[0][:n])[None].to(self.device)
        mask = torch.ones_like(ids)
        inputs = {**self.family.media_kwargs(item.visuals, self.device, self.dtype), **self.family.token_types(ids)}
        position_ids = self._prefix_positions(ids, mask, inputs)
        cache = DynamicCache(config=self.model.config)
        self.model.model(input_ids=ids, attention_mask=mask, position_ids=position_ids, use_cache=True,
                         **{self.cache_kw: cache}, **inputs)
        next_pos = int((position_ids if position_ids.ndim == 2 else position_ids.amax(0))[0, -1]) + 1
        suffixes = [s[n:] for s in item.sequences]
        result = _empty(len(suffixes))
        start = 0
        while start < len(suffixes):
            end = start + 1  # at least one question per chunk
            while end < len(suffixes) and (end + 1 - start) * (n + max(map(len, suffixes[start:end + 1]))) <= self.token_budget:
                end += 1
            chunk = suffixes[start:end]
            width = max(map(len, chunk))
            rows = torch.full((len(chunk), width), self.pad_id, dtype=torch.long)
            real = torch.zeros((len(chunk), n + width), dtype=torch.long)
            real[:, :n] = 1
            for r, s in enumerate(chunk):
                rows[r, :len(s)] = torch.from_numpy(s)
                real[r, n:n + len(s)] = 1
            copy = deepcopy(cache)
            copy.reorder_cache(torch.zeros(len(chunk), dtype=torch.long, device=self.device))
            out = self.language_model(input_ids=rows.to(self.device), attention_mask=real.to(self.device),
                                      position_ids=(next_pos + torch.arange(width, device=self.device)).expand(len(chunk), -1),
                                      use_cache=True, **{self.cache_kw: copy})
            last = torch.tensor([len(s) - 1 for s in chunk], device=self.device)
            hidden = out.last_hidden_state[torch.arange(len(chunk), device=self.device), last]
            result.p_yes[start:end], result.answer_mass[start:end], result.level_probs[start:end] = \
                self._read(hidden, kinds[start:end])
            start = end
        return result


def _empty(n: int) -> Readout:
    return Readout(np.empty(n, np.float32), np.empty(n, np.float32), [None] * n)


def _finished(result: Readout) -> Readout:
    """`result` with level_probs None where no question is a rating."""
    if result.level_probs is not None and all(levels is None for levels in result.level_probs):
        return Readout(result.p_yes, result.answer_mass)
    return result


def _check_lengths(items: Sequence[MediaInput], questions: Sequence[Sequence[str]]) -> None:
    if len(items) != len(questions):
        raise ValueError(f"got {len(items)} items but {len(questions)} question lists")
