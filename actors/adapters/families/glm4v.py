"""GLM-4.1V (`glm4v`): Qwen2-VL's pixel layout (14-pixel patches, CLIP normalisation, read from
the checkpoint) and M-RoPE from the model's own `get_rope_index`, with GLM's tokens: an image is
`<|image|>` x N inside the template's `<|begin_of_image|>`/`<|end_of_image|>`; a video's `<|video|>`
becomes, per temporal patch, `<|begin_of_image|>` + `<|image|>` x N + `<|end_of_image|>` and the
integer second of the patch's first frame (`Glm4vProcessor.replace_video_token`). Video frames use
the same `<|image|>` token: token type 2 between `<|begin_of_video|>` and `<|end_of_video|>`, 1 elsewhere.
GLM-4.1V Thinking checkpoints are read after their answer opening `<think></think><answer>`
(`actors/answer_readout.py`, applied by the engine to every family's prompts).
"""
from __future__ import annotations

import torch

from actors.adapters.families.qwen2_vl import DEFAULT_VIDEO_FPS, Qwen2VLFamily, QwenMedia
from actors.adapters.qwen2_vl_inputs import prepare_visual
from pipeline.resize_policy import smart_resize_small_up


class Glm4vFamily(Qwen2VLFamily):
    """Family module of `glm4v` (see `actors/adapters/family.py`)."""

    resize_rule = "smart_resize_small_up"

    def __init__(self, checkpoint: str, config, tokenizer, decode):
        super().__init__(checkpoint, config, tokenizer, decode)
        self.timed_video = False
        self.image_id = config.image_token_id
        self.video_start, self.video_end = config.video_start_token_id, config.video_end_token_id
        token = tokenizer.convert_ids_to_tokens
        self.image_begin, self.image_end = token(config.image_start_token_id), token(config.image_end_token_id)

    def prepare_media(self, item) -> QwenMedia:
        d = self.decode
        bounds = (d.image_min_pixels, d.image_max_pixels) if item.media_type == "image" else (
            d.video_min_pixels, d.video_max_pixels)
        return QwenMedia(item, prepare_visual(item.frames, self.spec, *bounds, d.resize_factor,
                                              already_resized=item.resized, resize_rule=smart_resize_small_up))

    def media_layout(self, media: QwenMedia) -> tuple[str, str]:
        image = self.placeholders["image"]
        grid_t, grid_h, grid_w = media.visual.grid_thw
        per_frame = grid_h * grid_w // self.spec.merge_size**2
        if media.item.media_type == "image":
            return image, image * per_frame
        seconds = media.item.seconds(DEFAULT_VIDEO_FPS)[::self.spec.temporal_patch_size][:grid_t]
        seconds += [seconds[-1]] * (grid_t - len(seconds))
        block = "".join(f"{self.image_begin}{image * per_frame}{self.image_end}{int(s)}" for s in seconds)
        return self.placeholders["video"], block

    def batch_key(self, media: QwenMedia) -> str:
        # the model finds image and video features by the same <|image|> token: one kind per forward
        return media.item.media_type

    def token_types(self, ids: torch.Tensor) -> dict[str, torch.Tensor]:
        inside = torch.cumsum(ids == self.video_start, -1) > torch.cumsum(ids == self.video_end, -1)
        image = ids == self.image_id
        return {"mm_token_type_ids": torch.where(image & inside, 2, torch.where(image, 1, 0))}


FAMILY = Glm4vFamily
