"""The chat template a checkpoint is scored with, and the answer tokens that follow it.

The template comes from the checkpoint (the tokenizer's, else a processor's legacy
chat_template.json) or from a file that `model.chat_template` names; transformers ships no
template for the vision-language families, so a checkpoint without one is refused rather
than scored with a guessed layout.

The answer words are pooled at the position after the generation prompt. Where that prompt
ends in text (SmolVLM's `Assistant:`), a model writes the answer after a space, as `" Yes"`;
after a newline or a special token (`<|im_start|>assistant\\n`), as `"Yes"`. The generation prompt
is rendered with `model.chat_template_kwargs` and followed by `model.answer_prefix`, both resolved from
the checkpoint by `actors/answer_readout.py`.
"""
from __future__ import annotations

import inspect
import json
from collections.abc import Sequence

import fsspec
from transformers import PreTrainedTokenizerBase
from transformers.utils import cached_file

from actors.adapters.base import AnswerKind
from actors.adapters.packing import AnswerGroups
from actors.answer_readout import resolve_readout
from schemas.job_config import ModelConfig


def load_chat_template(tokenizer, checkpoint: str, template_path: str | None) -> str:
    """The Jinja source of the template to use; ValueError when there is none."""
    if template_path is not None:
        with fsspec.open(template_path, "r", encoding="utf-8") as f:
            return f.read()
    if isinstance(tokenizer.chat_template, str) and tokenizer.chat_template:
        return tokenizer.chat_template
    if isinstance(tokenizer.chat_template, dict) and "default" in tokenizer.chat_template:
        return tokenizer.chat_template["default"]
    legacy = cached_file(checkpoint, "chat_template.json", _raise_exceptions_for_missing_entries=False)
    if legacy is not None:
        with open(legacy, encoding="utf-8") as f:
            template = json.load(f).get("chat_template")
        if template:
            return template
    raise ValueError(f"{checkpoint} has no chat template (none in tokenizer_config.json, chat_template.jinja "
                     "or chat_template.json); name a Jinja template file with model.chat_template")


def ends_in_text(prompt: str, tokenizer) -> bool:
    """Whether `prompt` ends in neither whitespace nor an added (special) token."""
    if not prompt or prompt[-1].isspace():
        return False
    return not any(prompt.endswith(t.content) for t in tokenizer.added_tokens_decoder.values())


def answer_token_ids(tokenizer, words: Sequence[str], leading_space: bool, checkpoint: str) -> list[int]:
    """One token id per answer word (with a leading space when asked); ValueError for a word that
    is not a single token of this tokenizer."""
    ids = []
    for word in words:
        text = " " + word.lstrip() if leading_space else word
        encoded = tokenizer.encode(text, add_special_tokens=False)
        if len(encoded) != 1:
            raise ValueError(f"answer word {text!r} is {len(encoded)} tokens {tokenizer.convert_ids_to_tokens(encoded)} "
                             f"for {checkpoint}'s tokenizer; every answer word (yes/no words, rating levels) must be "
                             "exactly one token")
        ids.append(encoded[0])
    return ids


def case_forms(word: str) -> list[str]:
    """A rating level's forms pooled into its logit: as written, lower case, capitalised."""
    return list(dict.fromkeys([word, word.lower(), word.capitalize()]))


def answer_groups(tokenizer, kind: AnswerKind, yes_no_ids: list[int], num_yes: int, leading_space: bool,
                  checkpoint: str) -> AnswerGroups:
    """The token ids `kind` is read from: the model's yes and no words, or each rating level's case
    forms; ValueError for a level form that is not one token, or two levels that share a token."""
    if not kind.levels:
        return AnswerGroups((tuple(yes_no_ids[:num_yes]), tuple(yes_no_ids[num_yes:])), None, kind.absolute)
    groups = [tuple(dict.fromkeys(answer_token_ids(tokenizer, case_forms(level), leading_space, checkpoint)))
              for level in kind.levels]
    seen: dict[int, str] = {}
    for level, ids in zip(kind.levels, groups):
        for i in ids:
            if seen.setdefault(i, level) != level:
                raise ValueError(f"rating levels {seen[i]!r} and {level!r} share the token "
                                 f"{tokenizer.convert_ids_to_tokens(i)!r} for {checkpoint}'s tokenizer")
    return AnswerGroups(tuple(groups), tuple(kind.values), False)


def added_token_contents(tokenizer) -> set[str]:
    """The text of every added token (special or not) of `tokenizer`."""
    return {t.content for t in tokenizer.added_tokens_decoder.values()}


def template_readout(tokenizer, model: ModelConfig, model_type: str | None) -> tuple[str, ModelConfig]:
    """(template source, `model` with its template options and answer prefix resolved); ValueError for
    an option that would replace an argument of the rendering itself rather than reach the template."""
    template = load_chat_template(tokenizer, model.model, model.chat_template)
    model = resolve_readout(model, model_type, template, added_token_contents(tokenizer))
    reserved = set(inspect.signature(PreTrainedTokenizerBase.apply_chat_template).parameters) | {"messages"}
    clash = sorted(reserved.intersection(model.chat_template_kwargs or {}) - {"kwargs"})
    if clash:
        raise ValueError(f"model.chat_template_kwargs {clash} name arguments of the rendering itself, not "
                         "template options; leave them out")
    return template, model
