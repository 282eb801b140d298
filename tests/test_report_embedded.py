"""`vrscore report` over scores whose manifest held the media (a Parquet of {bytes, path} structs
without ids, WebDataset shards): the scores carry no bytes, so the report reads the shown rows
back from the manifest by id and decodes them in the thumbnail stage. Each thumbnail must be
the one the same image gives from a file; a manifest changed since it was scored shows none."""
from __future__ import annotations

import html
import io
import re
import tarfile
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from actors.report_thumbnailer import ReportThumbnailer
from actors.synthetic_media import write_image
from jobs.cli import main
from pipeline.output_dir import SCORES_DIR
from jobs.score_job import run_score_job
from pipeline.report_thumbnails import report_decode_config, thumbnail_decode_config
from schemas.job_config import DecodeConfig, JobConfig, ModelConfig, ResourcesConfig
from tests.ray_fixtures import ray_session  # noqa: F401  (session fixture)

NAMES = [f"s{k}" for k in range(5)]
ITEM_RE = re.compile(r'<div class="item" title="[^"]*">(?:<img src="([^"]*)" alt="[^"]*">|<div class="noimg" '
                     r'title="([^"]*)">no preview</div>)<div class="t"><b>[^<]*</b> <code>([^<]*)</code>')


def _config(manifest: str, out: Path, model: Path) -> JobConfig:
    return JobConfig(manifest=manifest, out=str(out), model=ModelConfig(model=str(model)),
                     decode=DecodeConfig(image_max_pixels=64 * 28 * 28),
                     resources=ResourcesConfig(batch_size=4, decode_batch_size=3, rows_per_file=2))


def _tar(path: Path, members: list[tuple[str, bytes]]) -> None:
    with tarfile.open(path, mode="w") as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


def _report(out: Path, page: Path, *roots: Path) -> dict[str, tuple[str | None, str | None]]:
    """id -> (the <img> data URI, or None; the reason there is none, or None), from the page."""
    args = ["report", "--scores", str(out), "--out", str(page), "--top-k", str(len(NAMES)), "--quiet"]
    assert main([*args, *(a for r in roots for a in ("--media-root", str(r)))]) == 0
    found = {}
    for src, reason, item in ITEM_RE.findall(page.read_text()):
        found[html.unescape(item)] = (src or None, html.unescape(reason) or None)
    return found


def _file_thumbnails(images: dict[str, Path], out: Path) -> dict[str, str]:
    """The thumbnail of each image read from its file, by the same stage under the same limits."""
    meta = pq.read_schema(next((out / SCORES_DIR).glob("*.parquet"))).metadata
    stage = ReportThumbnailer(thumbnail_decode_config(meta, report_decode_config(30)).model_dump(), {},
                              [str(p.parent) for p in images.values()])
    try:
        got = stage({"id": np.array(list(images), dtype=object), "uri": np.array([str(p) for p in images.values()],
                     dtype=object), "media_type": np.array(["image"] * len(images), dtype=object)})
    finally:
        stage.close()
    return dict(zip(images, got["src"]))


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("report_media")
    return {n: write_image(d / f"{n}.{ext}", size=(120 + 24 * k, 90), seed=k)
            for k, (n, ext) in enumerate(zip(NAMES, ["png", "jpg", "webp", "png", "jpg"]))}


def test_report_reads_parquet_structs_back_by_id(images, tmp_path, demo_model_dir, ray_session, capsys):
    manifest = tmp_path / "hf"
    manifest.mkdir()
    structs = pa.array([{"bytes": images[n].read_bytes(), "path": f"{n}{images[n].suffix}"} for n in NAMES],
                       pa.struct([("bytes", pa.binary()), ("path", pa.string())]))
    # No id column (ids from file and row), rows spread over row groups: found by row number.
    pq.write_table(pa.table({"image": structs, "prompt": ["a fox"] * len(NAMES)}), manifest / "train-0.parquet",
                   row_group_size=2)
    out = tmp_path / "out"
    run_score_job(_config(str(manifest), out, demo_model_dir), quiet=True)
    want = _file_thumbnails(images, out)
    assert len(set(want.values())) == len(NAMES)  # control: the images' thumbnails all differ

    got = _report(out, tmp_path / "report.html", manifest)
    assert got == {f"train-0.parquet#{k}": (want[n], None) for k, n in enumerate(NAMES)}

    # Without a --media-root over the local manifest, nothing in it is read.
    refused = _report(out, tmp_path / "refused.html")
    assert {src for src, _ in refused.values()} == {None}
    assert all("outside --media-root" in why for _, why in refused.values())

    # Negative control: the manifest rewritten in place (two rows swapped) since it was scored.
    table = pq.read_table(manifest / "train-0.parquet")
    order = [1, 0, *range(2, len(NAMES))]
    pq.write_table(table.take(order), manifest / "train-0.parquet", row_group_size=2)
    capsys.readouterr()
    changed = _report(out, tmp_path / "changed.html", manifest)
    assert set(changed) == set(got) and {src for src, _ in changed.values()} == {None}
    assert all("changed since it was scored" in why for _, why in changed.values())
    assert "report: no thumbnails: the manifest" in capsys.readouterr().out


def test_report_reads_webdataset_samples_back_from_their_shard(images, tmp_path, demo_model_dir, ray_session):
    shards = tmp_path / "shards"
    shards.mkdir()
    members = [[(f"{n}{images[n].suffix}", images[n].read_bytes()), (f"{n}.txt", b"a fox")] for n in NAMES]
    _tar(shards / "00000.tar", sum(members[:3], []))
    _tar(shards / "00001.tar", sum(members[3:], []))
    out = tmp_path / "out"
    run_score_job(_config(str(shards / "{00000..00001}.tar"), out, demo_model_dir), quiet=True)
    want = _file_thumbnails(images, out)

    got = _report(out, tmp_path / "report.html", shards)
    assert got == {n: (want[n], None) for n in NAMES}

    # Negative control: a shard replaced since it was scored (s0 and s1 swapped): no thumbnail at all.
    _tar(shards / "00000.tar", [*members[1], *members[0], *members[2]])
    changed = _report(out, tmp_path / "changed.html", shards)
    assert set(changed) == set(NAMES) and {src for src, _ in changed.values()} == {None}
    assert all("changed since it was scored" in why for _, why in changed.values())


def test_lookup_finds_rows_by_an_id_column_across_row_groups(images, tmp_path):
    """An id column (integers: read as the job reads them, as strings) is read alone to find the
    row groups; each wanted row comes back with its own bytes, an unknown id as a read error."""
    from pipeline.report_media_lookup import MediaLookup
    from pipeline.media_readback import MediaSource
    from schemas.embedded_media import BYTES_COLUMN, READ_ERROR_COLUMN, MediaColumn
    from schemas.job_config import StorageConfig

    raw = [images[n].read_bytes() for n in NAMES]
    pq.write_table(pa.table({"uid": [10 * k for k in range(len(NAMES))], "jpg": pa.array(raw, pa.binary())}),
                   tmp_path / "m.parquet", row_group_size=2)
    source = MediaSource("parquet", str(tmp_path / "m.parquet"), MediaColumn("jpg", "binary", False), "uid")
    wanted = ["40", "10", "999"]
    got = MediaLookup(source, StorageConfig().model_dump())(
        {"id": np.array(wanted, dtype=object), "uri": np.array([None] * 3, dtype=object),
         "media_type": np.array(["image"] * 3, dtype=object)})
    assert list(got[BYTES_COLUMN][:2]) == [raw[4], raw[1]] and got[BYTES_COLUMN][2] is None
    assert list(got[READ_ERROR_COLUMN][:2]) == [None, None] and "not found" in got[READ_ERROR_COLUMN][2]
