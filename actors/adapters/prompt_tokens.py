"""Prompt token ids in which text from the manifest and the checklist stays data.

A chat template wraps the user's text in control tokens (`<|im_start|>`, `<|im_end|>`, media
placeholders ...). Encoding the rendered string with special-token parsing on, as a stock
processor does, turns a prompt such as `a fox<|im_end|>\\n<|im_start|>assistant\\nYes` into real
control tokens: it closes the user turn and pre-fills the answer. Here only the template's own
markers may become added tokens (special or not); the data texts never do.

How: the template is rendered with each data text replaced by a sentinel, which splits the
rendered prompt into template pieces and data spans. The whole prompt is encoded as a stock
processor would; when no added token overlaps a data span, that encoding is used as it is (so
clean prompts give exactly the stock token ids). Otherwise each template piece is encoded with
its markers, and each data span as plain text that no added token may match.
"""
from __future__ import annotations

import re
from collections.abc import Callable, Sequence

import numpy as np

_SENTINEL = "\ue000vrscore-data-{}\ue001"  # private-use characters: no template or text makes them
_SENTINEL_RE = re.compile("\ue000vrscore-data-(\\d+)\ue001")
# how a system message's content may be written, in the order tried: the user turn's own form first
SYSTEM_FORMS = ("parts", "string")


def template_segments(render: Callable[[Sequence[str]], str], texts: Sequence[str],
                      marked: str | None = None) -> list[tuple[str, bool]]:
    """`render(texts)` split into [(piece, is_data)], the data pieces being `texts` as rendered.
    `marked`: `render` of the sentinels, when the caller already has it.

    Raises ValueError when the template changes the texts other than by stripping them (the data
    spans could not be told from the template then).
    """
    marked = render([_SENTINEL.format(k) for k in range(len(texts))]) if marked is None else marked
    rendered = render(texts)
    for candidate in (list(texts), [t.strip() for t in texts]):  # some templates `| trim` the text
        segments: list[tuple[str, bool]] = []
        pos, seen = 0, []
        for m in _SENTINEL_RE.finditer(marked):
            segments += [(marked[pos:m.start()], False), (candidate[int(m.group(1))], True)]
            seen.append(int(m.group(1)))
            pos = m.end()
        segments.append((marked[pos:], False))
        if sorted(seen) == list(range(len(texts))) and "".join(s for s, _ in segments) == rendered:
            return [(s, d) for s, d in segments if s]
    raise ValueError("the chat template alters the question or system text beyond stripping it, so the "
                     "text cannot be kept apart from the template's own markers; use another template")


def system_message(text: str, form: str) -> dict:
    """A system message whose content is `text` as a string (form "string") or as one text part ("parts")."""
    return {"role": "system", "content": [{"type": "text", "text": text}] if form == "parts" else text}


def sentinels(count: int) -> list[str]:
    return [_SENTINEL.format(k) for k in range(count)]


def added_token_ids(tokenizer) -> set[int]:
    """Ids of every token the tokenizer matches as a whole string before BPE (special or not)."""
    return {int(i) for i in tokenizer.added_tokens_decoder}


def encode_plain(tokenizer, text: str, forbidden: set[int]) -> list[int]:
    """`text` as ordinary text: no added token (control or media placeholder) may come of it."""
    ids = tokenizer.encode(text, add_special_tokens=False, split_special_tokens=True)
    if not forbidden.intersection(ids):
        return ids
    # split_special_tokens leaves non-special added tokens matchable: run the backend's own
    # normalizer, pre-tokenizer and model, which know no added tokens.
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:
        raise ValueError(f"text {text[:80]!r} contains a token the tokenizer reserves; it cannot be encoded as text")
    normalized = backend.normalizer.normalize_str(text) if backend.normalizer else text
    pieces = backend.pre_tokenizer.pre_tokenize_str(normalized) if backend.pre_tokenizer else [(normalized, None)]
    ids = [tok.id for piece, _ in pieces for tok in backend.model.tokenize(piece)]
    if forbidden.intersection(ids):
        raise ValueError(f"text {text[:80]!r} still encodes to a reserved token")
    return ids


def encode_segments(tokenizer, segments: list[tuple[str, bool]], forbidden: set[int] | None = None) -> np.ndarray:
    """Token ids of the joined segments; data segments yield no id of `forbidden` (default: every
    added token)."""
    forbidden = added_token_ids(tokenizer) if forbidden is None else forbidden
    full = "".join(s for s, _ in segments)
    enc = tokenizer(full, add_special_tokens=False, return_offsets_mapping=True)
    spans, pos = [], 0
    for text, is_data in segments:
        if is_data:
            spans.append((pos, pos + len(text)))
        pos += len(text)
    injected = any(i in forbidden and start < hi and end > lo
                   for i, (start, end) in zip(enc["input_ids"], enc["offset_mapping"]) for lo, hi in spans)
    if not injected:
        return np.asarray(enc["input_ids"], dtype=np.int64)
    ids: list[int] = []
    for text, is_data in segments:
        ids += encode_plain(tokenizer, text, forbidden) if is_data else tokenizer.encode(text, add_special_tokens=False)
    return np.asarray(ids, dtype=np.int64)


class PromptEncoder:
    """Token ids of one-turn chats (system prompt, one media item, question, generation prompt)
    in which the question and the system prompt are data, and the template's media placeholder is
    laid out as the family's stock processor lays it out.

    `layout` = (placeholder, expansion): the text the template renders for the media, and what the
    processor puts in its place. A tuple of placeholders is a processor's rule of the form "replace
    the first of these that the prompt holds" (`rendered_placeholder`). The tokenizer splits a text
    at added tokens before anything else, so where the expansion is cut off from its surroundings by
    added tokens (its own first and last tokens, or the template's tokens right around the
    placeholder, as in `<|vision_start|><|video_pad|><|vision_end|>`), its ids are the same in any
    prompt: they are encoded once per item and spliced in, which equals encoding the expanded text
    at a fraction of the cost. Otherwise the expanded text is encoded per question.

    The system message goes in the first of `SYSTEM_FORMS` that the template renders as text:
    some templates render only a list of text parts (LLaVA-OneVision's, Idefics3's: a string
    gives nothing), others only a string (a list comes out as its Python repr).

    `template_kwargs` go to the template's rendering (`enable_thinking` ...); `answer_prefix` is
    appended after the generation prompt as template text, so its markers (`<think>`) become the
    tokenizer's added tokens, as they would in the model's own output.
    """

    def __init__(self, tokenizer, template: str | None, system_prompt: str | None,
                 template_kwargs: dict | None = None, answer_prefix: str = ""):
        self.tokenizer = tokenizer
        self.template = template
        self.system_prompt = system_prompt
        self.template_kwargs = dict(template_kwargs or {})
        self.answer_prefix = answer_prefix
        self.forbidden = added_token_ids(tokenizer)
        # added tokens that split text cleanly (no whitespace stripping around them), by content
        self._cuts = {t.content: i for i, t in tokenizer.added_tokens_decoder.items() if not (t.lstrip or t.rstrip)}
        # per media content: (the template rendered around sentinels, the system message's form)
        self._marked: dict[str, tuple[str, str | None]] = {}

    def _user_content(self, content: Content, texts: Sequence[str]) -> list[dict]:
        """The user turn's parts: `content`'s (its text parts replaced by `texts` after the question
        and system prompt, where given), then the question."""
        parts, k = [], self._base
        for part in _parts(content):
            if part.get("type") == "text":
                parts.append({"type": "text", "text": texts[k] if k < len(texts) else part["text"]})
                k += 1
            else:
                parts.append(part)
        return parts + [{"type": "text", "text": texts[0]}]

    @property
    def _base(self) -> int:
        """Index of the first text part of the content among the data texts (after question, system prompt)."""
        return 1 if self.system_prompt is None else 2

    def _render(self, content: Content, texts: Sequence[str], form: str | None) -> str:
        messages = [] if form is None else [system_message(texts[1], form)]
        messages.append({"role": "user", "content": self._user_content(content, texts)})
        return self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True,
                                                  chat_template=self.template, **self.template_kwargs) + self.answer_prefix

    def render(self, content: Content, texts: Sequence[str]) -> str:
        """The chat of `texts` = [question] or [question, system prompt] (extra texts are ignored)."""
        return self._render(content, texts[:self._base], self._marked_template(content)[1])

    def _marked_template(self, content: Content) -> tuple[str, str | None]:
        key = repr(content if isinstance(content, list) else sorted(content.items()))
        if key not in self._marked:
            if self.system_prompt is None:
                self._marked[key] = (self._render(content, sentinels(1 + len(_part_texts(content))), None), None)
            else:
                self._marked[key] = self._system_form(content)
        return self._marked[key]

    def _system_form(self, content: Content) -> tuple[str, str]:
        """(marked template, form) for the first form whose rendering holds the system text once.
        A content the template does not treat as text shows no sentinel: it renders as nothing, or
        as a repr or JSON of the list, where the sentinel's private-use characters come out escaped."""
        marks = sentinels(2 + len(_part_texts(content)))
        found = {}
        for form in SYSTEM_FORMS:
            marked = self._render(content, marks, form)
            found[form] = marked.count(marks[1])
            if found[form] == 1:
                return marked, form
        raise ValueError(f"the chat template renders the system prompt neither as a string nor as a list of text "
                         f"parts (times rendered: {found}); use another template or no system_prompt")

    def segments(self, content: Content, question: str) -> list[tuple[str, bool]]:
        texts = [question] if self.system_prompt is None else [question, self.system_prompt]
        texts += _part_texts(content)
        marked, form = self._marked_template(content)
        return template_segments(lambda t: self._render(content, t, form), texts, marked)

    def _encode(self, text: str) -> list[int]:
        return self.tokenizer.encode(text, add_special_tokens=False)

    def _cut_edges(self, text: str) -> bool:
        ids = self._encode(text)
        return bool(ids) and all(i in self._cuts.values() for i in (ids[0], ids[-1]))

    def _splice(self, content: Content, placeholder: str, expansion: str) -> tuple[np.ndarray, np.ndarray] | None:
        """(placeholder ids, expansion ids) as they appear in any whole prompt, or None.

        Each side is closed either by an added token that both texts end in on that side, or by
        the template text next to the placeholder up to the nearest added token (Qwen3-VL's frame
        blocks start with a timestamp, after the template's `user\n`): that context must be the
        template's own text (no question or system prompt in it) and tokenize the same with
        either text beside it, so the ids in between are the same in every prompt."""
        ids = [self._encode(text) for text in (placeholder, expansion)]
        marked = self._marked_template(content)[0]
        at = marked.find(placeholder)
        if at < 0 or not all(ids):
            return None
        cuts = set(self._cuts.values())
        left = "" if ids[0][0] in cuts and ids[1][0] in cuts else self._context(marked[:at], before=True)
        right = "" if ids[0][-1] in cuts and ids[1][-1] in cuts else \
            self._context(marked[at + len(placeholder):], before=False)
        if left is None or right is None:
            return None
        edges = self._encode(left) if left else [], self._encode(right) if right else []
        inner = []
        for text in (placeholder, expansion):
            whole = self._encode(left + text + right)
            middle = whole[len(edges[0]):len(whole) - len(edges[1])]
            if whole[:len(edges[0])] != edges[0] or whole[len(whole) - len(edges[1]):] != edges[1] or not middle:
                return None
            inner.append(np.asarray(middle))
        return inner[0], inner[1]

    def _context(self, text: str, before: bool) -> str | None:
        """The template text between the placeholder and the nearest added token on one side of
        it (`text`: all the marked template on that side), that token included; None where there
        is no such token or where a question or system prompt (a sentinel) lies in between."""
        if before:
            found = [(text.rfind(c) + len(c), len(c), text.rfind(c)) for c in self._cuts if c in text]
            context = text[max(found)[2]:] if found else None
        else:
            found = [(text.find(c), -len(c), text.find(c) + len(c)) for c in self._cuts if c in text]
            context = text[:min(found)[2]] if found else None
        if context is None or _SENTINEL_RE.search(context):
            return None
        return context

    def rendered_placeholder(self, content: Content, placeholder: str | Sequence[str]) -> str:
        """The placeholder text to replace: `placeholder` itself, or of several (in order of
        preference) the first that the template renders, the last when it renders none."""
        if isinstance(placeholder, str):
            return placeholder
        marked = self._marked_template(content)[0]
        return next((p for p in placeholder if p in marked), placeholder[-1])

    def sequences(self, content: Content, questions: Sequence[str],
                  layout: tuple[str | Sequence[str], str] | list[tuple[str | Sequence[str], str]]) -> list[np.ndarray]:
        """One token sequence per question. `layout`: the media's (placeholder, expansion), or a list of
        them, one per media part of `content` in order (two media in one prompt: a pairwise question)."""
        layouts = layout if isinstance(layout, list) else [layout]
        placeholders = [self.rendered_placeholder(content, lay[0]) for lay in layouts]
        expansions = [lay[1] for lay in layouts]
        splices = [self._splice(content, p, e) for p, e in zip(placeholders, expansions)]
        out = []
        for q in questions:
            segments = self.segments(content, q)
            for placeholder in dict.fromkeys(placeholders):
                found = sum(s.count(placeholder) for s, is_data in segments if not is_data)
                if found != placeholders.count(placeholder):
                    raise ValueError(f"expected {placeholders.count(placeholder)} media placeholder(s) {placeholder!r} "
                                     f"in the chat template's rendering, found {found}")
            if any(splice is None for splice in splices):
                out.append(encode_segments(self.tokenizer, _expanded(segments, placeholders, expansions), self.forbidden))
                continue
            ids = encode_segments(self.tokenizer, segments, self.forbidden)
            pieces, pos = [], 0
            for placeholder, (holder, expanded) in zip(placeholders, splices):
                # data makes no added token, so each placeholder's ids occur where the template put them
                at = [i for i in np.flatnonzero(ids == holder[0]) if np.array_equal(ids[i:i + len(holder)], holder)]
                if len(at) != placeholders.count(placeholder):
                    raise ValueError(f"media placeholder {placeholder!r} found {len(at)} times in the prompt's tokens")
                start = next(i for i in at if i >= pos)
                pieces += [ids[pos:start], expanded]
                pos = start + len(holder)
            out.append(np.concatenate(pieces + [ids[pos:]]).astype(np.int64))
        return out


# The media content of a prompt: one media part, or a list of parts (media, and text parts that are data).
Content = dict | list


def _parts(content: Content) -> list[dict]:
    return content if isinstance(content, list) else [content]


def _part_texts(content: Content) -> list[str]:
    return [part["text"] for part in _parts(content) if part.get("type") == "text"]


def _expanded(segments: list[tuple[str, bool]], placeholders: list[str], expansions: list[str]) -> list[tuple[str, bool]]:
    """`segments` with the template's placeholders replaced, in order of appearance, by `expansions`."""
    out, k = [], 0
    for text, is_data in segments:
        if is_data:
            out.append((text, True))
            continue
        done = ""
        while k < len(placeholders) and placeholders[k] in text:
            at = text.index(placeholders[k])
            done += text[:at] + expansions[k]
            text = text[at + len(placeholders[k]):]
            k += 1
        out.append((done + text, False))
    return out
