"""Bad input at the job level, through the `vrscore score` command: every broken or awkward
item and manifest row of issue 4 in one job, each an output row with its status kind and
message; the summary invariant; --max-error-fraction; duplicate ids refused before any work;
a scheme outside decode.allowed_schemes refused without I/O; model loading safety.
(What a decoder makes of each file is unit-tested in test_media_decoder.py.)"""
from __future__ import annotations

import functools
import http.server
import os
import re
import shutil
import threading

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from safetensors.torch import load_file

from actors import bad_media as bad
from actors.adapters import load_adapter
from actors.synthetic_media import write_image, write_video
from jobs import cli as vrscore_cli
from jobs.job_config_loading import build_job_config
from jobs.score_command import flags_of
from schemas import status as st
from schemas.job_config import DecodeConfig, ModelConfig
from tests.job_process import few_shuffle_partitions  # noqa: F401  (fixture)
from tests.paths import MEDIA, require
from tests.ray_fixtures import ray_session  # noqa: F401  (session fixture)
from tests.fifo_helpers import unblock_fifo_later

TIMEOUT_S = 5


@pytest.fixture
def counting_http_server(tmp_path):
    """An HTTP server on loopback that serves a real PNG and counts requests."""
    write_image(tmp_path / "served.png", size=(64, 64))
    hits = []

    class Counting(http.server.SimpleHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 - http.server's naming
            hits.append(self.path)
            super().do_GET()

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Counting, directory=str(tmp_path)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}/served.png", hits
    server.shutdown()


def _bad_manifest(d, http_uri) -> tuple[list[dict], dict[str, tuple[str, str]]]:
    """Manifest rows and, per id, (status, words its error must contain; '' for ok rows)."""
    rows, expect = [], {}

    def add(id_, uri, status, words="", prompt="a red fox"):
        rows.append({"id": id_, "uri": None if uri is None else str(uri), "prompt": prompt})
        expect[id_] = (status, words)

    add("png", write_image(d / "ok.png", (96, 64)), st.OK)
    add("jpeg", write_image(d / "ok.jpg", (96, 64)), st.OK)
    add("one_frame_video", write_video(d / "one.mp4", n_frames=1, size=(64, 48)), st.OK)
    add("rotated_video", write_video(d / "rot90.mp4", n_frames=4, size=(96, 64), rotation=90), st.OK)
    add("real_rotated_mov", require(MEDIA / "decord_video_90.mov"), st.OK)
    for mode, suffix in [("L", "png"), ("CMYK", "jpg"), ("I;16", "png"), ("RGBA", "png")]:
        name = f"mode_{mode.replace(';', '')}.{suffix}"
        bad.write_image_mode(d / name, mode)
        add(f"mode_{mode}", d / name, st.OK)
    for fmt in ("GIF", "WEBP"):
        anim = bad.write_animated(d / f"anim.{fmt.lower()}", fmt, [(200, 30, 30), (30, 30, 200)])
        add(f"animated_{fmt}", anim, st.OK)

    add("missing", d / "absent.png", st.MISSING_FILE, "no such file")
    add("zero_bytes", bad.write_empty_file(d / "zero.png"), st.EMPTY_FILE, "empty (0 bytes)")
    cut = bad.write_truncated_mp4(d / "cut.mp4", keep_fraction=0.5, n_frames=16)
    add("truncated_mp4", cut, st.DECODE_ERROR, "not a readable video")
    add("corrupt_mp4", require(MEDIA / "decord_corrupted.mp4"), st.DECODE_ERROR, "corrupt")
    add("text_as_mp4", bad.write_text_file(d / "text.mp4"), st.DECODE_ERROR, "not a readable video")
    add("unknown_ext", d / "thing.xyz", st.UNSUPPORTED_MEDIA, "extension '.xyz'")
    add("png_bomb", bad.write_png_bomb(d / "bomb.png"), st.TOO_LARGE, "decompression bomb")
    add("huge_frame", bad.write_large_image(d / "large.png"), st.TOO_LARGE, "10000x8000")
    os.mkfifo(d / "hang.mp4")  # opening it for reading blocks until a writer comes: forever
    add("hanging_decode", d / "hang.mp4", st.TIMEOUT, f"longer than {TIMEOUT_S} s")
    add("null_uri", None, st.INVALID_ROW, "uri is null or empty")
    add("empty_uri", "", st.INVALID_ROW, "uri is null or empty")
    add("null_prompt", d / "ok.png", st.INVALID_ROW, "prompt is null or empty", prompt=None)
    add("disallowed_scheme", http_uri, st.INVALID_URI, "scheme 'http'")
    return rows, expect


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs named pipes")
@pytest.mark.usefixtures("ray_session", "few_shuffle_partitions")
def test_every_bad_input_is_a_row_and_the_job_goes_on(tmp_path, demo_model_dir, counting_http_server, capsys):
    http_uri, hits = counting_http_server
    media = tmp_path / "media"
    media.mkdir()
    rows, expect = _bad_manifest(media, http_uri)
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "manifest.parquet")
    out = tmp_path / "out"
    safety = unblock_fifo_later(media / "hang.mp4", after_s=120)
    try:
        rc = vrscore_cli.main([
            "score", "--manifest", str(tmp_path / "manifest.parquet"), "--model", str(demo_model_dir),
            "--out", str(out), "--quiet", "--frames", "uniform:2", "--max-error-fraction", "0.1",
            "--set", f"decode.timeout_s={TIMEOUT_S}", "--set", "decode.allowed_schemes=[file]",
            "--set", "resources.batch_size=8",
        ])
    finally:
        safety.cancel()
    printed = capsys.readouterr()

    table = pq.read_table(out / "scores")
    got = {r["id"]: r for r in table.to_pylist()}
    assert sorted(table["id"].to_pylist()) == sorted(expect)  # every row, once
    for id_, (status, words) in expect.items():
        row = got[id_]
        assert row["status"] == status, (id_, row["error"])
        if status == st.OK:
            assert row["error"] is None and len(row["p_yes"]) > 0 and row["score"] is not None, id_
        else:
            assert words in row["error"] and row["p_yes"] is None and row["score"] is None, (id_, row["error"])
    assert hits == []  # the disallowed URI was refused without a request

    n_ok = sum(s == st.OK for s, _ in expect.values())
    n_err = len(expect) - n_ok
    assert f"rows in = ok + errors: {len(expect)} = {n_ok} + {n_err}" in printed.out
    for kind in {s for s, _ in expect.values()} - {st.OK}:
        count = sum(s == kind for s, _ in expect.values())
        assert re.search(rf"^\s+{kind}\s+{count}$", printed.out, re.M), (kind, printed.out)
    assert rc == 1  # 13 of 24 failed, over --max-error-fraction 0.1
    why = f"{n_err}/{len(expect)} rows failed ({n_err / len(expect):.1%}), above --max-error-fraction 10.0%"
    assert why in printed.err

    job = pq.read_schema(next((out / "scores").glob("*.parquet"))).metadata[b"vrscore.job"]
    assert b'"trust_remote_code": false' in job  # off unless --trust-remote-code


@pytest.mark.usefixtures("ray_session", "few_shuffle_partitions")
def test_duplicate_ids_are_refused_before_any_work(tmp_path, capsys, demo_model_dir):
    ids = ["a", "b", "a", "c", "d", "c", "c", "e"]
    rows = [{"id": i, "uri": str(tmp_path / f"{k}.png"), "prompt": "p"} for k, i in enumerate(ids)]
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "manifest.parquet")
    out = tmp_path / "out"
    rc = vrscore_cli.main(["score", "--manifest", str(tmp_path / "manifest.parquet"), "--model", str(demo_model_dir),
                           "--out", str(out), "--quiet"])
    err = capsys.readouterr().err
    assert rc == 2
    assert "2 ids appear more than once in the manifest" in err and "'a' x2" in err and "'c' x3" in err
    assert not out.exists()  # refused before the output was created or any item read


def test_trust_remote_code_is_off_unless_asked():
    parser = vrscore_cli.build_parser()
    base = ["score", "--manifest", "m.parquet", "--model", "m", "--out", "o"]
    cfg = build_job_config(None, flags_of(parser.parse_args(base)), [])
    assert cfg.model.trust_remote_code is False
    cfg = build_job_config(None, flags_of(parser.parse_args([*base, "--trust-remote-code"])), [])
    assert cfg.model.trust_remote_code is True


def test_weights_load_from_safetensors_only(tmp_path, demo_model_dir):
    """The demo model with its weights as pytorch_model.bin (a pickle) instead of safetensors:
    transformers would load it, the adapter must refuse."""
    model = tmp_path / "bin-model"
    shutil.copytree(demo_model_dir, model)
    torch.save(load_file(model / "model.safetensors"), model / "pytorch_model.bin")
    (model / "model.safetensors").unlink()
    with pytest.raises(OSError, match="no file named model.safetensors"):
        load_adapter(ModelConfig(model=str(model)), DecodeConfig())
