"""Job configuration: one pydantic model per concern, every field documents itself.

A job is config -> build -> run. The CLI fills `JobConfig` from flags, an optional
YAML file and `--set key=value` overrides; `job.json` beside the output is this model
dumped, so a run can be reproduced from its own output directory. A field a resumed run may
change says so with `resume_may_change` (schemas/resume_rules.py); every other one must match.
"""
from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from schemas.resume_rules import SPEED_ONLY, resume_may_change
from schemas.scores import check_carried_columns

from schemas.frames_spec import parse_frames_spec
from schemas.manifest import IMAGE_EXTS, VIDEO_EXTS

# WebDataset members taken as a sample's media, first match wins (JobConfig.media_extensions).
WEBDATASET_MEDIA_EXTENSIONS = ("jpg", "jpeg", "png", "webp", "bmp", "gif", "tif", "tiff",
                               "mp4", "webm", "mkv", "mov", "avi")

# `JobConfig.id_column` when ids are made from file and row number (no column holds them).
GENERATED_IDS = "<file>#<row>"



class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class DecodeConfig(_Strict):
    """How media become frames (the CPU stage)."""

    frames: str = Field(
        "uniform:8",
        description="Video frame sampling. 'uniform:N' spreads N frames evenly over the whole "
        "video; 'visionreward' takes one frame per second from the start, at most 24, as the "
        "VisionReward inference script does ('visionreward:M' caps at M instead); 'fps:F' takes a frame "
        "every 1/F seconds from the start (the rate a video judge was trained at, e.g. 'fps:2'), never "
        "faster than the video's own rate, and 'fps:F:MAX' at most MAX frames, spread evenly over a clip "
        "longer than MAX/F seconds. Each output row records the frames taken (frame_count, frame_times).",
    )
    resize_rule: Literal["smart_resize", "smart_resize_small_up", "fit_within"] | None = Field(
        None,
        description="How the decode stage sizes frames (pipeline/resize_policy.py). None = the model's own, "
        "filled in by `vrscore score` from the model's family before any work and kept in job.json: "
        "'smart_resize' (Qwen2-VL, Qwen2.5-VL, Qwen3-VL) and 'smart_resize_small_up' (GLM-4.1V) give the "
        "model's input size, which the model then takes as is; 'fit_within' (InternVL, LLaVA-OneVision, "
        "Gemma 3, SmolVLM, the generic path) keeps the source image, only scaled down to the max pixels, "
        "since those processors resize or tile it themselves. A set value must be the model's own.",
    )
    resize_factor: int | None = Field(
        None,
        ge=1,
        description="Frame sides are rounded to a multiple of this under the smart_resize rules. None = the "
        "model's own, filled in like resize_rule: patch size x spatial merge from its "
        "preprocessor_config.json (28 for Qwen2-VL, Qwen2.5-VL and GLM-4.1V, 32 for Qwen3-VL). A set "
        "value must be a multiple of it (coarser sides, fewer visual tokens); families that resize "
        "themselves take none.",
    )
    image_min_pixels: int = Field(56 * 56, description="Lower bound on pixels per image after resize.")
    image_max_pixels: int = Field(
        1024 * 28 * 28,
        description="Upper bound on pixels per image after resize; more pixels = more visual "
        "tokens = slower scoring and more memory.",
    )
    video_min_pixels: int = Field(128 * 28 * 28, description="Lower bound on pixels per video frame.")
    video_max_pixels: int = Field(
        256 * 28 * 28,
        description="Upper bound on pixels per video frame. Frames are resized while decoding, so "
        "large videos never move full-size frames through the object store.",
    )
    max_source_pixels: int = Field(
        8192 * 8192,
        description="Images or video frames larger than this (width x height, before resize) are "
        "refused as 'too_large' rather than decoded (decompression-bomb guard).",
    )
    max_bytes: int = Field(
        2 * 1024**3, description="Media files larger than this many bytes are refused as 'too_large'."
    )
    worker_nice: int = Field(
        10,
        ge=0,
        le=19,
        description="Scheduling niceness of the decode worker processes. Where decode and a CPU "
        "scorer share cores, decoding then takes the CPU only when the scorer leaves it (on 2 "
        "cores, a decoder at equal priority slowed the scorer by 50%, at 10 by 12%); on idle "
        "cores it runs at full speed. 0 = the same priority as the scorer.",
        json_schema_extra=SPEED_ONLY,
    )
    timeout_s: float = Field(
        120.0,
        description="A single item's read + decode is abandoned after this many seconds and the row "
        "gets status 'timeout'.",
        json_schema_extra=resume_may_change("when a slow item is given up on (which items time out depends "
                                            "on the load anyway); no score depends on it"),
    )
    allowed_schemes: list[str] = Field(
        default_factory=lambda: ["file", "s3", "gs", "gcs", "az", "abfs", "http", "https"],
        description="URI schemes a manifest may point at ('file' covers plain paths). A uri with "
        "another scheme becomes an 'invalid_uri' row, so a manifest cannot make workers read "
        "from places the operator did not allow.",
    )

    @field_validator("frames")
    @classmethod
    def _check_frames(cls, v: str) -> str:
        parse_frames_spec(v)  # ValueError names the rules
        return v


class ModelConfig(_Strict):
    """Which vision-language model answers the checklist, and how it runs."""

    model: str = Field(
        ...,
        description="A transformers hub id, a local folder, or an fsspec URI (s3://, gs://, ...) of a saved "
        "checkpoint folder (config, tokenizer files, *.safetensors weights). A URI is downloaded once per node "
        "into cache_dir, with the job's storage settings.",
    )
    dtype: Literal["auto", "bfloat16", "float16", "float32"] = Field(
        "auto", description="'auto' = bfloat16 where the scorer actors reserve GPUs (resources.num_gpus_per_actor "
        "> 0), float32 where they reserve none (bf16 on CPU is slower and noisier). Resolved once on the driver and "
        "recorded in job.json (schemas/model_placement.py); a resume that resolves to another dtype is refused."
    )
    device: Literal["auto", "cuda", "cpu"] = Field(
        "auto", description="'auto' = cuda where the scorer actors reserve GPUs (resources.num_gpus_per_actor > 0), "
        "else cpu; resolved on the driver and recorded in job.json. An actor told cuda that sees no GPU fails at "
        "start rather than scoring on its CPU.")
    engine: Literal["transformers", "vllm"] = Field(
        "transformers",
        description="What runs the model. 'transformers': vrscore's own engine (one prefix forward per item, "
        "the questions packed against its cache; any registered family). 'vllm': vLLM's LLM class in the "
        "scorer actor, one prompt per (item, question) with the same token ids and answer pooling, prefix "
        "caching per share_prefix; runs models across several GPUs (tensor_parallel_size). Needs the "
        "optional extra (pip install 'vrscore[vllm]') and a family vLLM loads (docs/cluster.md). Scores of the "
        "two engines agree to float rounding, not bit for bit, so a resume keeps the engine.",
    )
    tensor_parallel_size: int = Field(
        1, ge=1,
        description="engine=vllm only: GPUs one model copy is split over (tensor parallelism); each scorer "
        "actor reserves this many GPUs. 1 = one GPU (or the CPU).",
    )
    vllm_gpu_memory_utilization: float = Field(
        0.9, gt=0, le=1,
        description="engine=vllm on GPU: the share of each GPU's memory vLLM may take for weights, activations "
        "and its KV cache. Lower it where other processes share the GPU. May change on resume.",
        json_schema_extra=resume_may_change("memory only"),
    )
    vllm_cpu_kv_cache_gib: int = Field(
        1, ge=1,
        description="engine=vllm on CPU: GiB of memory for vLLM's KV cache (VLLM_CPU_KVCACHE_SPACE, whole GiB). A few "
        "items' prompts need far less than 1 GiB; more lets more questions stay cached. May change on resume.",
        json_schema_extra=resume_may_change("memory only"),
    )
    vllm_max_model_len: int = Field(
        16384, ge=256,
        description="engine=vllm: the longest prompt (template, media tokens, question) vLLM accepts; it sizes "
        "vLLM's buffers at start-up. A longer prompt fails its row. May change on resume.",
        json_schema_extra=resume_may_change("a bound on prompt length; no score depends on it"),
    )
    vllm_enforce_eager: bool | None = Field(
        None,
        description="engine=vllm: run without CUDA graphs or compilation. None = eager on CPU (start-up in "
        "seconds rather than minutes), graphs on GPU. May change on resume.",
        json_schema_extra=resume_may_change("speed only"),
    )
    attn_implementation: str = Field("sdpa", description="transformers attention backend ('sdpa' or 'eager'; 'flash_attention_2' only with "
        "share_prefix=False, since the shared-prefix path needs a 4D attention mask).")
    trust_remote_code: bool = Field(
        False, description="Allow model repos to run their own Python code. Off unless asked for."
    )
    yes_words: list[str] = Field(
        default_factory=lambda: ["Yes", "yes"],
        description="Answer tokens that mean yes; their logits are pooled (log-sum-exp) so 'Yes' vs "
        "'yes' never matters. Each must be a single token of the model's tokenizer.",
    )
    no_words: list[str] = Field(default_factory=lambda: ["No", "no"], description="Answer tokens that mean no (pooled likewise).")
    answer_leading_space: bool | None = Field(
        None,
        description="Score the answer words with a leading space (' Yes'), as a model writes them "
        "after a generation prompt that ends in text such as 'Assistant:'. None = decide from the "
        "chat template: leading space when its generation prompt ends in neither whitespace nor a "
        "special token.",
    )
    chat_template: str | None = Field(
        None,
        description="Path or URI of a Jinja chat template file to use instead of the checkpoint's own (a URI is "
        "read with the job's storage settings). None = the checkpoint's (tokenizer_config.json, "
        "chat_template.jinja or chat_template.json); a checkpoint without one is refused.",
    )
    chat_template_kwargs: dict[str, Any] | None = Field(
        None,
        description="Options passed to the chat template's rendering (e.g. {enable_thinking: false}), the "
        "same on every path. A template that reads `enable_thinking` gets enable_thinking=false unless it "
        "is set here: a thinking prompt would read the answer where the model starts to reason. Filled in "
        "by `vrscore score` before any work and kept in job.json (null: the template reads no option).",
    )
    answer_prefix: str | None = Field(
        None,
        description="Text appended after the generation prompt, as template text (its markers become the "
        "tokenizer's special tokens), so the answer is read where the model writes it. None = the model's "
        "own: GLM-4.1V Thinking checkpoints (a glm4v template with no thinking switch and <think> tokens) "
        "get '<think></think><answer>', others none; '' = none. Filled in by `vrscore score` and kept in job.json.",
    )
    min_answer_mass: float | None = Field(
        None,
        ge=0,
        le=1,
        description="Refuse to start (before any row is scored) when the model puts less than this "
        "probability on the yes and no words together where the answer is read, averaged over the "
        "questions of a synthetic item: a sign of a wrong chat template (e.g. a thinking prefix), answer "
        "prefix or answer words, under which p_yes looks normal but means nothing. None = no check; "
        "every row's answer_mass column and the job summary report the mass either way. May change on resume.",
        json_schema_extra=resume_may_change("a start-up check only; no score depends on it"),
    )
    share_prefix: bool = Field(
        True,
        description="Encode each item's media and prompt prefix once and run only the question "
        "suffixes against its key/value cache. False = one full forward per question (reference path). "
        "With engine=vllm: vLLM's automatic prefix caching on or off.",
    )
    token_budget: int = Field(
        16384,
        description="Upper bound on tokens in one suffix forward of the scorer: rows x (longest "
        "prefix + longest set of packed question suffixes). Bigger fills the GPU better; too big "
        "runs out of memory. Items are packed greedily up to it; an item over it alone has its "
        "questions split into chunks against one prefix cache. Lower it after an out-of-memory error; "
        "may change on resume.",
        json_schema_extra=resume_may_change("speed and memory only: how items are packed into forwards"),
    )
    systemic_failure_batches: int = Field(
        3,
        ge=1,
        description="Stop the job when this many consecutive scorer batches fail on every item, one by "
        "one too, with the same exception type (a broken model or device, not bad items), rather than "
        "mark every remaining row score_error. Where the actor has scored an item before, that item is "
        "re-scored as a check and the job stops at the first such batch. Smaller stops sooner; a "
        "larger value tolerates runs of batches made only of bad items. May change on resume.",
        json_schema_extra=resume_may_change("when the job stops on a broken model; no score depends on it"),
    )
    cache_dir: str | None = Field(
        None,
        description="Local folder where each node keeps the models it downloaded from a URI, one copy per "
        "model version shared by the node's actors. None = $VRSCORE_MODEL_CACHE, else "
        "$XDG_CACHE_HOME/vrscore/models (~/.cache/vrscore/models). Created 0700; a folder that is not the "
        "job user's own, or that group or others may write, is refused. Nothing is ever evicted from it.",
        json_schema_extra=resume_may_change("where each node keeps its copy; `fingerprint` says which model"),
    )
    fingerprint: str | None = Field(
        None,
        description="For a checkpoint folder (local or at a URI): sha256 over the names, sizes and versions "
        "(ETags, else mtimes) of the files loading reads (its top level, and the shards an index names). "
        "Filled in by `vrscore score` before any work and kept in job.json: a resume refuses a changed "
        "checkpoint, and actors refuse objects at a URI that no longer match. Set it to pin a version. "
        "None for hub ids.",
    )
    chat_template_fingerprint: str | None = Field(
        None,
        description="The same fingerprint for the chat_template file, filled in and checked alike. None when "
        "the checkpoint's own template is used (the model's fingerprint covers it).",
    )


class ResourcesConfig(_Strict):
    """Where each stage runs. Applied in one place: pipeline/."""

    scorer_actors: int = Field(1, ge=1, description="Size of the scorer actor pool (one model copy each).",
                               json_schema_extra=SPEED_ONLY)
    scorer_max_actors: int | None = Field(
        None, description="Let the scorer pool autoscale up to this size (None = fixed).", json_schema_extra=SPEED_ONLY
    )
    num_gpus_per_actor: float = Field(
        0.0, ge=0, description="GPUs per scorer actor; 1 on a GPU cluster, 0.5 packs two actors per GPU. 0 = "
        "the scorer runs on CPU, where model.dtype 'auto' is float32 (bfloat16 on GPU): a resume may change "
        "it, but not to or from 0. With model.engine=vllm and tensor_parallel_size > 1: that many (one model "
        "copy split over them).",
        json_schema_extra=resume_may_change("speed and memory only, while the scorer stays on GPU (or on CPU)",
                                            except_to_or_from_zero=True),
    )
    num_cpus_per_actor: float = Field(1.0, gt=0, description="CPUs reserved by each scorer actor.",
                                      json_schema_extra=SPEED_ONLY)
    cpu_threads_per_actor: int | None = Field(
        None,
        ge=1,
        description="torch intra-op threads of a scorer actor running on CPU. None = every core of "
        "the node (Ray would otherwise limit the actor to one thread per reserved CPU). Ignored on GPU.",
        json_schema_extra=SPEED_ONLY,
    )
    decode_cpus: float = Field(1.0, gt=0, description="CPUs each decode actor reserves.", json_schema_extra=SPEED_ONLY)
    decode_actors: tuple[int, int] | None = Field(
        None,
        description="(min, max) of the autoscaling decode pool. None = from 1 up to every CPU left "
        "after the scorers' reservations and one CPU per node for Ray Data's read and write tasks "
        "(divided by decode_cpus). A larger max feeds faster scorers; it never takes CPUs the "
        "scorers reserved. Each decode actor uses the node's spare cores as decoding threads.",
        json_schema_extra=SPEED_ONLY,
    )
    batch_size: int = Field(
        16,
        ge=1,
        description="Rows per scorer call. The actor packs them into forwards under token_budget; "
        "larger batches amortise more but hold more frames in memory.",
        json_schema_extra=SPEED_ONLY,
    )
    decode_batch_size: int = Field(8, ge=1, description="Rows per decode task.", json_schema_extra=SPEED_ONLY)
    rows_per_file: int = Field(
        1000,
        ge=1,
        description="Rows per output Parquet file. Each file is also a resume checkpoint: smaller "
        "files mean less rework after a crash, larger ones fewer files.",
        json_schema_extra=resume_may_change("how rows are split into files; each row is written once either way"),
    )


    @field_validator("decode_actors")
    @classmethod
    def _check_decode_actors(cls, v: tuple[int, int] | None) -> tuple[int, int] | None:
        if v is not None and not 1 <= v[0] <= v[1]:
            raise ValueError(f"decode_actors must be (min, max) with 1 <= min <= max, got {list(v)}")
        return v


class StorageConfig(_Strict):
    """Options for S3 and S3-compatible stores (s3://), for the manifest, media, model and
    output alike; other filesystems (gs://, az://, ...) use their library's own defaults.
    Credentials always come from the standard AWS chain (environment, ~/.aws profiles,
    instance or pod roles): there is no field for them, so they are never written to
    outputs or logs."""

    endpoint_url: str | None = Field(None, description="S3-compatible endpoint (e.g. MinIO); None = AWS.")
    region: str | None = Field(None, description="S3 region; None = from the environment/profile.")
    profile: str | None = Field(None, description="AWS profile name from ~/.aws; None = default chain.")
    anon: bool = Field(False, description="Read public buckets without credentials.")


# The files a job's checklists come from: a resume compares the checklists they load (checklist.json).
BY_CONTENT = resume_may_change("compared by the checklists it loads (checklist.json), not by path")


class JobConfig(_Strict):
    """Everything `vrscore score` needs."""

    manifest: str = Field(..., description="Parquet file or directory (local path or URI) with id, uri[, media_type, "
                          "prompt, group], or with the media bytes themselves (media_column).")
    media_column: str | None = Field(
        None,
        description="Manifest column holding the media bytes: binary, or a struct with 'bytes' and an optional "
        "'path' (the Hugging Face Image feature). None = a column called 'image' or 'video' when the manifest "
        "has no 'uri' column. Scores carry the struct's path as uri (else null), never the bytes.",
    )
    id_column: str | None = Field(
        None,
        description="Manifest column with the row ids, for a dataset whose ids are not in a column called 'id'. "
        "An embedded-media manifest with neither gets ids from file and row number ('<file>#<row>', the file "
        f"relative to the manifest): `vrscore score` then records {GENERATED_IDS!r} here, and the manifest's "
        "fingerprint in job.json holds a resume to the same files.",
    )
    checklist: list[str] = Field(
        default_factory=lambda: ["default"],
        description="Checklists, one per media kind: 'default' (ours, for images and videos), a "
        "YAML/JSON file in our format (its media_type says which kind it scores), or a VisionReward "
        "*_qa.txt (paired in order with `weights`); plus checklist additions (a file with `adds_to`, or "
        "'visionreward-alignment'), which add questions to their kind's checklist. Rows of a kind with no "
        "checklist become 'unsupported_media' rows.",
        json_schema_extra=BY_CONTENT,
    )
    weights: list[str] = Field(
        default_factory=list, description="VisionReward weight files, in the order of the *_qa.txt checklists.",
        json_schema_extra=BY_CONTENT,
    )
    dimensions: str | None = Field(
        None, description="VisionReward dimensions.json mapping question texts to dimensions.",
        json_schema_extra=BY_CONTENT,
    )
    out: str = Field(..., description="Output directory (local path or URI): scores/, checklist.json, job.json.",
                     json_schema_extra=resume_may_change("the output itself, which may be reached by another path"))
    prompt_field: str | None = Field(
        None,
        description="WebDataset shards: the field of each sample's json member that holds the prompt. None = "
        "the sample's txt member.",
    )
    media_extensions: list[str] = Field(
        default_factory=lambda: list(WEBDATASET_MEDIA_EXTENSIONS),
        description="WebDataset shards: which member of a sample is its media, the first of these extensions "
        "that it has (images and videos by their usual extensions; e.g. ['mp4', 'jpg'] to prefer a sample's "
        "video over its preview image).",
    )
    keep_columns: list[str] = Field(default_factory=list, description="Extra manifest columns carried through to the output.")
    alignment_column: str | None = Field(
        None,
        description="Manifest column holding an external text-image alignment probability (e.g. "
        "VQAScore) for checklists with an alignment term; without it the checklist's default is used.",
    )
    max_error_fraction: float = Field(
        1.0, ge=0, le=1, description="Exit non-zero when more than this fraction of rows failed.",
        json_schema_extra=resume_may_change("the exit status only"),
    )
    model: ModelConfig
    decode: DecodeConfig = Field(default_factory=DecodeConfig)
    resources: ResourcesConfig = Field(default_factory=ResourcesConfig)
    storage: StorageConfig = Field(default_factory=StorageConfig)

    @field_validator("media_extensions")
    @classmethod
    def _check_media_extensions(cls, v: list[str]) -> list[str]:
        unknown = [e for e in v if f".{e.lower()}" not in IMAGE_EXTS | VIDEO_EXTS]
        if unknown or not v:
            raise ValueError(f"media_extensions must name image or video extensions (without the dot), got {v!r}")
        return [e.lower() for e in v]

    @model_validator(mode="after")
    def _check_carried_columns(self) -> JobConfig:
        check_carried_columns(self.keep_columns, self.alignment_column)  # before any work, not at the write
        return self

    @model_validator(mode="after")
    def _check_engine(self) -> JobConfig:
        model, gpus = self.model, self.resources.num_gpus_per_actor
        if model.engine != "vllm":
            if model.tensor_parallel_size != 1:
                raise ValueError("model.tensor_parallel_size needs model.engine=vllm (vrscore's own engine runs "
                                 "one model copy per GPU)")
        elif model.tensor_parallel_size > 1 and gpus != model.tensor_parallel_size:
            raise ValueError(f"model.tensor_parallel_size={model.tensor_parallel_size} splits each model copy over "
                             f"that many GPUs: set resources.num_gpus_per_actor={model.tensor_parallel_size} "
                             f"(got {gpus:g})")
        return self
