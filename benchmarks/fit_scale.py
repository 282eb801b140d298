"""`vrscore fit` at scale: wall time and driver peak memory on N judged pairs.

Synthesises a scores output (default image checklist, random p_yes, scored by the library's
own `aggregate`) with N/10*5 judged items in groups of 5 (every pair of a group judged, so
N pairs) plus as many unjudged rows, and a Parquet of pairs drawn from planted weights.
Then runs `vrscore fit` in a fresh process at N and at N/4, side by side, and prints each
run's wall time (Ray start-up included), the driver's peak RSS (and per phase), and the ratios.

    python benchmarks/fit_scale.py --pairs 1000000 --workdir /tmp/fit_scale
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from pipeline.weight_fit import item_features  # noqa: E402
from pipeline.weighting import aggregate  # noqa: E402
from schemas.checklist import default_checklist, dimension_column  # noqa: E402
from schemas.checklist_set import checklists_to_json  # noqa: E402
from schemas.scores import scores_schema  # noqa: E402

PER_GROUP = 5  # 10 pairs per group


def synthesise(root: Path, n_pairs: int, seed: int = 0) -> None:
    checklist = default_checklist("image")
    rng = np.random.default_rng(seed)
    groups = n_pairs // (PER_GROUP * (PER_GROUP - 1) // 2)
    judged = groups * PER_GROUP
    n = 2 * judged  # as many unjudged rows: they must never reach the driver
    q = len(checklist.questions)
    p = rng.random((n, q), dtype=np.float32)
    agg = aggregate(checklist, p)
    ids = np.array([f"g{i // PER_GROUP}/{i % PER_GROUP}" if i < judged else f"unjudged/{i}" for i in range(n)])
    group = np.array([i.split("/")[0] for i in ids])
    schema = scores_schema(checklist.dimensions, checklists_json=checklists_to_json({"image": checklist}),
                           model_id="synthetic")
    offsets = pa.array(np.arange(0, n * q + 1, q, dtype=np.int32))
    cols = {"id": pa.array(ids), "uri": pa.array(np.char.add("/media/", ids)), "media_type": pa.array(["image"] * n),
            "prompt": pa.array(group), "group": pa.array(group), "checklist": pa.array([checklist.name] * n),
            "status": pa.array(["ok"] * n), "error": pa.nulls(n, pa.string()),
            "p_yes": pa.ListArray.from_arrays(offsets, pa.array(p.ravel())),
            "answer_mass": pa.ListArray.from_arrays(offsets, pa.array(np.ones(n * q, np.float32))),
            "answers": pa.ListArray.from_arrays(offsets, pa.array(agg.answers.ravel())),
            "score": pa.array(agg.score), "score_soft": pa.array(agg.score_soft),
            **{dimension_column(d): pa.array(v) for d, v in agg.dimensions.items()}}
    table = pa.Table.from_pydict(cols, schema=schema)
    (root / "scores" / "scores").mkdir(parents=True)
    step = -(-n // 8)
    for k in range(8):
        pq.write_table(table.slice(k * step, step), root / "scores" / "scores" / f"part-{k}.parquet")

    x = item_features(checklist, p[:judged])
    w = rng.uniform(0.2, 1.0, x.shape[1]) * (rng.random(x.shape[1]) > 0.3)
    s = x @ w
    i, j = np.triu_indices(PER_GROUP, k=1)
    a = (np.arange(groups)[:, None] * PER_GROUP + i).ravel()
    b = (np.arange(groups)[:, None] * PER_GROUP + j).ravel()
    pref = np.where(rng.random(len(a)) < 1 / (1 + np.exp(s[b] - s[a])), 1, -1).astype(np.int8)
    pq.write_table(pa.table({"group": pa.array(group[a]), "a_id": pa.array(ids[a]), "b_id": pa.array(ids[b]),
                             "preference": pa.array(pref)}), root / "pairs.parquet")


RUN = """
import resource, sys, time
t = time.perf_counter()


def rss():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize() / 2**20


def high_water():
    # VmHWM: this process's own peak. ru_maxrss is not: Linux carries the peak of the
    # memory image exec replaced into it, so a child of this (large) benchmark process
    # reported the parent's RSS at spawn time as its own peak.
    with open("/proc/self/status") as f:
        return next(int(ln.split()[1]) for ln in f if ln.startswith("VmHWM")) / 1024


print("START", rss(), high_water(), resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, flush=True)
import jobs.fit_command as fit


def traced(name, f):
    def phase(*args, **kwargs):
        before = rss()
        out = f(*args, **kwargs)
        print("PHASE", name, before, high_water(), rss(), flush=True)
        return out
    return phase


for name in ("load_judgments", "collect_judged_rows", "assemble", "fit_media"):
    setattr(fit, name, traced(name, getattr(fit, name)))
from jobs.cli import main
rc = main(sys.argv[1:])
print("BENCH", rc, time.perf_counter() - t, high_water())
"""


def run_fit(root: Path) -> tuple[float, float]:
    """(seconds, driver peak RSS in MiB) of one `vrscore fit` in a fresh process."""
    out = root / "fit"
    shutil.rmtree(out, ignore_errors=True)
    env = {**os.environ, "PYTHONPATH": str(REPO), "RAY_DATA_DISABLE_PROGRESS_BARS": "1"}
    proc = subprocess.run([sys.executable, "-c", RUN, "fit", "--scores", str(root / "scores"), "--judgments",
                           str(root / "pairs.parquet"), "--out", str(out), "--quiet"],
                          capture_output=True, text=True, env=env, check=True)
    line = [ln for ln in proc.stdout.splitlines() if ln.startswith("BENCH")][-1].split()
    assert line[1] == "0", proc.stdout + proc.stderr
    full = json.loads((out / "fit.json").read_text())
    report = full["media_types"]["image"]
    phases = {"join": full["join_seconds"], **report["seconds"]}
    for ln in proc.stdout.splitlines():
        if ln.startswith("PHASE"):
            _, name, before, peak, after = ln.split()
            print(f"  driver RSS in {name}: {float(before):.0f} MiB before, {float(after):.0f} after; "
                  f"process high-water mark {float(peak):.0f} MiB")
    print("  phases (s): " + ", ".join(f"{k} {v:.1f}" for k, v in phases.items()))
    print(f"  fitted {report['pairs']['fitted']:,} pairs, converged {report['solver']['converged']}, "
          f"held-out acc(-ties) {report['cross_validation']['accuracy_ties_dropped']['mean']:.4f}")
    start = [ln for ln in proc.stdout.splitlines() if ln.startswith("START")][-1].split()
    print(f"  at start: RSS {float(start[1]):.0f} MiB, VmHWM {float(start[2]):.0f}, ru_maxrss {float(start[3]):.0f} "
          "(ru_maxrss carries the spawning process's RSS over)")
    return float(line[2]), float(line[3])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pairs", type=int, default=1_000_000)
    parser.add_argument("--workdir", default="/tmp/vrscore_fit_scale")
    args = parser.parse_args()
    results = {}
    for n in (args.pairs // 4, args.pairs):
        root = Path(args.workdir) / str(n)
        shutil.rmtree(root, ignore_errors=True)
        t = time.perf_counter()
        synthesise(root, n)
        print(f"{n:,} pairs: synthesised in {time.perf_counter() - t:.1f} s")
        results[n] = run_fit(root)
        print(f"  vrscore fit: {results[n][0]:.1f} s, driver peak RSS {results[n][1]:.0f} MiB")
        shutil.rmtree(root, ignore_errors=True)
    (small, (ts, ms)), (big, (tb, mb)) = results.items()
    print(f"ratio {big:,} / {small:,} pairs: time x{tb / ts:.2f}, driver peak memory x{mb / ms:.2f}")


if __name__ == "__main__":
    main()
