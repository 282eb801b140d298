"""Pairwise judging with the checklist engine: two media in one prompt, both orders, one forward's logits.

A pair (a, b) is asked twice per question: order "ab" shows a then b, order "ba" shows b then a. Each
order is one prompt (system turn, the two media, then the question); its questions share the
prefix up to the question through the engine's fast path (`ChecklistEngine.readout_prepared`), and
the pairs of a batch, both orders, go through it together. At the answer position the position
words are pooled (each word's case forms) and renormalised over the word sets: (first, second) or
(first, second, tie). `actors/pair_outcome.py` turns both orders into p_a.

Answer prefix. A generative judge that writes "Image 1 is better" is read with answer_prefix
"Image ": the words are read as the tokenizer splits prefix + word. For Qwen tokenizers "Image 1" is
`Image`, ` `, `1`: the prompt ends in the space token and the word is `1`. For a tokenizer with a
single ` 1` token the prompt ends at `Image` and the word is ` 1`. `prefix_head` finds that split.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from transformers import AutoConfig, AutoTokenizer

from actors.adapters.base import MediaInput
from actors.adapters.chat_template import answer_token_ids, case_forms, template_readout
from actors.adapters.engine import ChecklistEngine, PreparedItem
from actors.adapters.families import family_class, supported_model_types
from actors.adapters.packing import AnswerGroups
from actors.pair_outcome import PairOutcome, pair_outcome
from schemas.checklist import PROMPT_PLACEHOLDER, Checklist
from schemas.status import SCORE_ERROR
from schemas.job_config import DecodeConfig, ModelConfig


def word_forms(words: Sequence[str]) -> list[str]:
    """A word set's forms pooled into its logit: each word as written, lower case and capitalised."""
    return list(dict.fromkeys(f for w in words for f in case_forms(w.strip())))


def prefix_head(tokenizer, prefix: str, words: Sequence[str], checkpoint: str) -> tuple[str, list[int]]:
    """(the text of `prefix` the prompt ends with, one token id per word) where each word is read as
    the tokenizer splits `prefix + word`: its last token holds the whole word and what comes before
    it is the same for every word. ValueError otherwise."""
    heads, ids = set(), []
    for word in words:
        whole = tokenizer.encode(prefix + word, add_special_tokens=False)
        last = tokenizer.decode(whole[-1:])
        text = prefix + word
        head = text[:len(text) - len(last)]
        if not (text.endswith(last) and len(last) >= len(word)) or \
                tokenizer.encode(head, add_special_tokens=False) != whole[:-1]:
            raise ValueError(f"answer word {word!r} after answer_prefix {prefix!r} is not one token of "
                             f"{checkpoint}'s tokenizer: {tokenizer.convert_ids_to_tokens(whole)}")
        heads.add(head)
        ids.append(whole[-1])
    if len(heads) != 1:
        raise ValueError(f"the answer words {list(words)} split answer_prefix {prefix!r} differently "
                         f"({sorted(heads)}) for {checkpoint}'s tokenizer; they cannot be read at one position")
    return heads.pop(), ids


@dataclass(frozen=True)
class PairJudgement:
    """One pair's outcome, or why it failed (outcome None)."""

    outcome: PairOutcome | None
    error: str | None = None
    status: str = SCORE_ERROR  # of a failed pair
    # per order ("ab", "ba"), (Q,) the position words' probability under the whole vocabulary
    answer_mass: tuple[np.ndarray, np.ndarray] | None = None


class PairReader:
    """Judges pairs of decoded items with a checklist of mode pairwise (model code: no Ray)."""

    def __init__(self, model: ModelConfig, decode: DecodeConfig, checklist: Checklist):
        if checklist.mode != "pairwise":
            raise ValueError(f"checklist {checklist.name!r} is not pairwise (mode: {checklist.mode})")
        self.checklist = checklist
        config = AutoConfig.from_pretrained(model.model, trust_remote_code=model.trust_remote_code)
        family = family_class(config.model_type)
        if family is None:
            raise ValueError(f"{model.model}: model type {config.model_type!r} has no family module (supported: "
                             f"{supported_model_types()}); the generic path shows one medium per prompt, and a "
                             "pairwise checklist needs two")
        sets = [checklist.first_words, checklist.second_words] + ([checklist.tie_words] if checklist.tie_words else [])
        forms = [word_forms(words) for words in sets]
        update: dict = {}
        if checklist.answer_prefix:
            tokenizer = AutoTokenizer.from_pretrained(model.model, trust_remote_code=model.trust_remote_code)
            # the checklist's prefix follows the model's own (a thinking checkpoint's answer opening)
            own = template_readout(tokenizer, model, config.model_type)[1].answer_prefix or ""
            head, flat = prefix_head(tokenizer, checklist.answer_prefix, [f for fs in forms for f in fs], model.model)
            update = {"answer_prefix": own + head, "answer_leading_space": False}
        self.engine = ChecklistEngine(model.model_copy(update=update), decode, family, checklist.system_prompt)
        kinds = ("image", "video") if checklist.media_type == "any" else (checklist.media_type,)
        two = getattr(self.engine.family, "two_media", ())
        if not all(k in two for k in kinds):
            raise ValueError(f"{model.model}: the {config.model_type} family cannot show two "
                             f"{' or '.join(k + 's' for k in kinds if k not in two)} in one prompt, which a pairwise "
                             "checklist needs")
        if not checklist.answer_prefix:
            tok = self.engine.tokenizer
            flat = answer_token_ids(tok, [f for fs in forms for f in fs], self.engine.leading_space, model.model)
        groups, start = [], 0
        for fs in forms:
            groups.append(tuple(dict.fromkeys(flat[start:start + len(fs)])))
            start += len(fs)
        if len({i for g in groups for i in g}) != sum(map(len, groups)):
            raise ValueError(f"the position words {sets} share a token for {model.model}'s tokenizer")
        # read as levels: their softmax over the pooled word sets is each order's distribution
        self.kind = AnswerGroups(tuple(groups), (1.0, 0.0, 0.5)[:len(groups)], False)

    def _content(self, media_type: str, prompt: str | None) -> list[dict]:
        before, between, _ = self.checklist.media_texts()
        texts = [t.replace(PROMPT_PLACEHOLDER, prompt) if prompt is not None else t for t in (before, between)]
        media = self.engine.family.media_content(media_type)
        parts = [{"type": "text", "text": texts[0]}] if texts[0] else []
        parts.append(media)
        parts += [{"type": "text", "text": texts[1]}] if texts[1] else []
        return parts + [media]

    def prepare(self, first: tuple[MediaInput, object], second: tuple[MediaInput, object],
                prompt: str | None) -> PreparedItem:
        """The prompt showing `first` then `second` (each: the item and its media as the family prepared
        them), one token sequence per question."""
        (item, visual), (other, other_visual) = first, second
        if item.media_type != other.media_type:
            raise ValueError(f"a pair shows two media of one kind, got a {item.media_type} and a {other.media_type}")
        family = self.engine.family
        sequences = self.engine.prompts.sequences(self._content(item.media_type, prompt), self.checklist.render(prompt),
                                                  [family.media_layout(visual), family.media_layout(other_visual)])
        return PreparedItem(item, visual, sequences, (other_visual,))

    def judge(self, items: dict[str, MediaInput], pairs: Sequence[tuple[str, str, str | None]],
              reference: bool = False) -> list[PairJudgement]:
        """Each pair (a id, b id, prompt) of `items`, both orders; every item's media are prepared once.
        `reference`: one complete forward per (pair, order, question), nothing shared."""
        visuals: dict[str, object] = {}
        failed: dict[str, str] = {}
        for key in dict.fromkeys(k for a, b, _ in pairs for k in (a, b)):
            try:
                visuals[key] = self.engine.family.prepare_media(items[key])
            except Exception as e:  # noqa: BLE001 - the item's pairs fail, not the batch
                failed[key] = f"item {key!r}: {type(e).__name__}: {e}"
        prepared: list[tuple[PreparedItem, PreparedItem] | str] = []
        for a, b, prompt in pairs:
            if a in failed or b in failed:
                prepared.append(failed.get(a) or failed[b])
                continue
            try:
                prepared.append((self.prepare((items[a], visuals[a]), (items[b], visuals[b]), prompt),
                                 self.prepare((items[b], visuals[b]), (items[a], visuals[a]), prompt)))
            except ValueError as e:
                prepared.append(f"{type(e).__name__}: {e}")
        ok = [p for p in prepared if not isinstance(p, str)]
        flat = [order for p in ok for order in p]
        kinds = [self.kind] * len(self.checklist.questions)
        if reference:
            readouts = [self.engine.reference_prepared(p, kinds) for p in flat]
        else:
            readouts = self.engine.readout_prepared(flat, kinds)
        answers = iter(zip(readouts[::2], readouts[1::2]))
        out = []
        for p in prepared:
            if isinstance(p, str):
                out.append(PairJudgement(None, p))
                continue
            ab, ba = next(answers)
            out.append(PairJudgement(pair_outcome(np.stack(ab.level_probs), np.stack(ba.level_probs)),
                                     answer_mass=(np.asarray(ab.answer_mass, np.float32),
                                                  np.asarray(ba.answer_mass, np.float32))))
        return out
