"""benchmarks/gpu_check.sh runs to completion on CPU with tiny shapes, so it cannot rot
before a GPU is lent; and its scorer path imports no Ray."""
from __future__ import annotations

import json
import os
import subprocess
import sys

from tests.job_process import REPO


def test_gpu_check_dry_run_on_cpu(tmp_path):
    out = tmp_path / "gpu_check.json"
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["PYTHON"] = sys.executable
    done = subprocess.run(["bash", str(REPO / "benchmarks" / "gpu_check.sh"), "--device", "cpu", "--dry-run",
                           "--out", str(out)], env=env, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(out.read_text())
    assert result["dry_run"] and result["ray_imported"] is False
    assert {k: v["questions"] for k, v in result["cases"].items()} == {"video": 29, "image": 30}
    for case in result["cases"].values():
        assert case["fast_items_per_s"] > 0 and case["reference_items_per_s"] > 0
        assert case["max_abs_p_yes_diff"] < 1e-4  # float32 on CPU: the two paths agree closely
    assert set(result["token_budget_sweep"]) == {"256", "1024"}
