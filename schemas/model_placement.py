"""Where the scorer's model runs and in which precision, decided once on the driver.

`model.device` and `model.dtype` may be 'auto'. A job resolves them here from its resources,
before any actor starts, and records the result in job.json: a scorer pool that reserves GPUs
(`resources.num_gpus_per_actor` > 0) runs on cuda in bfloat16, one that reserves none runs on
the CPU in float32 (bfloat16 on a CPU is slower and noisier). A value the user set is kept.
Each actor then loads exactly what job.json says, whatever its node has: one told cuda that
sees no GPU fails at start (actors/adapters/devices.py) instead of scoring on the CPU in
another precision, and a resume that resolves to other values is refused
(pipeline/output_dir.py), so one output never mixes bfloat16 and float32 scores.
"""
from __future__ import annotations

from schemas.job_config import JobConfig, ModelConfig
from schemas.user_error import UserError

AUTO = "auto"
# (device, dtype) of 'auto' where the scorer reserves GPUs, and where it reserves none.
ON_GPU, ON_CPU = ("cuda", "bfloat16"), ("cpu", "float32")
# The job.json keys this module fills in.
PLACEMENT_KEYS = ("model.device", "model.dtype")


class PlacementError(UserError):
    """model.device asks for what the scorer's resources do not give."""


def resolve_model_placement(model: ModelConfig, gpus_per_actor: float) -> ModelConfig:
    """`model` with 'auto' device and dtype replaced by what a scorer actor reserving
    `gpus_per_actor` GPUs runs with; values the user set are kept."""
    if model.device == "cuda" and gpus_per_actor == 0:
        raise PlacementError("model.device=cuda, but resources.num_gpus_per_actor=0 reserves no GPU for the "
                             "scorer actors: set resources.num_gpus_per_actor (1 per GPU), or model.device=cpu")
    on_gpu = gpus_per_actor > 0 if model.device == AUTO else model.device == "cuda"
    device, dtype = ON_GPU if on_gpu else ON_CPU
    return model.model_copy(update={"device": device, "dtype": dtype if model.dtype == AUTO else model.dtype})


def resolve_placement(cfg: JobConfig) -> JobConfig:
    """The job with its model's device and dtype resolved from its resources (module docstring)."""
    return cfg.model_copy(update={"model": resolve_model_placement(cfg.model, cfg.resources.num_gpus_per_actor)})


def placement_hint(old: dict[str, object], differs: list[str]) -> str:
    """How to continue an output whose first run resolved `old` (flattened job.json keys) to other
    values than this run: the `differs` keys of PLACEMENT_KEYS, set to the first run's values."""
    sets = " ".join(f"--set {key}={old.get(key)}" for key in PLACEMENT_KEYS if key in differs)
    gpus = " with GPUs reserved (resources.num_gpus_per_actor > 0)" if old.get("model.device") == "cuda" else ""
    return (f"model.device and model.dtype follow resources.num_gpus_per_actor unless set (cuda and bfloat16 "
            f"with GPUs, cpu and float32 without): to continue this output as it began, pass {sets}{gpus}")
