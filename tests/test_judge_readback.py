"""The judge's decode stage reads a unit's items back from a manifest that holds the media by the
places the plan recorded: only the Parquet row groups and the tar shards its items are in, each
file opened once, never the whole manifest. Counted on a real filesystem that logs every open
and every read (tests/counting_fs.py); the plan is built by the job's own code from the opened
manifest. Negative control: a unit of the other items reads exactly the parts the first one left."""
from __future__ import annotations

import io
import os
import tarfile

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from actors.pair_units import UnitDecoder
from pipeline.judge_items import manifest_items
from pipeline.judge_plan import build_plan, given_pairs
from pipeline.manifest_files import open_manifest
from pipeline.media_readback import MediaReadback, job_source
from schemas.job_config import DecodeConfig, JobConfig, ModelConfig, StorageConfig
from tests.counting_fs import LOG_ENV, PROTOCOL, READS_ENV, opens, reads

DECODE = DecodeConfig(resize_rule="smart_resize", resize_factor=28, image_max_pixels=64 * 28 * 28)
KEYS = [f"i{k}" for k in range(6)]  # file k // 3, row group k % 3


def _noise_png(seed: int) -> bytes:
    """~120 KB that does not compress: a row group's bytes lie beyond the footer's 64 KB read."""
    pixels = np.random.default_rng(seed).integers(0, 256, (200, 200, 3), dtype=np.uint8)
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, "PNG")
    return out.getvalue()


@pytest.fixture
def counted(tmp_path, monkeypatch):
    monkeypatch.setenv(LOG_ENV, str(tmp_path / "opens.log"))
    monkeypatch.setenv(READS_ENV, str(tmp_path / "reads.log"))
    return tmp_path


def _unit(manifest: str, id_column: str | None, pairs: list[tuple[str, str]]) -> tuple[pa.Table, UnitDecoder]:
    cfg = JobConfig(manifest=manifest, out="unused", model=ModelConfig(model="unused"))
    opened = open_manifest(cfg.manifest, cfg.storage)
    plan = build_plan(given_pairs(pa.table({"a": [a for a, _ in pairs], "b": [b for _, b in pairs]}), "pairs"),
                      manifest_items(cfg, opened, id_column)) if opened.kind != "webdataset" else None
    source = job_source(cfg, opened, id_column)
    return plan, UnitDecoder(DECODE.model_dump(), media=MediaReadback(source, StorageConfig()))


def _decode(decoder: UnitDecoder, plan: pa.Table) -> dict:
    try:
        return decoder(plan).to_pylist()[0]
    finally:
        decoder.close()


def _chunks(path: str) -> dict[int, range]:
    """Byte range of the media column's chunk in each row group of a file."""
    meta = pq.ParquetFile(path).metadata
    found = {}
    for g in range(meta.num_row_groups):
        col = next(meta.row_group(g).column(c) for c in range(meta.num_columns)
                   if meta.row_group(g).column(c).path_in_schema == "image")
        start = col.dictionary_page_offset or col.data_page_offset
        found[g] = range(start, start + col.total_compressed_size)
    return found


def _groups_read(log: str, files: list[str]) -> dict[str, set[int]]:
    """Row groups whose media chunk a read touched, per file; reads that end at the file's end are
    the footer's (Parquet reads its last 64 KB at once) and are left out."""
    done = reads(log)
    return {f: {g for g, span in _chunks(f).items()
                if any(s < span.stop and s + n > span.start for s, n in done.get(f, []) if s + n < os.path.getsize(f))}
            for f in files}


def test_a_unit_reads_only_the_row_groups_of_its_items(counted):
    root = counted / "m"
    root.mkdir()
    data = {key: _noise_png(k) for k, key in enumerate(KEYS)}
    for part in range(2):
        keys = KEYS[3 * part:3 * part + 3]
        pq.write_table(pa.table({"id": keys, "image": pa.array([data[k] for k in keys], pa.binary())}),
                       root / f"part-{part}.parquet", row_group_size=1)
    files = [str(root / f"part-{part}.parquet") for part in range(2)]
    for pairs, groups in (([("i1", "i4")], {1}), ([("i0", "i2"), ("i3", "i5")], {0, 2})):
        plan, decoder = _unit(f"{PROTOCOL}://{root}", None, pairs)
        for log in ("opens.log", "reads.log"):
            (counted / log).unlink(missing_ok=True)  # the read-back's alone, not the planning's
        unit = _decode(decoder, plan)
        assert unit["item_status"] == ["ok"] * len(unit["item_id"]), unit["item_error"]
        assert opens(str(counted / "opens.log")) == {f: 1 for f in files}  # each file once, for the unit
        assert _groups_read(str(counted / "reads.log"), files) == {f: groups for f in files}, pairs


def test_a_unit_opens_only_the_shards_of_its_items_and_an_unknown_id_is_an_error_item(counted):
    root = counted / "shards"
    root.mkdir()
    for part in range(2):
        with tarfile.open(root / f"{part:05d}.tar", mode="w") as tar:
            for key in KEYS[3 * part:3 * part + 3]:
                blob = _noise_png(KEYS.index(key))
                info = tarfile.TarInfo(f"{key}.png")
                info.size = len(blob)
                tar.addfile(info, io.BytesIO(blob))
    _, decoder = _unit(f"{PROTOCOL}://{root}", None, [])
    shard = str(root / "00001.tar")
    plan = pa.table({"id": ["p", "q"], "a": ["i3", "i4"], "b": ["i5", "i9"], "group": [None, None],
                     "prompt": [None, None], "unit": [0, 0], "a_file": [shard, shard], "b_file": [shard, shard]})
    unit = _decode(decoder, plan)
    status = dict(zip(unit["item_id"], zip(unit["item_status"], unit["item_error"])))
    assert {k: s for k, (s, _) in status.items()} == {"i3": "ok", "i5": "ok", "i4": "ok", "i9": "read_error"}
    assert "id not found in the manifest" in status["i9"][1]
    assert opens(str(counted / "opens.log")) == {shard: 1}  # shard 0 never opened
