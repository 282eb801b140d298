"""Video inputs laid out by hand, following each family's stock video processor and processor code.

Every stock video processor needs torchvision, which has no CPU build here, so these functions
redo their steps in numpy/PIL: resize by the video processor's own rule (read from the saved
video_preprocessor_config.json), rescale and normalise, patchify, and expand the placeholder the
way the processor's `replace_video_token` does. Frames given at the processor's target size are
not resized, so the layout does not depend on the resampling filter.
"""
from __future__ import annotations

import json
import math
from datetime import timedelta
from pathlib import Path

import numpy as np
import torch
from PIL import Image


def _resize(frames: np.ndarray, height: int, width: int) -> np.ndarray:
    if frames.shape[1:3] == (height, width):
        return frames
    return np.stack([np.asarray(Image.fromarray(f).resize((width, height), Image.BICUBIC)) for f in frames])


def _normalise(frames: np.ndarray, cfg: dict) -> np.ndarray:
    """(T, H, W, 3) uint8 -> (T, 3, H, W) float32, rescaled and normalised as the config says."""
    x = frames.astype(np.float32) * np.float32(cfg["rescale_factor"])
    x = (x - np.array(cfg["image_mean"], np.float32)) / np.array(cfg["image_std"], np.float32)
    return x.transpose(0, 3, 1, 2)


def _tokenize(tokenizer, text: str) -> dict[str, torch.Tensor]:
    ids = torch.tensor([tokenizer.encode(text, add_special_tokens=False)])
    return {"input_ids": ids, "attention_mask": torch.ones_like(ids)}


# ---- Qwen3-VL: video_processing_qwen3_vl.py and processing_qwen3_vl.py ----

def _video_smart_resize(t: int, h: int, w: int, factor: int, min_pixels: int, max_pixels: int):
    """smart_resize of video_processing_qwen3_vl / _glm4v (the same code), except that one frame is
    allowed: the stock code raises for fewer frames than a temporal patch, patchify pads them."""
    if h < factor or w < factor:
        scale = max(factor / h, factor / w)
        h, w = int(h * scale), int(w * scale)
    h_bar, w_bar = round(h / factor) * factor, round(w / factor) * factor
    t_bar = max(round(t / 2) * 2, 2)
    if t_bar * h_bar * w_bar > max_pixels:
        beta = math.sqrt((t * h * w) / max_pixels)
        h_bar = max(factor, math.floor(h / beta / factor) * factor)
        w_bar = max(factor, math.floor(w / beta / factor) * factor)
    elif t_bar * h_bar * w_bar < min_pixels:
        beta = math.sqrt(min_pixels / (t * h * w))
        h_bar, w_bar = math.ceil(h * beta / factor) * factor, math.ceil(w * beta / factor) * factor
    return h_bar, w_bar


def _qwen_style_video(model_dir: Path, frames: np.ndarray):
    """Resize, normalise and patchify as the Qwen3-VL and GLM-4.1V video processors do."""
    cfg = json.loads((Path(model_dir) / "video_preprocessor_config.json").read_text())
    patch, merge, temporal = cfg["patch_size"], cfg["merge_size"], cfg["temporal_patch_size"]
    h, w = _video_smart_resize(len(frames), *frames.shape[1:3], patch * merge,
                               cfg["size"]["shortest_edge"], cfg["size"]["longest_edge"])
    pixels, grid = _qwen_patchify(_normalise(_resize(frames, h, w), cfg), patch, merge, temporal)
    return torch.from_numpy(np.ascontiguousarray(pixels)), grid, merge, temporal


def _qwen_patchify(x: np.ndarray, patch: int, merge: int, temporal: int):
    """Qwen3VLVideoProcessor.patchify for one video (T, C, H, W): pad T with the last frame."""
    if pad := -len(x) % temporal:
        x = np.concatenate([x, np.repeat(x[-1:], pad, 0)])
    t, c, h, w = x.shape
    gt, gh, gw = t // temporal, h // patch, w // patch
    p = x.reshape(gt, temporal, c, gh // merge, merge, patch, gw // merge, merge, patch)
    p = p.transpose(0, 3, 6, 4, 7, 2, 1, 5, 8)
    return p.reshape(gt * gh * gw, c * temporal * patch * patch), (gt, gh, gw)


QWEN3_VL_LAYOUTS = ("published", "nested")


def qwen3_vl_prompt(prompt: str, block: str, layout: str = "published") -> str:
    """The prompt with the video's frame blocks in place, by one of two processors' rules.

    "published": the processor Qwen3-VL was released with (transformers 4.57
    `Qwen3VLProcessor.__call__`, copied by vLLM and SGLang, and again transformers 5.25):
    `<|vision_start|><|video_pad|><|vision_end|>` is replaced as a whole when the prompt holds it,
    else a bare `<|video_pad|>` ("vllm may input video token directly").
    "nested": transformers 5.24 (`replace_video_token` on `<|video_pad|>` alone): the
    template's own markers stay around the frame blocks.
    """
    if layout not in QWEN3_VL_LAYOUTS:
        raise ValueError(f"layout must be one of {QWEN3_VL_LAYOUTS}, got {layout!r}")
    wrapped = "<|vision_start|><|video_pad|><|vision_end|>"
    if layout == "published" and wrapped in prompt:
        return prompt.replace(wrapped, block, 1)
    return prompt.replace("<|video_pad|>", block, 1)


def qwen3_vl_video(model_dir: Path, tokenizer, prompt: str, frames: np.ndarray, seconds: list[float],
                   duration: float | None, layout: str = "published") -> dict:
    """Stock Qwen3-VL video inputs, laid out by `layout` (`qwen3_vl_prompt`; default the published one)."""
    pixels, (gt, gh, gw), merge, temporal = _qwen_style_video(model_dir, frames)
    # processing_qwen3_vl._calculate_timestamps: pad with the last time, average each temporal patch
    times = list(seconds) + [seconds[-1]] * (-len(seconds) % temporal)
    stamps = [(times[i] + times[i + temporal - 1]) / 2 for i in range(0, len(times), temporal)]
    per_frame = gh * gw // merge**2
    block = "".join(f"<{s:.1f} seconds><|vision_start|>" + "<|video_pad|>" * per_frame + "<|vision_end|>"
                    for s in stamps)
    inputs = _tokenize(tokenizer, qwen3_vl_prompt(prompt, block, layout))
    video_id = tokenizer.convert_tokens_to_ids("<|video_pad|>")
    inputs["mm_token_type_ids"] = (inputs["input_ids"] == video_id).long() * 2
    return {**inputs, "pixel_values_videos": pixels, "video_grid_thw": torch.tensor([[gt, gh, gw]])}


def glm4v_video(model_dir: Path, tokenizer, prompt: str, frames: np.ndarray, seconds: list[float],
                duration: float | None) -> dict:
    """processing_glm4v.replace_video_token: per temporal patch, an image block then its whole second."""
    pixels, (gt, gh, gw), merge, temporal = _qwen_style_video(model_dir, frames)
    stamps = list(seconds[::temporal])[:gt]  # metadata.timestamps[::2]
    per_frame = gh * gw // merge**2
    block = "".join("<|begin_of_image|>" + "<|image|>" * per_frame + f"<|end_of_image|>{int(s)}" for s in stamps)
    inputs = _tokenize(tokenizer, prompt.replace("<|video|>", block, 1))
    ids = inputs["input_ids"][0]
    inside = (torch.cumsum(ids == tokenizer.convert_tokens_to_ids("<|begin_of_video|>"), 0)
              > torch.cumsum(ids == tokenizer.convert_tokens_to_ids("<|end_of_video|>"), 0))
    image = ids == tokenizer.convert_tokens_to_ids("<|image|>")
    inputs["mm_token_type_ids"] = torch.where(image & inside, 2, torch.where(image, 1, 0))[None]
    return {**inputs, "pixel_values_videos": pixels, "video_grid_thw": torch.tensor([[gt, gh, gw]])}


def internvl_video(model_dir: Path, tokenizer, prompt: str, frames: np.ndarray, seconds: list[float],
                duration: float | None) -> dict:
    """processing_internvl: every frame one tile at the video processor's size, on a `FrameK: ` line."""
    cfg = json.loads((Path(model_dir) / "video_preprocessor_config.json").read_text())
    seq = json.loads((Path(model_dir) / "processor_config.json").read_text())["image_seq_length"]
    pixels = _normalise(_resize(frames, cfg["size"]["height"], cfg["size"]["width"]), cfg)
    tile = f"{tokenizer.start_image_token}{tokenizer.context_image_token * seq}{tokenizer.end_image_token}"
    block = "\n".join(f"Frame{i + 1}: {tile}" for i in range(len(frames)))
    inputs = _tokenize(tokenizer, prompt.replace(tokenizer.video_token, block, 1))
    return {**inputs, "pixel_values": torch.from_numpy(np.ascontiguousarray(pixels))}


def llava_onevision_video(model_dir: Path, tokenizer, prompt: str, frames: np.ndarray,
                          seconds: list[float], duration: float | None) -> dict:
    """processing_llava_onevision.replace_video_token: T frames of pooled tiles plus one newline."""
    cfg = json.loads((Path(model_dir) / "video_preprocessor_config.json").read_text())
    tokens = json.loads((Path(model_dir) / "processor_config.json").read_text())["num_image_tokens"]
    pixels = _normalise(_resize(frames, cfg["size"]["height"], cfg["size"]["width"]), cfg)
    pooled = math.ceil(int(math.sqrt(tokens)) / 2)
    inputs = _tokenize(tokenizer, prompt.replace("<video>", "<video>" * (len(frames) * pooled**2 + 1), 1))
    return {**inputs, "pixel_values_videos": torch.from_numpy(np.ascontiguousarray(pixels))[None]}


def smolvlm_video(model_dir: Path, tokenizer, prompt: str, frames: np.ndarray, seconds: list[float],
                  duration: float | None) -> dict:
    """processing_smolvlm.replace_video_token: an intro line, then each frame's time and global view.

    The stock video processor resizes twice (longest edge, then the square tile) with torchvision;
    here frames are resized once to the square tile, and not at all when already that size.
    """
    from num2words import num2words

    cfg = json.loads((Path(model_dir) / "video_preprocessor_config.json").read_text())
    seq = json.loads((Path(model_dir) / "processor_config.json").read_text())["image_seq_len"]
    side = cfg["max_image_size"]["longest_edge"]
    pixels = torch.from_numpy(np.ascontiguousarray(_normalise(_resize(frames, side, side), cfg)))
    whole = int(duration) if duration is not None else int(seconds[-1])
    text = (f"You are provided the following series of {num2words(len(frames))} frames "
            f"from a {timedelta(seconds=whole)} [H:MM:SS] video.\n")
    view = "<fake_token_around_image><global-img>" + "<image>" * seq + "<fake_token_around_image>"
    for s in seconds:
        text += f"\nFrame from {int(s // 60):02d}:{int(s % 60):02d}:" + view
    inputs = _tokenize(tokenizer, prompt.replace("<video>", text + "\n\n", 1))
    return {**inputs, "pixel_values": pixels[None],
            "pixel_attention_mask": torch.ones((1, len(frames), side, side), dtype=torch.bool)}


VIDEO_BUILDERS = {
    "qwen3_vl": qwen3_vl_video, "qwen3_vl_moe": qwen3_vl_video, "qwen3_5": qwen3_vl_video, "glm4v": glm4v_video,
    "internvl": internvl_video, "llava_onevision": llava_onevision_video,
    "smolvlm": smolvlm_video,
}
