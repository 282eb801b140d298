"""Where the answer is read: the chat template's options and the text after its generation prompt.

p_yes is read at the position after the rendered prompt, which must be where the checkpoint writes
its answer. Two kinds of released checkpoint start somewhere else:

- Templates with a thinking switch (Qwen3.5, GLM-4.6V, ...) read `enable_thinking`. Left unset, the
  Qwen3.5 template ends the generation prompt `<|im_start|>assistant\\n<think>\\n`, where the model
  starts to reason; with enable_thinking=false it renders an empty closed think block
  (`<think>\\n\\n</think>\\n\\n`) and the model answers next. So enable_thinking defaults to false
  wherever the template source mentions it (`model.chat_template_kwargs` overrides it).
- Thinking checkpoints without a switch (GLM-4.1V-9B-Thinking) always reason first: at
  `<|assistant|>\\n` the trained model writes `<think>` (transformers'
  tests/models/glm4v/test_modeling_glm4v.py: every greedy continuation starts `<think>Got it, ...`),
  and its responses take the form `<think>{reasoning}</think><answer>{answer}</answer>` (the
  GLM-4.1V-Thinking report, arXiv 2507.01006, on the format of its SFT and RL data). The answer
  prefix `<think></think><answer>` closes an empty think block and opens the answer.

A checkpoint counts as GLM-4.1V Thinking when its model type is `glm4v`, its tokenizer has `<think>`
and `</think>` as added tokens and its template has no `enable_thinking` switch: the name is not
used (a local copy may be called anything). GLM-4.6V-Flash (also `glm4v`) has the switch and so
gets enable_thinking=false instead; a glm4v checkpoint that should be read right after
`<|assistant|>\\n` takes `model.answer_prefix: ""`.

Torch-free: the driver resolves these before job.json is written, and the scorer applies the same
rule, so a job.json holds the exact options every actor renders with.
"""
from __future__ import annotations

from collections.abc import Collection
from typing import Any

from schemas.job_config import ModelConfig

THINKING_SWITCH = "enable_thinking"
# model_type -> the answer opening of its thinking checkpoints (see the module docstring)
THINKING_ANSWER_PREFIXES: dict[str, str] = {"glm4v": "<think></think><answer>"}
THINK_TOKENS = ("<think>", "</think>")


def has_thinking_switch(template: str) -> bool:
    """Whether the template source reads `enable_thinking`."""
    return THINKING_SWITCH in template


def template_options(template: str, configured: dict[str, Any] | None) -> dict[str, Any] | None:
    """The options the template is rendered with: `configured`, plus enable_thinking=false where the
    template reads it and it is not set. None when nothing is set and the template reads no switch."""
    if has_thinking_switch(template) and THINKING_SWITCH not in (configured or {}):
        return {**(configured or {}), THINKING_SWITCH: False}
    return None if configured is None else dict(configured)


def default_answer_prefix(model_type: str | None, template: str, added_tokens: Collection[str]) -> str | None:
    """The answer opening of a thinking checkpoint without a switch; None for any other."""
    prefix = THINKING_ANSWER_PREFIXES.get(model_type or "")
    if prefix is None or has_thinking_switch(template) or not all(t in added_tokens for t in THINK_TOKENS):
        return None
    return prefix


def resolve_readout(model: ModelConfig, model_type: str | None, template: str,
                    added_tokens: Collection[str]) -> ModelConfig:
    """`model` with `chat_template_kwargs` and `answer_prefix` filled in from the checkpoint.
    Idempotent: a resolved config resolves to itself ('' keeps a checkpoint's prefix off)."""
    prefix = model.answer_prefix
    if prefix is None:
        prefix = default_answer_prefix(model_type, template, added_tokens)
    return model.model_copy(update={"chat_template_kwargs": template_options(template, model.chat_template_kwargs),
                                    "answer_prefix": prefix})
