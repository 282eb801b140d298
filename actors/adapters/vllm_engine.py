"""The checklist read through vLLM (`model.engine: vllm`): same prompts, same answer pooling, vLLM's kernels.

What is ours and what is vLLM's:
- Ours (`ChecklistPrompts`, shared with `engine.py`): the chat template, the question and system
  prompt kept as data, the answer token ids and their pooling (`packing.read_kinds`). Decoded frames
  too: vLLM gets the arrays our decode stage produced, at the size the family's rule gave them.
- vLLM's: the media layout (its processor expands the template's one placeholder), the forward,
  prefix caching (`share_prefix`), batching and tensor parallelism.

Every request goes in as token ids with the placeholder unexpanded, and vLLM's expanded prompt is
checked against ours token for token: a family whose layout vLLM makes differently fails its row
with the first differing position, never scores a different prompt silently.

The answer is read from one step of `SamplingParams(max_tokens=1, logprob_token_ids=...)` under
`logprobs_mode="raw_logprobs"`: log-softmax over the whole vocabulary of the model's own logits, for
exactly the answer tokens asked for. Raw logprobs rather than raw logits: they differ from the
logits by the log-partition alone, which cancels in p_yes and the ratings, and they give the answer
mass (and the absolute readout), which logits of a few tokens cannot.
"""
from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from actors.adapters.base import AnswerKind, MediaInput, Readout
from actors.adapters.checklist_prompts import ChecklistPrompts
from actors.adapters.devices import resolve_device, resolve_dtype
from actors.adapters.packing import AnswerGroups, read_kinds
from actors.adapters.vllm_support import check_vllm_family, import_vllm
from pipeline.resize_policy import MODEL_SIZE_RULES, RESIZE_RULES
from schemas.job_config import DecodeConfig, ModelConfig

# vLLM's bound on `logprob_token_ids` per request (vllm.sampling_params.MAX_LOGPROB_TOKEN_IDS).
MAX_ANSWER_TOKENS = 128
# One vLLM engine per model config in a process: the scorer loads one adapter per system prompt,
# and each would otherwise start (and hold the memory of) its own engine.
_ENGINES: dict[str, Any] = {}


def start_llm(model: ModelConfig, media_types: Sequence[str], on_gpu: bool) -> Any:
    """vLLM's LLM for `model` (one per config and process), set up to return fixed-token logprobs."""
    key = model.model_dump_json()
    if key in _ENGINES:
        return _ENGINES[key]
    vllm = import_vllm()
    if not on_gpu:
        # vLLM's CPU backend pins its threads to these cores and takes its KV cache from this budget
        os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", str(model.vllm_cpu_kv_cache_gib))
        os.environ.setdefault("VLLM_CPU_OMP_THREADS_BIND", core_list(sorted(os.sched_getaffinity(0))))
        # the engine and its one worker in this process: each extra process imports vLLM and torch
        # again (tens of seconds on 2 cores), and a batch job has no server loop to keep responsive
        os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
    dtype = resolve_dtype(model.dtype, torch.device("cuda" if on_gpu else "cpu"))
    llm = vllm.LLM(
        model=model.model, tokenizer=model.model, dtype=str(dtype).removeprefix("torch."),
        trust_remote_code=model.trust_remote_code, tensor_parallel_size=model.tensor_parallel_size,
        # the actor's reserved GPUs are the ones vLLM's worker processes see
        distributed_executor_backend="mp" if model.tensor_parallel_size > 1 else "uni",
        enforce_eager=not on_gpu if model.vllm_enforce_eager is None else model.vllm_enforce_eager,
        max_model_len=model.vllm_max_model_len, gpu_memory_utilization=model.vllm_gpu_memory_utilization,
        limit_mm_per_prompt={kind: int(kind in media_types) for kind in ("image", "video")},
        enable_prefix_caching=model.share_prefix, logprobs_mode="raw_logprobs", seed=0,
    )
    _ENGINES[key] = llm
    return llm


def core_list(cores: Sequence[int]) -> str:
    """`VLLM_CPU_OMP_THREADS_BIND` for these cores: "a-b" for a contiguous run, else "a,b,c"."""
    if list(cores) == list(range(cores[0], cores[-1] + 1)):
        return f"{cores[0]}-{cores[-1]}"
    return ",".join(map(str, cores))


class VllmChecklistEngine:
    """ChecklistAdapter (actors/adapters/base.py) running the model in vLLM; see the module docstring."""

    def __init__(self, model: ModelConfig, decode: DecodeConfig, family_class: type,
                 system_prompt: str | None = None):
        self.text = ChecklistPrompts(model, decode, family_class, system_prompt)
        check_vllm_family(self.text.config.model_type, model.model)
        self.model_id = model.model
        self.family = self.text.family
        qwen3 = self.text.config.model_type == "qwen3_vl"
        # Qwen3-VL: vLLM 0.32 beside transformers >= 5.10 expands a bare <|video_pad|> into the frame
        # blocks and keeps the template's <|vision_start|>..<|vision_end|> around them; our family
        # replaces that whole triple (the published layout, families/qwen3_vl.py). Handing vLLM the bare
        # pad in place of the triple gives our layout; other versions are caught by the prompt check.
        self.video_placeholder = self.family.placeholders["video"] if qwen3 else None
        # InternVL: vLLM marks a video frame's feature positions with <video> where the stock processor and
        # ours write <IMG_CONTEXT>; both replace those positions' embeddings by the frame's features, so
        # the model's input is the same. vLLM's id -> ours, at those positions only.
        self.aliases = {}
        if self.text.config.model_type == "internvl":
            tok = self.text.tokenizer
            self.aliases[tok.convert_tokens_to_ids(self.family.video)] = tok.convert_tokens_to_ids(self.family.context)
        # the same rule as our engine's: cuda without a GPU fails here, 'auto' only in process (devices.py)
        on_gpu = resolve_device(model.device).type == "cuda"
        self.llm = start_llm(model, self.family.media_types, on_gpu)
        self._params = import_vllm().SamplingParams

    def answer_groups(self, kind: AnswerKind) -> AnswerGroups:
        return self.text.answer_groups(kind)

    def readout(self, items: Sequence[MediaInput], questions: Sequence[Sequence[str]],
                answers: Sequence[AnswerKind] | None = None) -> list[Readout]:
        """All questions of all `items` in one `generate`: an item's prompts go in together, so its
        media and shared prompt prefix are cached once (with share_prefix)."""
        if len(items) != len(questions):
            raise ValueError(f"got {len(items)} items but {len(questions)} question lists")
        kinds = self.text.kinds(answers, questions)
        ids = sorted({i for kind in kinds for group in kind.groups for i in group})
        if len(ids) > MAX_ANSWER_TOKENS:
            raise ValueError(f"the checklist's answers are {len(ids)} tokens; vLLM returns at most "
                             f"{MAX_ANSWER_TOKENS} fixed-token logprobs per prompt")
        requests, expected = [], []
        for item, qs in zip(items, questions):
            item = self._decoded(item)
            prepared = self.text.prepare(item, qs)
            data = self._media_data(item)
            placeholder = self.video_placeholder if item.media_type == "video" else None
            for raw in self.text.unexpanded(item, qs, prepared.visual, placeholder):
                requests.append({"prompt_token_ids": raw.tolist(), **data})
            expected += prepared.sequences
        params = self._params(max_tokens=1, temperature=0.0, logprob_token_ids=ids, detokenize=False)
        outputs = self.llm.generate(requests, params, use_tqdm=False) if requests else []
        rows = [answer_logprobs(out, want, ids, self.aliases) for out, want in zip(outputs, expected)]
        results, start = [], 0
        for qs in questions:
            dense = dense_logprobs(rows[start:start + len(qs)], ids)
            p_yes, mass, levels = read_kinds(dense, kinds[:len(qs)])
            results.append(Readout(p_yes, mass, levels if any(v is not None for v in levels) else None))
            start += len(qs)
        return results

    def readout_reference(self, items: Sequence[MediaInput], questions: Sequence[Sequence[str]],
                          answers: Sequence[AnswerKind] | None = None) -> list[Readout]:
        """The same requests one question at a time: nothing batched with anything else."""
        return [_joined([self.readout([item], [[q]], None if answers is None else [answers[k]])[0]
                         for k, q in enumerate(qs)]) for item, qs in zip(items, questions)]

    def score(self, items: Sequence[MediaInput], questions: Sequence[Sequence[str]]) -> list[np.ndarray]:
        return [r.p_yes for r in self.readout(items, questions)]

    def score_reference(self, items: Sequence[MediaInput], questions: Sequence[Sequence[str]]) -> list[np.ndarray]:
        return [r.p_yes for r in self.readout_reference(items, questions)]

    def _decoded(self, item: MediaInput) -> MediaInput:
        """`item` at the size the decode stage gives frames for this family (what both engines then
        take as they are). Frames of a job arrive so; the scorer's start-up canary does not, and vLLM's
        processor would bound its pixels by the checkpoint's settings, not by `decode.*`."""
        from PIL import Image

        rule = self.family.resize_rule
        if self.text.config.model_type == "internvl" and item.media_type == "video":
            # every frame becomes one tile; vLLM resizes with other code than the stock (PIL) processor
            # ours follows (2e-4 apart in p_yes on the tiny model): hand it frames at the tile size
            size, resample = self.family.frames.size, self.family.frames.resample
            frames = np.stack([np.asarray(Image.fromarray(f).resize((size.width, size.height), resample))
                               for f in item.frames])
            return MediaInput(frames, item.media_type, fps=item.fps, resized=item.resized, duration=item.duration)
        if item.resized or rule not in MODEL_SIZE_RULES:
            return item  # at their size already, or the processor's own resize from the source (both engines)
        decode = self.text.decode
        lo, hi = (decode.image_min_pixels, decode.image_max_pixels) if item.media_type == "image" else \
            (decode.video_min_pixels, decode.video_max_pixels)
        height, width = RESIZE_RULES[rule](*item.frames.shape[1:3], decode.resize_factor or self.family.spec.factor,
                                           lo, hi)
        frames = np.stack([np.asarray(Image.fromarray(f).resize((width, height), Image.Resampling.BICUBIC))
                           for f in item.frames]) if item.frames.shape[1:3] != (height, width) else item.frames
        return MediaInput(frames, item.media_type, fps=item.fps, resized=True, duration=item.duration)

    def _media_data(self, item: MediaInput) -> dict:
        """The request's media: the decoded frames as they are (an image as a PIL image, a video as an
        array with the frames' times: frame k at k / fps, the rule our families stamp into the prompt
        and space positions by; vLLM's Qwen3-VL and GLM-4.1V processors require them)."""
        if item.media_type == "image":
            from PIL import Image

            return {"multi_modal_data": {"image": Image.fromarray(item.frames[0])}}
        from actors.adapters.families.qwen2_vl import DEFAULT_VIDEO_FPS

        frames, fps = item.frames, item.fps or DEFAULT_VIDEO_FPS
        metadata = {"fps": fps, "frames_indices": list(range(len(frames))), "total_num_frames": len(frames),
                    "duration": len(frames) / fps, "video_backend": "vrscore", "do_sample_frames": False}
        return {"multi_modal_data": {"video": (frames, metadata)}}


def answer_logprobs(output: Any, expected: np.ndarray, ids: list[int], aliases: dict[int, int] | None = None
                    ) -> dict[int, float]:
    """The answer tokens' logprobs of one vLLM output, after checking that vLLM scored exactly our prompt
    and returned every answer token (a missing one is an error, never a zero probability). `aliases`:
    vLLM's media placeholder id -> ours, accepted where ours holds that id."""
    got = np.asarray(output.prompt_token_ids)
    for theirs, ours in (aliases or {}).items():
        if len(got) == len(expected):
            got = np.where((got == theirs) & (expected == ours), ours, got)
    if len(got) != len(expected) or not np.array_equal(got, expected):
        differ = np.flatnonzero(got[:len(expected)] != expected[:len(got)])
        at = int(differ[0]) if len(differ) else min(len(got), len(expected))
        raise ValueError(f"vLLM laid out the prompt differently from vrscore ({len(got)} tokens, ours {len(expected)}; "
                         f"first difference at token {at}): the vLLM engine cannot score this item as ours does")
    step = output.outputs[0].logprobs[0]
    missing = [i for i in ids if i not in step]
    if missing:
        raise ValueError(f"vLLM returned no logprob for answer tokens {missing}")
    return {i: step[i].logprob for i in ids}


def dense_logprobs(rows: list[dict[int, float]], ids: list[int]) -> torch.Tensor:
    """(rows, max id + 2) log-probabilities that `read_kinds` takes as whole-vocabulary logits: the answer
    tokens' own, all other probability on one extra column, -inf elsewhere. Their log-sum-exp is 0, as
    over the true vocabulary, so every readout (renormalised, absolute, rating, answer mass) is the
    one of the model's full logits."""
    out = torch.full((len(rows), max(ids) + 2), -torch.inf, dtype=torch.float32)
    cols = torch.tensor(ids)
    if rows:
        out[:, cols] = torch.tensor([[row[i] for i in ids] for row in rows], dtype=torch.float32)
        answered = torch.logsumexp(out[:, cols], dim=-1)
        out[:, -1] = torch.log(-torch.expm1(answered.clamp(max=0)))  # log(1 - P(answer tokens))
    return out


def _joined(parts: list[Readout]) -> Readout:
    """One item's readouts of one question each, as one readout in question order."""
    if not parts:
        return Readout(np.empty(0, np.float32), np.empty(0, np.float32))
    levels = [lv for part in parts for lv in (part.level_probs or [None])]
    return Readout(np.concatenate([p.p_yes for p in parts]).astype(np.float32),
                   np.concatenate([p.answer_mass for p in parts]).astype(np.float32),
                   levels if any(v is not None for v in levels) else None)
