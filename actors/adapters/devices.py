"""Where and in which precision a model runs, as its ModelConfig says.

A job resolves 'auto' on the driver from its resources (schemas/model_placement.py), so its
actors get cuda or cpu: one told cuda that sees no GPU fails here, before any weight is read,
instead of scoring on its CPU in another precision than the rest of the job. 'auto' is still
taken where the model runs in the caller's own process (jobs/reward_api.py): there, what this
process sees is where the model runs.
"""
from __future__ import annotations

import os

import torch

from schemas.model_placement import AUTO, ON_CPU, ON_GPU


class GpuUnavailableError(RuntimeError):
    """The model was told to run on cuda, and this process sees no GPU."""


def resolve_device(device: str) -> torch.device:
    if device == AUTO:
        return torch.device(ON_GPU[0] if torch.cuda.is_available() else ON_CPU[0])
    if device == "cuda" and not torch.cuda.is_available():
        visible = os.environ.get("CUDA_VISIBLE_DEVICES")
        raise GpuUnavailableError(
            f"model.device is cuda, but this process sees no GPU (torch.cuda.is_available() is False; "
            f"CUDA_VISIBLE_DEVICES={visible!r}, torch built for CUDA {torch.version.cuda}): a node without "
            "a working GPU or driver. The job scores on cuda only, in one precision; fix the node, or rerun "
            "with resources.num_gpus_per_actor=0 (cpu, float32) into a new --out")
    return torch.device(device)


def resolve_dtype(dtype: str, device: torch.device) -> torch.dtype:
    if dtype == AUTO:
        return getattr(torch, ON_GPU[1] if device.type == "cuda" else ON_CPU[1])
    return getattr(torch, dtype)
