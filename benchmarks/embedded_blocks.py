"""Block sizes and driver memory when the manifest holds the media bytes, as the bytes grow.

Run by hand from the repository root: `python benchmarks/embedded_blocks.py [--sizes 64,256,1024] [--item-mb 2]`.

For each total (MiB of embedded media, items of `--item-mb` MiB of random bytes behind a PNG
signature, one Parquet file, row groups of 1,000 rows as `datasets` writes them) it reads the
manifest on a local Ray two ways, in a child process each so that peaks do not mix:
  embedded   the job's read (pipeline/embedded_source.py): blocks cut by bytes
  by rows    read_parquet + repartition(target_num_rows_per_block=rows_per_file), the rule a
             manifest of URIs gets, applied to the same bytes
and prints the largest block, the block count and the driver's peak RSS (getrusage), with the
ratio by rows / embedded of the largest block. Blocks are walked as references: no data
reaches the driver in either case, so its RSS is what the read itself costs it.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

ROWS_PER_FILE = 1000  # ResourcesConfig.rows_per_file's default


def write_manifest(path: Path, total_mb: int, item_mb: float) -> int:
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    n = max(1, int(total_mb / item_mb))
    rng = np.random.default_rng(0)
    schema = pa.schema([("id", pa.string()), ("image", pa.binary())])
    with pq.ParquetWriter(path, schema, compression="none") as writer:
        for start in range(0, n, 50):
            rows = range(start, min(n, start + 50))
            data = [b"\x89PNG\r\n\x1a\n" + rng.bytes(int(item_mb * 2**20)) for _ in rows]
            writer.write_table(pa.table({"id": [f"r{i}" for i in rows], "image": data}, schema=schema),
                               row_group_size=ROWS_PER_FILE)
    return n


def measure(path: str, how: str) -> dict:
    import ray
    import ray.data

    from pipeline.embedded_source import EmbeddedParquetSource, manifest_files
    from schemas.embedded_media import MediaColumn

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    if how == "embedded":
        ctx = ray.data.DataContext.get_current()
        ds = ray.data.read_datasource(EmbeddedParquetSource(manifest_files(path, None), None,
                                                            MediaColumn("image", "binary", False), "id", [],
                                                            ctx.target_max_block_size))
    else:
        ds = ray.data.read_parquet(path).repartition(target_num_rows_per_block=ROWS_PER_FILE)
    sizes = [m.size_bytes for bundle in ds.iter_internal_ref_bundles() for m in bundle.metadata]
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    ray.shutdown()
    return {"max_block_mb": max(sizes) / 2**20, "blocks": len(sizes), "driver_peak_mb": peak,
            "driver_growth_mb": peak - before}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", default="64,256,1024", help="MiB of embedded media per run, comma-separated")
    p.add_argument("--item-mb", type=float, default=2.0, help="MiB per item")
    p.add_argument("--measure", nargs=2, metavar=("PATH", "HOW"), help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.measure:
        print(json.dumps(measure(*args.measure)))
        return
    print(f"{'MiB':>6} {'items':>6} | {'embedded: max block':>20} {'blocks':>6} {'driver':>8} | "
          f"{'by rows: max block':>19} {'blocks':>6} {'driver':>8} | max block by rows / embedded")
    with tempfile.TemporaryDirectory() as tmp:
        for total in (int(s) for s in args.sizes.split(",")):
            path = Path(tmp) / f"m{total}.parquet"
            n = write_manifest(path, total, args.item_mb)
            got = {}
            for how in ("embedded", "rows"):
                out = subprocess.run([sys.executable, __file__, "--measure", str(path), how], check=True,
                                     capture_output=True, text=True, env={**os.environ, "RAY_DEDUP_LOGS": "0"})
                got[how] = json.loads(out.stdout.strip().splitlines()[-1])
            e, r = got["embedded"], got["rows"]
            print(f"{total:>6} {n:>6} | {e['max_block_mb']:>17.1f} MiB {e['blocks']:>6} {e['driver_peak_mb']:>5.0f} MiB"
                  f" | {r['max_block_mb']:>16.1f} MiB {r['blocks']:>6} {r['driver_peak_mb']:>5.0f} MiB"
                  f" | {r['max_block_mb'] / e['max_block_mb']:.1f}x")
            path.unlink()


if __name__ == "__main__":
    main()
