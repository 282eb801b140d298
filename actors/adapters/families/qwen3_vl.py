"""Qwen3-VL, Qwen3-VL-MoE and Qwen3.5: Qwen2-VL's pixels and token types (16-pixel patches,
read from the checkpoint), with each video laid out as the processor the checkpoints were
published with lays it out: the template's whole `<|vision_start|><|video_pad|><|vision_end|>`
becomes, per temporal patch, `<t seconds><|vision_start|>` + one `<|video_pad|>` per merged
patch + `<|vision_end|>`; a template that writes a bare `<|video_pad|>` has that replaced.

Why not the installed processor's layout: transformers disagrees with itself. The processor
Qwen3-VL was released with (transformers 4.57, `Qwen3VLProcessor.__call__` in
models/qwen3_vl/processing_qwen3_vl.py: "if vision_start + video_token + vision_end in text:
replace that ... else: replace video_token"), and vLLM and SGLang after it (vLLM's
`Qwen3VLMultiModalProcessor._get_prompt_updates` targets
"<|vision_start|><|video_pad|><|vision_end|>"), drop the template's outer markers, as 5.5.4
still did. transformers 5.24's `replace_video_token` replaced `<|video_pad|>` alone, so the
outer pair stayed around the frame blocks (two tokens more, the model never saw them in
training, every later position shifted); 5.25 collapses the pair again in
`get_text_with_replacements`. The published layout is the trained one, so it is the one built
here, on every transformers version (tests/test_family_qwen3.py checks it against that rule).

Timestamps follow `Qwen3VLProcessor._calculate_timestamps` given the video's metadata: each
frame's own time (`MediaInput.times`, the decode stage's `frame_times`; the processor's
`frames_indices / fps`), else k / fps (transformers' default 24 fps when the rate is unknown),
padded with the last frame to whole temporal patches, and each patch is stamped with the mean of
its first and last frame's time.
Deepstack features and interleaved M-RoPE happen inside the model's own prefix forward.
"""
from __future__ import annotations

from actors.adapters.families.qwen2_vl import DEFAULT_VIDEO_FPS, Qwen2VLFamily, QwenMedia


def patch_timestamps(seconds: list[float], temporal: int) -> list[float]:
    """The time of each temporal patch of frames at `seconds`."""
    times = list(seconds) + [seconds[-1]] * (-len(seconds) % temporal)
    return [(times[i] + times[i + temporal - 1]) / 2 for i in range(0, len(times), temporal)]


class Qwen3VLFamily(Qwen2VLFamily):
    """Family module of `qwen3_vl`, `qwen3_vl_moe` and `qwen3_5` (see `actors/adapters/family.py`)."""

    def __init__(self, checkpoint: str, config, tokenizer, decode):
        super().__init__(checkpoint, config, tokenizer, decode)
        self.timed_video = False  # time is in the prompt's timestamps, not in second_per_grid_ts
        self.vision_start = tokenizer.convert_ids_to_tokens(config.vision_start_token_id)
        self.vision_end = tokenizer.convert_ids_to_tokens(config.vision_end_token_id)

    def media_layout(self, media: QwenMedia) -> tuple[str | tuple[str, ...], str]:
        if media.item.media_type == "image":
            return super().media_layout(media)
        pad = self.placeholders["video"]
        grid_t, grid_h, grid_w = media.visual.grid_thw
        per_frame = grid_h * grid_w // self.spec.merge_size**2
        stamps = patch_timestamps(media.item.seconds(DEFAULT_VIDEO_FPS), self.spec.temporal_patch_size)
        block = "".join(f"<{s:.1f} seconds>{self.vision_start}{pad * per_frame}{self.vision_end}" for s in stamps[:grid_t])
        # the published rule: the template's marked placeholder as a whole, else the bare pad
        return (f"{self.vision_start}{pad}{self.vision_end}", pad), block


FAMILY = Qwen3VLFamily
