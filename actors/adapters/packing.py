"""Pure arithmetic of the fast path: which tokens the prompts of an item share, how items and
questions are packed into forwards under a token budget, and the layout (positions, mask) of
several question suffixes packed into one row against a prefix cache.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch


def common_prefix_length(sequences: list[np.ndarray]) -> int:
    """Length of the longest token prefix shared by all sequences, at most the shortest length - 1
    so that every sequence keeps at least one token (its answer position) in its suffix."""
    limit = min(len(s) for s in sequences) - 1
    first = sequences[0][:limit]
    n = limit
    for s in sequences[1:]:
        differ = np.flatnonzero(s[:n] != first[:n])
        if len(differ):
            n = int(differ[0])
    return n


@dataclass(frozen=True)
class Forward:
    """One prefix forward over `items` (their prefixes right-padded into one batch), then one
    suffix forward per chunk. A chunk maps an item to the questions whose suffixes are packed,
    one after the other, into that item's row."""

    items: list[int]
    chunks: list[dict[int, list[int]]]


def pack_forwards(prefix_lens: list[int], suffix_lens: list[list[int]], token_budget: int) -> list[Forward]:
    """Greedily group consecutive items while rows x (longest prefix + longest packed suffixes)
    stays within `token_budget` (the KV cache a suffix forward ends with).

    An item over the budget on its own forms its own group, its questions split into chunks that
    each fit next to the prefix (at least one question per chunk). Items without questions are
    left out.
    """
    packed = [sum(s) for s in suffix_lens]
    groups: list[list[int]] = []
    for i in (i for i in range(len(prefix_lens)) if suffix_lens[i]):
        candidate = (groups[-1] if groups else []) + [i]
        cost = len(candidate) * (max(prefix_lens[j] for j in candidate) + max(packed[j] for j in candidate))
        if groups and cost <= token_budget:
            groups[-1] = candidate
        else:
            groups.append([i])

    forwards = []
    for group in groups:
        i = group[0]
        if len(group) > 1 or prefix_lens[i] + packed[i] <= token_budget:
            forwards.append(Forward(group, [{j: list(range(len(suffix_lens[j]))) for j in group}]))
            continue
        chunks: list[list[int]] = [[]]
        room = token_budget - prefix_lens[i]
        for q, s in enumerate(suffix_lens[i]):
            if chunks[-1] and sum(suffix_lens[i][k] for k in chunks[-1]) + s > room:
                chunks.append([])
            chunks[-1].append(q)
        forwards.append(Forward(group, [{i: chunk} for chunk in chunks]))
    return forwards


@dataclass(frozen=True)
class SuffixLayout:
    """Question suffixes packed row by row against a prefix cache of `width` columns.

    ids, positions and indices (rows, length): indices are the tokens' places in their own
    sequence (prefix length + offset in the question), which sliding windows count in, and
    positions what the rotary embedding gets; `allowed` (rows, length, width + length) says which keys
    each suffix token sees: its prefix, then its own question causally, no other question (padding
    sees itself only, so no row of the mask is empty). `answers` are the (row, column) of each
    suffix's last token, in the order the suffixes were given.
    """

    ids: torch.Tensor
    positions: torch.Tensor
    indices: torch.Tensor
    allowed: torch.Tensor
    answers: tuple[list[int], list[int]]


def pack_suffixes(suffixes: list[list[np.ndarray]], prefix_mask: torch.Tensor, next_pos: list[int],
                  pad_id: int) -> SuffixLayout:
    """Row r packs suffixes[r] one after the other; its prefix is row r of `prefix_mask` (bool
    (rows, width), right-padded) and its positions continue at next_pos[r]."""
    rows, width = prefix_mask.shape
    length = max(sum(len(s) for s in packed) for packed in suffixes)
    ids = torch.full((rows, length), pad_id, dtype=torch.long)
    positions = torch.zeros((rows, length), dtype=torch.long)
    indices = torch.zeros((rows, length), dtype=torch.long)
    prefix_lens = prefix_mask.sum(-1).tolist()
    allowed = torch.zeros((rows, length, width + length), dtype=torch.bool)
    allowed[:, :, :width] = prefix_mask[:, None, :]
    answer_rows, answer_cols = [], []
    for r, packed in enumerate(suffixes):
        start = 0
        for s in packed:
            end = start + len(s)
            ids[r, start:end] = torch.from_numpy(s)
            positions[r, start:end] = next_pos[r] + torch.arange(len(s))
            indices[r, start:end] = prefix_lens[r] + torch.arange(len(s))
            allowed[r, start:end, width + start:width + end] = torch.ones(len(s), len(s), dtype=torch.bool).tril()
            answer_rows.append(r)
            answer_cols.append(end - 1)
            start = end
        padding = torch.arange(start, length)
        allowed[r, padding, width + padding] = True
    return SuffixLayout(ids, positions, indices, allowed, (answer_rows, answer_cols))


def within_window(layout: SuffixLayout, window: int) -> torch.Tensor:
    """`layout.allowed` narrowed for a sliding-window layer: a query sees a key only when their
    places in the sequence are less than `window` apart (as transformers' sliding mask counts)."""
    rows, width = layout.allowed.shape[0], layout.allowed.shape[2] - layout.ids.shape[1]
    key_index = torch.cat([torch.arange(width).expand(rows, -1), layout.indices], dim=1)
    distance = layout.indices[:, :, None] - key_index[:, None, :]
    return layout.allowed & (distance < window)


def additive_mask(allowed: torch.Tensor, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """bool (rows, q, k) -> additive float (rows, 1, q, k): the form sdpa and eager attention take as is."""
    allowed = allowed[:, None].to(device)
    mask = torch.zeros(allowed.shape, dtype=dtype, device=device)
    return mask.masked_fill_(~allowed, torch.finfo(dtype).min)


def pool_p_yes(answer_logits: torch.Tensor, num_yes: int) -> np.ndarray:
    """p_yes = softmax([logsumexp(yes logits), logsumexp(no logits)])[0] per row of (rows, words)."""
    logits = answer_logits.float()
    yes = torch.logsumexp(logits[:, :num_yes], dim=-1)
    no = torch.logsumexp(logits[:, num_yes:], dim=-1)
    return torch.sigmoid(yes - no).cpu().numpy().astype(np.float32)


def read_answers(logits: torch.Tensor, answer_ids: list[int], num_yes: int) -> tuple[np.ndarray, np.ndarray]:
    """(p_yes, answer mass) per row of whole-vocabulary logits (rows, vocab). The mass is
    exp(logsumexp(answer-word logits) - logsumexp(all logits)): the probability the softmax over
    the whole vocabulary puts on the yes and no words together, pooled over the same tokens as p_yes."""
    logits = logits.float()
    answer = logits[:, answer_ids]
    mass = torch.exp(torch.logsumexp(answer, dim=-1) - torch.logsumexp(logits, dim=-1))
    return pool_p_yes(answer, num_yes), mass.cpu().numpy().astype(np.float32)


@dataclass(frozen=True)
class AnswerGroups:
    """One question's answer as token ids: `groups` (yes words, no words) for yes/no, one group per
    level (its case forms) for a rating, whose `values` are then the levels' values."""

    groups: tuple[tuple[int, ...], ...]
    values: tuple[float, ...] | None = None
    absolute: bool = False


def read_kinds(logits: torch.Tensor, kinds: Sequence[AnswerGroups]) -> tuple[np.ndarray, np.ndarray, list]:
    """(p_yes, answer mass, level probabilities or None) per row of whole-vocabulary logits (rows, vocab),
    row r read as kinds[r]. Renormalised yes/no rows are `read_answers` exactly; an absolute one's p_yes
    is exp(logsumexp(yes logits) - logsumexp(all logits)); a rating's level probabilities are the softmax
    over its levels' pooled logits (logsumexp over each level's forms) and its p_yes their expected value."""
    logits = logits.float()
    n = len(kinds)
    p_yes, mass, levels = np.empty(n, np.float32), np.empty(n, np.float32), [None] * n
    for kind in dict.fromkeys(kinds):
        rows = [r for r, k in enumerate(kinds) if k == kind]
        sub = logits if len(rows) == n else logits[torch.tensor(rows, device=logits.device)]
        if kind.values is None and not kind.absolute:
            p, m = read_answers(sub, [i for g in kind.groups for i in g], len(kind.groups[0]))
        else:
            pooled = torch.stack([torch.logsumexp(sub[:, list(g)], dim=-1) for g in kind.groups], dim=-1)
            total = torch.logsumexp(sub, dim=-1)
            m = torch.exp(torch.logsumexp(pooled, dim=-1) - total).cpu().numpy()
            if kind.values is None:
                p = torch.exp(pooled[:, 0] - total).cpu().numpy()
            else:
                probs = torch.softmax(pooled, dim=-1)
                p = (probs @ torch.tensor(kind.values, dtype=probs.dtype, device=probs.device)).cpu().numpy()
                for r, row in zip(rows, probs.cpu().numpy().astype(np.float32)):
                    levels[r] = row
        p_yes[rows], mass[rows] = p, m
    return p_yes, mass, levels
