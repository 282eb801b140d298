"""Checklist scoring with Qwen2-VL and Qwen2.5-VL.

p_yes of a question = softmax over [logsumexp(yes-word logits), logsumexp(no-word logits)] at
the answer position, the next token after the assistant generation prompt.

Fast path (`score`): all prompts of an item share the template start and the media tokens,
often more. Per `Forward` of `pack_forwards`:
  1. prefix forward: the items' prefixes (longest common token prefix of each item's full
     prompts) right-padded into one batch with a 2D padding mask; the vision tower runs once
     per item inside it; position ids come from the model's own `get_rope_index`.
  2. suffix forward(s): one row per item against that item's row of the prefix KV cache
     (DynamicCache), holding all its question suffixes one after the other. A block-diagonal
     4D mask lets each suffix see its prefix and itself (causally) but no other question; each
     suffix's M-RoPE positions restart where its prefix ended; the hidden state at the end of
     each suffix goes through the yes/no rows of lm_head only.

Packed suffixes rather than expanding the cache to one row per question (the other way:
`index_select` the prefix KV to Q rows, left-pad the suffixes, read the last column), measured
on the `bench` preset, 2 cores, median s/item over 7 alternating runs on an otherwise idle machine:
  24-frame 224x224 video, 29 questions:  expansion 1.146 s, packed suffixes 0.943 s
  448x448 image, 30 questions:           expansion 0.490 s, packed suffixes 0.410 s
Expansion copies the prefix KV once per question (the index, the cache update's concatenation
and the GQA head repeat that transformers' sdpa path does under a mask): a profile of its suffix
forward showed cat/copy/index at a quarter to a third of its time. Packed rows read each prefix once and
carry no padding between questions. Packing the whole item (prefix and suffixes in one forward)
measured the same as packed suffixes; keeping the prefix forward separate keeps it a plain
2D-mask forward and lets an item over the token budget split its questions into chunks against
one prefix cache. The cost: the suffix forward takes a 4D mask, which sdpa and eager attention
accept and flash_attention_2 does not (refused at load when share_prefix is on).
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from transformers import AutoModelForImageTextToText, AutoTokenizer, DynamicCache
from transformers.utils import cached_file

from actors.adapters.base import MediaInput
from actors.adapters.prompt_tokens import chat_prompt_ids
from actors.adapters.qwen2_vl_inputs import (
    VisionSpec,
    VisualInput,
    common_prefix_length,
    expand_placeholder,
    pack_forwards,
    prepare_visual,
)
from schemas.job_config import DecodeConfig, ModelConfig

# transformers assumes this rate for frames given without metadata (VideoMetadata.sampled_fps).
DEFAULT_VIDEO_FPS = 24.0
_MEDIA_TYPE_IDS = {"image": 1, "video": 2}  # mm_token_type_ids: 0 text, 1 image, 2 video
# Attention implementations that take the suffix forward's block-diagonal 4D mask as is.
MASKABLE_ATTENTION = ("sdpa", "eager")


@dataclass(eq=False)
class PreparedItem:
    """One item as both paths feed it to the model: its visual input and one full token sequence
    (template, expanded media tokens, question, generation prompt) per question."""

    media: MediaInput
    visual: VisualInput
    sequences: list[np.ndarray]


@dataclass(eq=False)
class _Prefix:
    """The KV cache of a batch of prefixes, their padding mask and the M-RoPE position after each."""

    kv: list[tuple[torch.Tensor, torch.Tensor]]  # per layer: keys, values (rows, kv heads, width, head dim)
    mask: torch.Tensor  # bool (rows, width)
    next_pos: list[int]


def resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def resolve_dtype(dtype: str, device: torch.device) -> torch.dtype:
    if dtype == "auto":
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    return getattr(torch, dtype)


class Qwen2VLAdapter:
    """ChecklistAdapter for `qwen2_vl` and `qwen2_5_vl` checkpoints."""

    def __init__(self, model: ModelConfig, decode: DecodeConfig, system_prompt: str | None = None):
        self.model_id = model.model
        self.share_prefix = model.share_prefix
        self.token_budget = model.token_budget
        self.system_prompt = system_prompt
        self.decode = decode
        self.device = resolve_device(model.device)
        self.dtype = resolve_dtype(model.dtype, self.device)

        if model.share_prefix and model.attn_implementation not in MASKABLE_ATTENTION:
            raise ValueError(f"share_prefix needs an attention implementation that takes a 4D mask "
                             f"{MASKABLE_ATTENTION}, got {model.attn_implementation!r}; "
                             "use one of those or share_prefix=False")
        self.tokenizer = AutoTokenizer.from_pretrained(model.model, trust_remote_code=model.trust_remote_code)
        # checked before the weights load, so a wrong setting fails in seconds
        self.spec = VisionSpec.from_json(cached_file(model.model, "preprocessor_config.json"))
        if decode.resize_factor % self.spec.factor:
            raise ValueError(f"DecodeConfig.resize_factor={decode.resize_factor} must be a multiple of "
                             f"patch_size x merge_size = {self.spec.factor} for {model.model}")
        self.answer_ids = [self._single_token(w) for w in model.yes_words + model.no_words]
        self.num_yes = len(model.yes_words)
        if len(set(self.answer_ids)) != len(self.answer_ids):
            raise ValueError(f"yes_words {model.yes_words} and no_words {model.no_words} share a token")
        # any id will do for padding: padded positions are masked out
        self.pad_id = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0

        self.model = AutoModelForImageTextToText.from_pretrained(
            model.model, dtype=self.dtype, attn_implementation=model.attn_implementation,
            trust_remote_code=model.trust_remote_code, use_safetensors=True,
        ).to(self.device).eval()
        config = self.model.config
        self.placeholder_ids = {"image": config.image_token_id, "video": config.video_token_id}
        # Qwen2.5-VL spaces video frames in time (second_per_grid_ts); Qwen2-VL does not.
        self.timed_video = config.model_type == "qwen2_5_vl"
        head = self.model.get_output_embeddings()
        self.answer_weight = head.weight[self.answer_ids].detach()
        self.answer_bias = None if head.bias is None else head.bias[self.answer_ids].detach()

    def _single_token(self, word: str) -> int:
        ids = self.tokenizer.encode(word, add_special_tokens=False)
        if len(ids) != 1:
            raise ValueError(f"answer word {word!r} is {len(ids)} tokens {self.tokenizer.convert_ids_to_tokens(ids)} "
                             f"for {self.model_id}'s tokenizer; every yes/no word must be exactly one token")
        return ids[0]

    # ---- inputs -------------------------------------------------------------------------
    def _prompt_ids(self, media_type: str, question: str) -> np.ndarray:
        # the question (manifest prompt, checklist text) and the system prompt are data: they
        # cannot become control or media tokens
        return chat_prompt_ids(self.tokenizer, media_type, question, self.system_prompt)

    def prepare(self, item: MediaInput, questions: Sequence[str]) -> PreparedItem:
        """Pixels, grid and the token sequence of every question of `item`."""
        d = self.decode
        if item.media_type == "image":
            bounds = (d.image_min_pixels, d.image_max_pixels)
        else:
            bounds = (d.video_min_pixels, d.video_max_pixels)
        visual = prepare_visual(item.frames, self.spec, *bounds, d.resize_factor, already_resized=item.resized)
        placeholder = self.placeholder_ids[item.media_type]
        sequences = [expand_placeholder(self._prompt_ids(item.media_type, q), placeholder, visual.num_tokens)
                     for q in questions]
        return PreparedItem(item, visual, sequences)

    def _media_kwargs(self, items: list[PreparedItem]) -> dict[str, torch.Tensor]:
        """pixel values and grids of `items`, in item order (the order the model consumes them)."""
        kwargs: dict[str, torch.Tensor] = {}
        for kind, pixels_key, grid_key in (("image", "pixel_values", "image_grid_thw"),
                                           ("video", "pixel_values_videos", "video_grid_thw")):
            chosen = [it for it in items if it.media.media_type == kind]
            if not chosen:
                continue
            pixels = np.concatenate([it.visual.pixel_values for it in chosen])
            kwargs[pixels_key] = torch.from_numpy(pixels).to(self.device, self.dtype)
            kwargs[grid_key] = torch.tensor([it.visual.grid_thw for it in chosen], device=self.device)
            if kind == "video" and self.timed_video:
                seconds = [self.spec.temporal_patch_size / (it.media.fps or DEFAULT_VIDEO_FPS) for it in chosen]
                kwargs["second_per_grid_ts"] = torch.tensor(seconds, device=self.device)
        return kwargs

    def _token_types(self, ids: torch.Tensor) -> torch.Tensor:
        types = torch.zeros_like(ids)
        for kind, token_id in self.placeholder_ids.items():
            types[ids == token_id] = _MEDIA_TYPE_IDS[kind]
        return types

    def _p_yes(self, answer_logits: torch.Tensor) -> np.ndarray:
        logits = answer_logits.float()
        yes = torch.logsumexp(logits[:, :self.num_yes], dim=-1)
        no = torch.logsumexp(logits[:, self.num_yes:], dim=-1)
        return torch.sigmoid(yes - no).cpu().numpy().astype(np.float32)  # = softmax([yes, no])[0]

    # ---- reference path -----------------------------------------------------------------
    @torch.inference_mode()
    def score_reference(self, items: Sequence[MediaInput], questions: Sequence[Sequence[str]]) -> list[np.ndarray]:
        _check_lengths(items, questions)
        results = []
        for item, qs in zip(items, questions):
            prepared = self.prepare(item, qs)
            media = self._media_kwargs([prepared])
            p_yes = np.empty(len(qs), np.float32)
            for q, seq in enumerate(prepared.sequences):
                ids = torch.from_numpy(seq)[None].to(self.device)
                out = self.model(input_ids=ids, attention_mask=torch.ones_like(ids),
                                 mm_token_type_ids=self._token_types(ids), use_cache=False,
                                 logits_to_keep=1, **media)
                p_yes[q] = self._p_yes(out.logits[:, -1, self.answer_ids])[0]
            results.append(p_yes)
        return results

    # ---- fast path ----------------------------------------------------------------------
    @torch.inference_mode()
    def score(self, items: Sequence[MediaInput], questions: Sequence[Sequence[str]]) -> list[np.ndarray]:
        if not self.share_prefix:
            return self.score_reference(items, questions)
        _check_lengths(items, questions)
        prepared = [self.prepare(item, qs) if qs else None for item, qs in zip(items, questions)]
        prefix_lens = [common_prefix_length(p.sequences) if p else 0 for p in prepared]
        suffix_lens = [[len(s) - n for s in p.sequences] if p else [] for p, n in zip(prepared, prefix_lens)]
        results = [np.empty(len(qs), np.float32) for qs in questions]
        for fwd in pack_forwards(prefix_lens, suffix_lens, self.token_budget):
            prefix = self._prefix_forward([prepared[i] for i in fwd.items], [prefix_lens[i] for i in fwd.items])
            for chunk in fwd.chunks:
                rows = [fwd.items.index(i) for i in chunk]
                suffixes = [[prepared[i].sequences[q][prefix_lens[i]:] for q in qs] for i, qs in chunk.items()]
                p_yes = iter(self._suffix_forward(prefix, rows, suffixes))
                for i, qs in chunk.items():
                    for q in qs:
                        results[i][q] = next(p_yes)
        return results

    def _prefix_forward(self, group: list[PreparedItem], lengths: list[int]) -> _Prefix:
        width = max(lengths)
        ids = torch.full((len(group), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(group), width), dtype=torch.long)
        for row, (item, n) in enumerate(zip(group, lengths)):
            ids[row, :n] = torch.from_numpy(item.sequences[0][:n])
            mask[row, :n] = 1
        ids, mask = ids.to(self.device), mask.to(self.device)
        media = self._media_kwargs(group)
        timing = {"second_per_grid_ts": media.pop("second_per_grid_ts")} if "second_per_grid_ts" in media else {}
        position_ids, _ = self.model.model.get_rope_index(
            ids, mm_token_type_ids=self._token_types(ids), image_grid_thw=media.get("image_grid_thw"),
            video_grid_thw=media.get("video_grid_thw"), attention_mask=mask, **timing)
        cache = DynamicCache(config=self.model.config)
        self.model.model(input_ids=ids, attention_mask=mask, position_ids=position_ids,
                         past_key_values=cache, use_cache=True, **media)
        last = torch.tensor(lengths, device=self.device) - 1
        # a prefix ends in text (at least <|vision_end|>), whose three M-RoPE components are equal
        next_pos = position_ids[0, torch.arange(len(group), device=self.device), last] + 1
        return _Prefix([(layer.keys, layer.values) for layer in cache.layers], mask.bool(), next_pos.tolist())

    def _suffix_forward(self, prefix: _Prefix, rows: list[int], suffixes: list[list[np.ndarray]]) -> np.ndarray:
        """p_yes of every suffix; row r packs suffixes[r] one after the other against prefix row rows[r]."""
        width = prefix.mask.shape[1]
        length = max(sum(len(s) for s in packed) for packed in suffixes)
        ids = torch.full((len(rows), length), self.pad_id, dtype=torch.long)
        positions = torch.zeros((len(rows), length), dtype=torch.long)
        # which keys each suffix token sees: its prefix, then its own question causally, no other question
        allowed = torch.zeros((len(rows), length, width + length), dtype=torch.bool)
        allowed[:, :, :width] = prefix.mask[rows].cpu()[:, None, :]
        answer_rows, answer_cols = [], []
        for r, packed in enumerate(suffixes):
            start = 0
            for s in packed:
                end = start + len(s)
                ids[r, start:end] = torch.from_numpy(s)
                positions[r, start:end] = prefix.next_pos[rows[r]] + torch.arange(len(s))
                allowed[r, start:end, width + start:width + end] = torch.ones(len(s), len(s), dtype=torch.bool).tril()
                answer_rows.append(r)
                answer_cols.append(end - 1)
                start = end
            padding = torch.arange(start, length)
            allowed[r, padding, width + padding] = True  # padding attends to itself: no all-masked rows
        # an additive float mask: the form both the sdpa and the eager attention take as is
        allowed = allowed[:, None].to(self.device)
        mask = torch.zeros(allowed.shape, dtype=self.dtype, device=self.device)
        mask.masked_fill_(~allowed, torch.finfo(self.dtype).min)
        select = torch.tensor(rows, device=self.device)
        cache = DynamicCache(ddp_cache_data=[(k[select], v[select]) for k, v in prefix.kv], config=self.model.config)
        out = self.model.model(input_ids=ids.to(self.device), attention_mask=mask,
                               position_ids=positions.to(self.device).expand(3, -1, -1),
                               past_key_values=cache, use_cache=True)
        hidden = out.last_hidden_state[answer_rows, answer_cols]
        return self._p_yes(torch.nn.functional.linear(hidden, self.answer_weight, self.answer_bias))


def _check_lengths(items: Sequence[MediaInput], questions: Sequence[Sequence[str]]) -> None:
    if len(items) != len(questions):
        raise ValueError(f"got {len(items)} items but {len(questions)} question lists")
