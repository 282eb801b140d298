"""The driver's peak memory of a score job, at any number of rows. Run by hand:

    python benchmarks/driver_memory.py --rows 1000000
    python benchmarks/driver_memory.py --rows 10000000 --work /big/disk/tmp

Every manifest row points at a file that does not exist, so every row becomes a
'missing_file' error row: no decoding and no model work, only the pipeline (read, checks,
the stages, assembly, write, summary) runs and the driver's own memory shows. The tiny demo
model is built and the manifest written in child processes, so neither counts; this process
is the job's driver and reports its own peak RSS (getrusage), after imports and at the end.
"""
from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

MANIFEST_CHUNK = 100_000  # rows per row group written: the writer's memory stays small


def write_manifest(path: Path, rows: int) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = pa.schema([("id", pa.string()), ("uri", pa.string()), ("prompt", pa.string())])
    with pq.ParquetWriter(path, schema) as writer:
        for start in range(0, rows, MANIFEST_CHUNK):
            ids = [f"r{i:09d}" for i in range(start, min(rows, start + MANIFEST_CHUNK))]
            writer.write_table(pa.table({"id": ids, "uri": [f"/nonexistent/vrscore-bench/{i}.png" for i in ids],
                                         "prompt": ["a red fox"] * len(ids)}, schema=schema))


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=100_000)
    ap.add_argument("--rows-per-file", type=int, default=1000, help="resources.rows_per_file of the job")
    ap.add_argument("--batch-size", type=int, default=1000,
                    help="resources.batch_size and decode_batch_size: no row reaches the model, so large "
                    "batches only cut per-batch overhead (default 1000)")
    ap.add_argument("--work", help="folder for model, manifest and output (default: a new temp folder)")
    ap.add_argument("--write-manifest", help=argparse.SUPPRESS)  # child-process mode
    args = ap.parse_args()
    if args.write_manifest:
        write_manifest(Path(args.write_manifest), args.rows)
        return

    work = Path(args.work or tempfile.mkdtemp(prefix="vrscore-drivermem-"))
    work.mkdir(parents=True, exist_ok=True)
    model, manifest, out = work / "model", work / f"manifest-{args.rows}.parquet", work / f"out-{time.time_ns()}"
    if not (model / "config.json").exists():
        subprocess.run([sys.executable, "-m", "jobs.cli", "make-demo-model", str(model)], check=True,
                       stdout=subprocess.DEVNULL)
    if not manifest.exists():
        subprocess.run([sys.executable, __file__, "--rows", str(args.rows), "--write-manifest", str(manifest)],
                       check=True)

    from jobs.score_job import run_score_job
    from schemas.job_config import JobConfig, ModelConfig, ResourcesConfig

    cfg = JobConfig(manifest=str(manifest), out=str(out), model=ModelConfig(model=str(model)),
                    resources=ResourcesConfig(rows_per_file=args.rows_per_file, batch_size=args.batch_size,
                                              decode_batch_size=args.batch_size))
    after_imports = peak_rss_mb()
    t0 = time.perf_counter()
    summary = run_score_job(cfg, quiet=True)
    seconds = time.perf_counter() - t0
    assert summary.rows == args.rows and summary.errors == args.rows, summary.format()
    print(f"rows {args.rows:,}  files {len(summary.files):,}  job {seconds:.0f}s  "
          f"({args.rows / seconds:,.0f} rows/s)")
    print(f"driver peak RSS: {peak_rss_mb():.0f} MB  (after imports: {after_imports:.0f} MB)")


if __name__ == "__main__":
    main()
