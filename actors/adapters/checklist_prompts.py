"""What both engines (ours, `engine.py`, and vLLM's, `vllm_engine.py`) build before any weights load:
the tokenizer, the family module, the chat template's prompt encoder (question and system prompt kept
as data) and the answer token ids. Sharing it is what makes the two engines read the same tokens.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from transformers import AutoConfig, AutoTokenizer

from actors.adapters.base import YES_NO, AnswerKind, MediaInput
from actors.adapters.chat_template import answer_groups, answer_token_ids, ends_in_text, template_readout
from actors.adapters.family import Family
from actors.adapters.packing import AnswerGroups
from actors.adapters.prompt_tokens import PromptEncoder
from schemas.job_config import DecodeConfig, ModelConfig


@dataclass(eq=False)
class PreparedItem:
    """One item as both paths feed it to the model: its media as the family prepared them and one
    full token sequence (template, laid-out media tokens, question, generation prompt) per question."""

    media: MediaInput
    visual: Any
    sequences: list[np.ndarray]
    shown_after: tuple = ()  # further media of the same prompt, prepared, in order (a pair's second item)

    @property
    def visuals(self) -> list[Any]:
        """Every medium of the prompt as the family prepared it, in the order the prompt shows them."""
        return [self.visual, *self.shown_after]


class ChecklistPrompts:
    """The prompt side of a checklist engine for one checkpoint, family module and system prompt."""

    def __init__(self, model: ModelConfig, decode: DecodeConfig, family_class: type,
                 system_prompt: str | None = None):
        self.model_id = model.model
        self.decode = decode
        remote = model.trust_remote_code
        self.config = AutoConfig.from_pretrained(model.model, trust_remote_code=remote)
        self.tokenizer = AutoTokenizer.from_pretrained(model.model, trust_remote_code=remote)
        # checked before the weights load, so a wrong setting fails in seconds
        self.family: Family = family_class(model.model, self.config, self.tokenizer, decode)
        # the template's options and the answer prefix, as the driver recorded them in job.json
        template, model = template_readout(self.tokenizer, model, self.config.model_type)
        self.template_kwargs, self.answer_prefix = model.chat_template_kwargs, model.answer_prefix
        self.prompts = PromptEncoder(self.tokenizer, template, system_prompt, model.chat_template_kwargs,
                                     model.answer_prefix or "")
        for media_type in self.family.media_types:  # a template that loses the system prompt fails here, not per item
            self.prompts.segments(self.family.media_content(media_type), "?")
        leading = model.answer_leading_space
        if leading is None:
            probe = self.prompts.render(self.family.media_content(self.family.media_types[0]), ["?", "."])
            leading = ends_in_text(probe, self.tokenizer)
        self.answer_ids = answer_token_ids(self.tokenizer, model.yes_words + model.no_words, leading, model.model)
        self.num_yes = len(model.yes_words)
        if len(set(self.answer_ids)) != len(self.answer_ids):
            raise ValueError(f"yes_words {model.yes_words} and no_words {model.no_words} share a token")
        self.leading_space = leading
        # any id will do for padding: padded positions are masked out
        self.pad_id = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0

    def prepare(self, item: MediaInput, questions: Sequence[str]) -> PreparedItem:
        """Media tensors and the token sequence of every question of `item`."""
        self._check_media(item)
        visual = self.family.prepare_media(item)
        # the question and system prompt are data: only the template's own markers become
        # control tokens, and only the template's placeholder is laid out as media
        sequences = self.prompts.sequences(self.family.media_content(item.media_type), questions,
                                           self.family.media_layout(visual))
        return PreparedItem(item, visual, sequences)

    def unexpanded(self, item: MediaInput, questions: Sequence[str], visual: Any,
                   placeholder: str | None = None) -> list[np.ndarray]:
        """The token sequences of `prepare` with the template's media placeholder left as it is, or
        replaced by `placeholder`: what an engine that lays out the media itself (vLLM's processor) takes."""
        content = self.family.media_content(item.media_type)
        rendered = self.prompts.rendered_placeholder(content, self.family.media_layout(visual)[0])
        return self.prompts.sequences(content, questions, (rendered, placeholder or rendered))

    def _check_media(self, item: MediaInput) -> None:
        if item.media_type not in self.family.media_types:
            raise ValueError(f"{self.model_id} takes {' and '.join(self.family.media_types)}, not {item.media_type}")

    def answer_groups(self, kind: AnswerKind) -> AnswerGroups:
        """The token ids `kind` is read from (ValueError for a level that is not one token)."""
        return answer_groups(self.tokenizer, kind, self.answer_ids, self.num_yes, self.leading_space, self.model_id)

    def kinds(self, answers: Sequence[AnswerKind] | None, questions: Sequence[Sequence[str]]) -> list[AnswerGroups]:
        """Per question index, the token ids it is read from; every item's questions must match `answers`."""
        if answers is None:  # items may then ask different numbers of questions
            return [self.answer_groups(YES_NO)] * max(map(len, questions), default=0)
        wrong = [len(qs) for qs in questions if len(qs) != len(answers)]
        if wrong:
            raise ValueError(f"got {len(answers)} answer kinds for an item with {wrong[0]} questions")
        groups = {kind: self.answer_groups(kind) for kind in dict.fromkeys(answers)}
        return [groups[kind] for kind in answers]
