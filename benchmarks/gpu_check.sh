#!/usr/bin/env bash
# The scorer's GPU figures in one JSON (benchmarks/gpu_check.py): run it first on a GPU.
#
#   benchmarks/gpu_check.sh [--out gpu_check.json]          # on the GPU machine (< 8 min on an H100/H200)
#   benchmarks/gpu_check.sh --device cpu --dry-run --out x   # tiny shapes on CPU: the CI check
#   benchmarks/gpu_check.sh --bundle                         # here, with network: build the bundle
#
# Where vLLM is installed it then runs benchmarks/engines.py (our engine vs vLLM, ~3 min) into
# engines.json ($VRSCORE_ENGINES_OUT).
#
# Needs on the GPU machine: python3 with torch (CUDA) and transformers. No Ray, no decord,
# no network. What else the model layer imports (pydantic, Pillow) and the VisionReward
# question lists travel in the bundle, build/gpu_bundle/ (gitignored, about 25 MiB): wheels
# for CPython 3.10-3.12 on x86-64 Linux, installed into build/gpu_bundle/site only when
# the machine lacks them. Copy the checkout with that folder to the GPU machine.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
BUNDLE="${VRSCORE_GPU_BUNDLE:-$ROOT/build/gpu_bundle}"
PY="${PYTHON:-python3}"
VR="$ROOT/../shared/data/visionreward"

if [[ "${1:-}" == "--bundle" ]]; then
    mkdir -p "$BUNDLE/wheels" "$BUNDLE/visionreward"
    for version in 3.10 3.11 3.12; do
        "$PY" -m pip download --quiet --only-binary=:all: --dest "$BUNDLE/wheels" --python-version "$version" \
            --platform manylinux2014_x86_64 --platform manylinux_2_28_x86_64 "pydantic>=2.7" "pillow>=10"
    done
    cp "$VR/VisionReward_Video/VisionReward_video_qa_select.txt" "$VR/VisionReward_Image/VisionReward_image_qa_select.txt" \
        "$BUNDLE/visionreward/"
    du -sh "$BUNDLE"
    exit 0
fi

if ! "$PY" -c "import pydantic, PIL" 2>/dev/null; then
    if [[ ! -d "$BUNDLE/wheels" ]]; then
        echo "gpu_check: pydantic or Pillow missing and no bundle at $BUNDLE (build it with --bundle)" >&2
        exit 2
    fi
    "$PY" -m pip install --quiet --no-index --find-links "$BUNDLE/wheels" --target "$BUNDLE/site" pydantic pillow
    export PYTHONPATH="$BUNDLE/site${PYTHONPATH:+:$PYTHONPATH}"
fi
QA=()
if [[ -d "$BUNDLE/visionreward" ]]; then
    QA=(--video-qa "$BUNDLE/visionreward/VisionReward_video_qa_select.txt"
        --image-qa "$BUNDLE/visionreward/VisionReward_image_qa_select.txt")
fi
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}" HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
timeout 470 "$PY" "$ROOT/benchmarks/gpu_check.py" "${QA[@]}" "$@"
# One short step more where the machine has vLLM: our engine against vLLM (prefix caching on and off)
# on the same images, benchmarks/engines.py's quick setting on the GPU; skipped without vLLM or on --dry-run.
if [[ " $* " != *" --dry-run "* ]] && "$PY" -c "import vllm" 2>/dev/null; then
    timeout 300 "$PY" "$ROOT/benchmarks/engines.py" --device cuda --items 8 --repeats 1 \
        --out "${VRSCORE_ENGINES_OUT:-engines.json}" || echo "gpu_check: benchmarks/engines.py failed (rc $?)" >&2
else
    echo "gpu_check: vLLM not installed (or --dry-run): benchmarks/engines.py skipped" >&2
fi
