"""The generic path: any other `AutoModelForImageTextToText` checkpoint that ships a stock
`AutoProcessor` and a chat template, scored by the reference path only (one forward per
question) through the checkpoint's own processor. Slower than a family module (no shared
prefix), and its inputs are whatever the processor makes of the frames.

The processor tokenizes the rendered prompt itself, with special-token parsing on, so a
question or system prompt that spells one of the tokenizer's added tokens could inject it: such
an item is refused with an error rather than scored. `trust_remote_code` stays off unless the
job asks for it.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from PIL import Image
from transformers import AutoModelForImageTextToText, AutoProcessor

from actors.adapters.base import YES_NO, AnswerKind, MediaInput, Readout
from actors.adapters.chat_template import answer_groups, answer_token_ids, ends_in_text, template_readout
from actors.adapters.devices import resolve_device, resolve_dtype
from actors.adapters.packing import AnswerGroups, read_kinds
from schemas.job_config import ModelConfig


class GenericAdapter:
    """ChecklistAdapter for checkpoints without a family module; `readout` is `readout_reference`."""

    def __init__(self, model: ModelConfig, model_type: str, system_prompt: str | None = None):
        self.model_id = model.model
        self.system_prompt = system_prompt
        self.device = resolve_device(model.device)
        self.dtype = resolve_dtype(model.dtype, self.device)
        try:
            self.processor = AutoProcessor.from_pretrained(model.model, trust_remote_code=model.trust_remote_code)
        except Exception as exc:  # noqa: BLE001 - any failure means the same to the user
            raise ValueError(f"{model.model} (model_type {model_type!r}) has no family module, and its stock "
                             f"processor cannot be built here ({type(exc).__name__}: {exc})") from exc
        if getattr(self.processor, "image_processor", None) is None:
            raise ValueError(f"{model.model} (model_type {model_type!r}) has no family module, and "
                             "AutoProcessor gives no image processor for it (no processor config in the checkpoint)")
        self.tokenizer = self.processor.tokenizer
        # rendered with the same template options and answer prefix as a family module's prompts
        self.template, model = template_readout(self.tokenizer, model, model_type)
        self.template_kwargs, self.answer_prefix = model.chat_template_kwargs, model.answer_prefix
        leading = model.answer_leading_space
        if leading is None:
            leading = ends_in_text(self._render("image", "?"), self.tokenizer)
        self.answer_ids = answer_token_ids(self.tokenizer, model.yes_words + model.no_words, leading, model.model)
        self.num_yes = len(model.yes_words)
        self.leading_space = leading
        self.reserved = {t.content for t in self.tokenizer.added_tokens_decoder.values()}
        self.model = AutoModelForImageTextToText.from_pretrained(
            model.model, dtype=self.dtype, attn_implementation=model.attn_implementation,
            trust_remote_code=model.trust_remote_code, use_safetensors=True,
        ).to(self.device).eval()

    def _render(self, media_type: str, question: str) -> str:
        messages = [] if self.system_prompt is None else [{"role": "system", "content": self.system_prompt}]
        messages.append({"role": "user", "content": [{"type": media_type}, {"type": "text", "text": question}]})
        return self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True,
                                                  chat_template=self.template, **(self.template_kwargs or {})) \
            + (self.answer_prefix or "")

    def _check_text(self, text: str) -> None:
        found = sorted(t for t in self.reserved if t in text)
        if found:
            raise ValueError(f"the question or system prompt contains reserved tokens {found}; the generic path "
                             "cannot keep them as text, so the item is refused")

    def _inputs(self, item: MediaInput, question: str) -> dict[str, torch.Tensor]:
        self._check_text(question)
        self._check_text(self.system_prompt or "")
        text = self._render(item.media_type, question)
        if item.media_type == "image":
            inputs = self.processor(text=[text], images=[Image.fromarray(item.frames[0])], return_tensors="pt")
        else:
            inputs = self.processor(text=[text], videos=[item.frames], return_tensors="pt")
        return {k: v.to(self.device, self.dtype) if v.is_floating_point() else v.to(self.device)
                for k, v in inputs.items() if isinstance(v, torch.Tensor)}

    def answer_groups(self, kind: AnswerKind) -> AnswerGroups:
        """The token ids `kind` is read from (ValueError for a level that is not one token)."""
        return answer_groups(self.tokenizer, kind, self.answer_ids, self.num_yes, self.leading_space, self.model_id)

    @torch.inference_mode()
    def readout_reference(self, items: Sequence[MediaInput], questions: Sequence[Sequence[str]],
                          answers: Sequence[AnswerKind] | None = None) -> list[Readout]:
        if len(items) != len(questions):
            raise ValueError(f"got {len(items)} items but {len(questions)} question lists")
        results = []
        for item, qs in zip(items, questions):
            kinds = [self.answer_groups(kind) for kind in (answers if answers is not None else [YES_NO] * len(qs))]
            if len(kinds) != len(qs):
                raise ValueError(f"got {len(kinds)} answer kinds for an item with {len(qs)} questions")
            result = Readout(np.empty(len(qs), np.float32), np.empty(len(qs), np.float32), [None] * len(qs))
            for q, question in enumerate(qs):
                logits = self.model(**self._inputs(item, question), use_cache=False, logits_to_keep=1).logits
                p_yes, mass, levels = read_kinds(logits[:, -1], [kinds[q]])
                result.p_yes[q], result.answer_mass[q], result.level_probs[q] = p_yes[0], mass[0], levels[0]
            results.append(result if any(v is not None for v in result.level_probs)
                           else Readout(result.p_yes, result.answer_mass))
        return results

    def readout(self, items: Sequence[MediaInput], questions: Sequence[Sequence[str]],
                answers: Sequence[AnswerKind] | None = None) -> list[Readout]:
        return self.readout_reference(items, questions, answers)

    def score_reference(self, items: Sequence[MediaInput], questions: Sequence[Sequence[str]]) -> list[np.ndarray]:
        return [r.p_yes for r in self.readout_reference(items, questions)]

    def score(self, items: Sequence[MediaInput], questions: Sequence[Sequence[str]]) -> list[np.ndarray]:
        return self.score_reference(items, questions)
