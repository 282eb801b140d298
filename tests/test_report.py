"""The HTML report: statistics against direct computation, split invariance of the partials,
thumbnails, and `vrscore report` rendered by headless Chromium with its images decoded."""
import base64
import functools
import http.server
import io
import json
import os
import re
import shutil
import subprocess
import threading
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image

from actors.report_media_policy import refusal
from actors.report_thumbnailer import ReportThumbnailer
from actors.synthetic_media import write_image, write_video
from jobs.cli import main
from pipeline.report_html import render_report
from pipeline.report_stats import batch_partial, histogram_edges, merge
from pipeline.report_thumbnails import report_decode_config, thumbnail_decode_config
from schemas.job_config import DecodeConfig
from schemas.scores import META_JOB
from tests.fifo_helpers import unblock_fifo_later
from tests.paths import MEDIA
from tests.ray_fixtures import ray_session  # noqa: F401 - fixture
from tests.scores_fixtures import CHECKLISTS, random_rows, scores_table, write_scores

BY_NAME = {c.name: c for c in CHECKLISTS.values()}
MEASURES = ["score", "score_soft", "dim_quality", "dim_physics"]


@pytest.fixture(scope="module")
def table():
    rng = np.random.default_rng(2)
    rows = random_rows(rng, 8, (3, 5), levels=4, error_rate=0.15)
    rows += random_rows(rng, 4, (2, 4), media_type="video", prefix="v")
    rows[0]["prompt"] = "<script>alert(1)</script> & more"
    return scores_table(rows)


def report_of(table, batches: int, k: int = 3):
    values = {c: [v for v in table[c].to_pylist() if v is not None] for c in MEASURES}
    edges = {c: histogram_edges(min(values[c]), max(values[c]), 10) for c in MEASURES}
    step = -(-table.num_rows // batches)
    partials = [batch_partial(table.slice(i * step, step), edges, BY_NAME, k) for i in range(batches)]
    return merge(partials, edges, k), edges


def test_statistics_match_direct_computation_and_do_not_depend_on_batching(table):
    data, edges = report_of(table, batches=1)
    rows = table.to_pylist()
    ok = [r for r in rows if r["status"] == "ok"]
    assert data.rows == len(rows) and data.status_counts == {"ok": len(ok), "decode_error": len(rows) - len(ok)}
    for name, checklist in BY_NAME.items():
        mine = [r for r in ok if r["checklist"] == name]
        answers = np.array([r["answers"] for r in mine])
        assert data.yes[name] == (answers > 0).sum(axis=0).tolist() and data.answered[name] == len(mine)
        for col in MEASURES:
            vals = [r[col] for r in mine if r[col] is not None]
            if not vals:
                assert col not in data.top[name]
                continue
            assert data.histograms[col].counts[name] == np.histogram(vals, bins=edges[col])[0].tolist()
            ranked = sorted((r for r in mine if r[col] is not None), key=lambda r: (-r[col], r["id"]))
            assert [it["id"] for it in data.top[name][col]] == [r["id"] for r in ranked[:3]]
            ranked = sorted((r for r in mine if r[col] is not None), key=lambda r: (r[col], r["id"]))
            assert [it["id"] for it in data.bottom[name][col]] == [r["id"] for r in ranked[:3]]
    assert data.histograms["dim_physics"].n == sum(r["dim_physics"] is not None for r in ok)
    split = report_of(table, batches=5)[0]
    for d in (data, split):  # float sums differ in the last bits with the order of addition
        for h in d.histograms.values():
            h.total = round(h.total, 9)
        d.p_yes_sum = {k: np.round(v, 9).tolist() for k, v in d.p_yes_sum.items()}
    assert split == data


def test_rendered_page_is_self_contained_and_escapes_text(table):
    data, _ = report_of(table, batches=2)
    thumb = "data:image/jpeg;base64," + "A" * 8
    page = render_report(data, BY_NAME, {r["id"]: thumb for r in table.to_pylist()}, source="s3://b/x", model="m")
    assert "<script>" not in page and "&lt;script&gt;alert(1)&lt;/script&gt; &amp; more" in page
    assert not re.search(r"""(src|href)=["'](?!data:)""", page)  # nothing fetched from outside
    assert page.count("<svg") == len(data.histograms)
    assert "decode_error" in page and "vrscore-video-default-v2" in page


def test_mean_answer_mass_per_question_a_warning_under_half_and_outputs_without_the_column():
    rng = np.random.default_rng(4)
    rows = random_rows(rng, 6, (2, 3), error_rate=0.2) + random_rows(rng, 3, (2, 2), media_type="video", prefix="v")
    for r in rows:
        if r.get("p_yes") is not None:  # image questions answered with mass 0.6-1, video ones 0.1-0.3
            r["answer_mass"] = rng.uniform(0.6, 1.0, len(r["p_yes"])) if r["media_type"] == "image" \
                else rng.uniform(0.1, 0.3, len(r["p_yes"]))
    low = scores_table(rows)
    data, _ = report_of(low, batches=3)
    for name, checklist in BY_NAME.items():
        mine = [r["answer_mass"] for r in low.to_pylist() if r["status"] == "ok" and r["checklist"] == name]
        assert data.mass_rows[name] == len(mine)
        np.testing.assert_allclose(data.mass_sum[name], np.sum(mine, axis=0), rtol=1e-9)
    page = render_report(data, BY_NAME, {}, source="s", model="m")
    assert page.count("mean answer mass</th>") == 2 and page.count("class='warn'") == 1
    assert f"{len(BY_NAME['vrscore-video-default-v2'].questions)} of " in page  # every video question is low
    # negative control: the same rows with every mass high show the column and no warning
    for r in rows:
        if r.get("answer_mass") is not None:
            r["answer_mass"] = np.full(len(r["p_yes"]), 0.9)
    page = render_report(report_of(scores_table(rows), batches=2)[0], BY_NAME, {}, source="s", model="m")
    assert page.count("mean answer mass</th>") == 2 and "class='warn'" not in page
    # an output of a version before the column: no mass shown, nothing refused
    old = report_of(low.drop_columns(["answer_mass"]), batches=2)[0]
    assert old.mass_sum == {} and "answer mass" not in render_report(old, BY_NAME, {}, source="s", model="m")


def _thumbs(uris: list[str], roots: list[Path], decode: DecodeConfig | None = None) -> dict[str, str]:
    """The report's thumbnail stage called in process, as Ray Data calls it."""
    stage = ReportThumbnailer((decode or report_decode_config(30)).model_dump(),
                              {"http": {"allow_redirects": False}}, [str(r) for r in roots])
    kinds = ["video" if u.endswith(".mp4") else "image" for u in uris]
    try:
        out = stage({"id": np.array([str(i) for i in range(len(uris))], dtype=object),
                     "uri": np.array(uris, dtype=object), "media_type": np.array(kinds, dtype=object)})
    finally:
        stage.close()
    return dict(zip(uris, out["src"]))


def _jpeg(src: str) -> Image.Image:
    assert src.startswith("data:image/jpeg;base64,"), src
    return Image.open(io.BytesIO(base64.b64decode(src.split(",", 1)[1])))


def test_thumbnails_are_small_jpegs_and_show_a_videos_first_frame(tmp_path: Path):
    image = write_image(tmp_path / "a.png", size=(640, 320))
    video = write_video(tmp_path / "v.mp4", n_frames=16, size=(256, 128), fps=8)
    thumbs = _thumbs([str(image), str(video)], [tmp_path])
    img = _jpeg(thumbs[str(image)])
    assert img.format == "JPEG" and max(img.size) == 240 and abs(img.size[0] / img.size[1] - 2) < 0.1
    first = np.asarray(_jpeg(thumbs[str(video)]).convert("RGB"), dtype=int)
    # The synthetic video sweeps a yellow bar from left (frame 0) to right along its lower half.
    assert first.shape[1] == 240 and abs(first.shape[1] / first.shape[0] - 2) < 0.1
    assert np.abs(first[-20, 3] - [255, 255, 0]).max() < 60 and np.abs(first[-20, -4] - [255, 255, 0]).max() > 60


class _Counting(http.server.SimpleHTTPRequestHandler):
    requests = 0

    def do_GET(self):  # noqa: N802 - http.server's name
        type(self).requests += 1
        super().do_GET()

    def log_message(self, *args):
        pass


def test_local_files_and_internal_urls_never_reach_the_report(tmp_path: Path):
    (tmp_path / "media").mkdir()
    (tmp_path / "private").mkdir()
    shown = write_image(tmp_path / "media" / "ok.png", size=(64, 48))
    private = write_image(tmp_path / "private" / "secret.png", size=(64, 48))
    escape = tmp_path / "media" / "link.png"
    escape.symlink_to(private)  # under the root by name only
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_Counting, directory=str(tmp_path)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        uris = [str(shown), "file:///etc/passwd", "/etc/passwd", str(private), str(escape),
                f"{tmp_path}/media/../private/secret.png",
                "http://169.254.169.254/latest/meta-data/iam/security-credentials/",
                f"http://127.0.0.1:{server.server_port}/private/secret.png",
                f"http://localhost:{server.server_port}/media/ok.png", "http://10.0.0.7/x.png", "http://[::1]/x.png"]
        thumbs = _thumbs(uris, [tmp_path / "media"])
    finally:
        server.shutdown()
    assert thumbs[str(shown)].startswith("data:image/jpeg")  # negative control: a file under the root is shown
    for uri in uris[1:6]:
        assert "a local file outside --media-root" in thumbs[uri], uri
    for uri in uris[6:-1]:
        assert "is an internal address" in thumbs[uri], uri
    assert "is an internal address" in thumbs[uris[-1]]  # an IPv6 literal, parsed as one
    assert _Counting.requests == 0  # not even asked for


def test_a_hung_decode_does_not_hang_the_report(tmp_path: Path):
    fifo = tmp_path / "hang.png"
    os.mkfifo(fifo)
    unblock_fifo_later(fifo, 60)
    t0 = time.monotonic()
    thumbs = _thumbs([str(fifo), str(write_image(tmp_path / "ok.png", size=(64, 48)))], [tmp_path],
                     report_decode_config(timeout_s=2))
    assert time.monotonic() - t0 < 30
    assert thumbs[str(fifo)].startswith("no preview (timeout)")
    assert thumbs[str(tmp_path / "ok.png")].startswith("data:image/jpeg")  # the next item is served


def _job_meta(**decode) -> dict:
    return {META_JOB: json.dumps({"decode": DecodeConfig(**decode).model_dump()}).encode()}


def test_the_scoring_jobs_decode_limits_and_schemes_apply(tmp_path: Path):
    big = write_image(tmp_path / "big.png", size=(400, 300))
    decode = thumbnail_decode_config(_job_meta(max_source_pixels=100 * 100, timeout_s=90), report_decode_config(30))
    assert decode.max_source_pixels == 100 * 100 and decode.timeout_s == 30 and decode.frames == "uniform:1"
    assert _thumbs([str(big)], [tmp_path], decode)[str(big)].startswith("no preview (too_large)")
    decode = thumbnail_decode_config(_job_meta(allowed_schemes=["s3"]), report_decode_config(30))
    assert _thumbs([str(big)], [tmp_path], decode)[str(big)].startswith("no preview (invalid_uri)")
    assert _thumbs([str(big)], [tmp_path])[str(big)].startswith("data:image/jpeg")  # default limits: shown


def test_a_scores_file_narrows_the_reports_limits_and_never_widens_them():
    own = report_decode_config(30, ["file", "s3", "https"])
    wide = _job_meta(allowed_schemes=["file", "local", "memory", "https", "s3"], max_source_pixels=10**12,
                     max_bytes=10**15, timeout_s=3600)
    assert thumbnail_decode_config(wide, own) == own
    narrow = _job_meta(allowed_schemes=["S3", "local"], max_source_pixels=100, max_bytes=1000, timeout_s=5)
    decode = thumbnail_decode_config(narrow, own)
    assert decode.allowed_schemes == ["s3"] and (decode.max_source_pixels, decode.max_bytes, decode.timeout_s) == (
        100, 1000, 5)
    # The report's own flags decide what is allowed at all (negative control: 'local' reaches the stage).
    assert "local" in thumbnail_decode_config(wide, report_decode_config(30, ["file", "local"])).allowed_schemes
    for bad in ({META_JOB: b"[1, 2]"}, {META_JOB: b"not json"}, _job_meta() | {META_JOB: b'{"decode": {"x": 1}}'}):
        assert thumbnail_decode_config(bad, own) == own


def test_every_scheme_of_the_local_filesystem_needs_a_media_root(tmp_path: Path):
    (tmp_path / "media").mkdir()
    shown = write_image(tmp_path / "media" / "ok.png", size=(64, 48))
    secret = write_image(tmp_path / "secret.png", size=(64, 48))
    decode = report_decode_config(30, ["file", "local"])  # even where the operator allows local://
    thumbs = _thumbs([f"local://{shown}", f"local://{secret}", f"local:{secret}", f"file:{secret}"],
                     [tmp_path / "media"], decode)
    assert thumbs[f"local://{shown}"].startswith("data:image/jpeg")  # negative control: under the root
    for uri in list(thumbs)[1:]:
        assert "a local file outside --media-root" in thumbs[uri], uri
    assert refusal(f"s3://bucket{secret}", []) is None and refusal(f"nosuchscheme://{secret}", []) is None
    for uri in ("http://[::1]/x.png", "http://[fe80::1]/x.png", "http://[::ffff:169.254.169.254]/latest/"):
        assert "is an internal address" in refusal(uri, []), uri


def test_report_command_decodes_thumbnails_in_the_cluster_and_refuses_foreign_uris(tmp_path, ray_session,
                                                                                   monkeypatch, capsys):
    media = tmp_path / "media"
    media.mkdir()
    rows = random_rows(np.random.default_rng(4), 1, (4, 4))
    rows[0]["uri"] = str(write_image(media / "ok.png", size=(96, 64)))
    rows[1]["uri"] = "file:///etc/passwd"
    rows[2]["uri"] = str(write_image(tmp_path / "elsewhere.png", size=(96, 64)))
    rows[3]["uri"] = "http://169.254.169.254/latest/meta-data/"
    write_scores(tmp_path / "s", rows, files=1)
    # Were thumbnails made on the driver, this would break them: the stage runs in Ray's workers.
    monkeypatch.setattr("pipeline.report_html.thumbnail_jpeg", lambda *a: 1 / 0)
    page = tmp_path / "report.html"
    assert main(["report", "--scores", str(tmp_path / "s"), "--out", str(page), "--top-k", "4",
                 "--media-root", str(media), "--quiet"]) == 0
    html = page.read_text()
    shown = {}  # uri -> the tooltip of its placeholder, or "img"
    for uri, img, reason in re.findall(r'<div class="item" title="([^"]*)">(?:(<img )|<div class="noimg" title="([^"]*)")',
                                       html):
        shown.setdefault(uri, "img" if img else reason)
    assert set(shown) == {r["uri"] for r in rows} and shown[rows[0]["uri"]] == "img"
    assert "outside --media-root" in shown[rows[1]["uri"]] and "outside --media-root" in shown[rows[2]["uri"]]
    assert "is an internal address" in shown[rows[3]["uri"]] and "root:x:0" not in html
    assert "3 without preview; 2 local files not read: pass --media-root DIR" in capsys.readouterr().out


def test_a_scores_file_cannot_widen_the_reports_schemes(tmp_path, ray_session):
    media = tmp_path / "media"
    media.mkdir()
    rows = random_rows(np.random.default_rng(5), 1, (2, 2))
    rows[0]["uri"] = str(write_image(media / "ok.png", size=(96, 64)))
    rows[1]["uri"] = f"local://{write_image(tmp_path / 'secret.png', size=(96, 64))}"
    out = write_scores(tmp_path / "s", rows, files=1)
    part = next((out / "scores").glob("*.parquet"))
    table = pq.read_table(part)
    pq.write_table(table.replace_schema_metadata(
        {**table.schema.metadata, **_job_meta(allowed_schemes=["file", "local", "http", "https"])}), part)
    page = tmp_path / "report.html"
    assert main(["report", "--scores", str(out), "--out", str(page), "--top-k", "2", "--quiet",
                 "--media-root", str(media)]) == 0
    html = page.read_text()
    thumbs = dict(re.findall(r'<div class="item" title="([^"]*)"><(img|div class="noimg")', html))
    assert thumbs == {rows[0]["uri"]: "img", rows[1]["uri"]: 'div class="noimg"'}


PROBE = """<script>window.addEventListener('load', () => { for (const img of document.images)
  img.setAttribute('data-natural-width', img.naturalWidth); });</script></body>"""


def chromium(*args: str, user_dir: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         f"--user-data-dir={user_dir}", *args], capture_output=True, text=True, timeout=90, check=True)


@pytest.mark.skipif(shutil.which("chromium") is None,
                    reason="headless Chromium not installed (apt-get install chromium)")
def test_report_command_renders_in_chromium_with_every_image(tmp_path: Path, ray_session):
    media = tmp_path / "media"
    media.mkdir()
    rng = np.random.default_rng(8)
    rows = random_rows(rng, 3, (3, 3), error_rate=0.0) + random_rows(rng, 2, (2, 2), media_type="video", prefix="v")
    for i, r in enumerate(rows):
        r["uri"] = str(write_image(media / f"{i}.jpg", size=(300, 200), seed=i) if r["media_type"] == "image"
                       else write_video(media / f"{i}.mp4", n_frames=8, size=(128, 96), seed=i))
    if MEDIA.exists():
        rows[0]["uri"] = str(MEDIA / "imagereward_1.webp")
        rows[-1]["uri"] = str(MEDIA / "curator_test_video.mp4")
    rows[1]["uri"] = str(media / "gone.png")  # no preview for this one, and the page says so
    rows.append({**rows[2], "id": "bad", "status": "decode_error", "error": "made-up", "p_yes": None})
    write_scores(tmp_path / "s", rows)
    page = tmp_path / "report.html"
    assert main(["report", "--scores", str(tmp_path / "s"), "--out", str(page), "--top-k", "3", "--quiet",
                 "--media-root", str(media), "--media-root", str(MEDIA)]) == 0

    html = page.read_text()
    n_images = html.count("<img ")
    gone = len(re.findall(r'<div class="item" title="[^"]*gone\.png"><div class="noimg"', html))
    assert n_images >= 7 and gone > 0 and html.count('class="noimg"') == gone  # only the missing file lacks one
    probe = tmp_path / "probe.html"
    probe.write_text(html.replace("</body>", PROBE))
    dom = chromium("--dump-dom", f"file://{probe}", user_dir=tmp_path / "chrome").stdout
    widths = [int(w) for w in re.findall(r'data-natural-width="(\d+)"', dom)]
    assert len(widths) == n_images and min(widths) > 0  # every thumbnail decoded by the browser
    shot = tmp_path / "report.png"
    chromium(f"--screenshot={shot}", "--window-size=1200,2000", f"file://{page}", user_dir=tmp_path / "chrome")
    pixels = np.asarray(Image.open(shot).convert("RGB"))
    assert pixels.shape == (2000, 1200, 3) and pixels.std() > 10  # drawn, not blank
