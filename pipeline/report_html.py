"""Render `ReportData` as one self-contained HTML file: inline CSS and SVG charts, base64
JPEG thumbnails (of frames the decode stage gave, `pipeline/report_thumbnails.py`), no script
and no external asset, so it can be mailed or archived as is."""
from __future__ import annotations

import base64
import html
import io

import numpy as np

from pipeline.answer_mass import LOW_MASS, low_mass_warning
from pipeline.report_stats import Histogram, ReportData, level_means, mass_means
from schemas.checklist import Checklist
from schemas.status import OK

THUMB_SIDE = 240
PALETTE = ["#4f7cff", "#12b886", "#f59f00", "#ae3ec9", "#e64980"]

CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0;background:#f4f5f7;color:#1d2330}
main{max-width:1160px;margin:0 auto;padding:24px 20px 48px}
h1{font-size:24px;margin:0 0 4px}h2{font-size:18px;margin:32px 0 12px}h3{font-size:15px;margin:18px 0 8px}
.sub{color:#5b6475;margin:0 0 16px;word-break:break-all}
.tiles{display:flex;gap:12px;flex-wrap:wrap}
.tile{background:#fff;border-radius:8px;padding:10px 16px;box-shadow:0 1px 3px #0002;min-width:120px}
.tile b{display:block;font-size:20px}.tile span{color:#5b6475;font-size:12px}
.grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(350px,1fr));gap:12px}
.card{background:#fff;border-radius:8px;padding:10px 12px;box-shadow:0 1px 3px #0002}
.card .meta{color:#5b6475;font-size:12px}
table{border-collapse:collapse;background:#fff;width:100%;box-shadow:0 1px 3px #0002;border-radius:8px;overflow:hidden}
th,td{padding:5px 10px;text-align:left;border-bottom:1px solid #eceef2;vertical-align:middle}
th{background:#fafbfc;font-weight:600;font-size:12px;color:#5b6475}
td.num{text-align:right;font-variant-numeric:tabular-nums}
code{font-size:12.5px}.qtext{color:#5b6475;font-size:12px}
.tag{background:#eef2ff;color:#3446a3;border-radius:4px;padding:1px 6px;font-size:12px}
.bar{background:#eceef2;border-radius:3px;height:10px;width:180px;position:relative}
.bar i{position:absolute;left:0;top:0;bottom:0;background:#4f7cff;border-radius:3px}
.bar s{position:absolute;top:-3px;bottom:-3px;width:2px;background:#e8590c}
.strip{display:flex;gap:10px;overflow-x:auto;padding-bottom:4px}
.item{background:#fff;border-radius:8px;box-shadow:0 1px 3px #0002;width:170px;flex:none;overflow:hidden}
.item img,.item .noimg{width:170px;height:128px;object-fit:cover;display:block;background:#dde1e8}
.item .noimg{display:flex;align-items:center;justify-content:center;color:#5b6475;font-size:12px;text-align:center}
.item div.t{padding:6px 8px;font-size:12px}.item b{font-size:14px}
.item .p{color:#5b6475;display:-webkit-box;-webkit-line-clamp:2;-webkit-box-orient:vertical;overflow:hidden}
.label{font-size:12px;color:#5b6475;margin:6px 0 4px}
.legend{margin:-4px 0 10px;color:#5b6475;font-size:12px}.key{margin-right:14px;white-space:nowrap}
.key i{display:inline-block;width:10px;height:10px;border-radius:2px;margin-right:5px;vertical-align:-1px}
h3 .meta{font-weight:400;color:#5b6475;font-size:13px}
.warn{background:#fff4e6;color:#8a3c00;border-left:4px solid #f08c00;padding:8px 12px;border-radius:4px;margin:12px 0}
td.low{color:#c92a2a;font-weight:600}
"""


def _e(text: object) -> str:
    return html.escape(str(text), quote=True)


def thumbnail_jpeg(frame: np.ndarray) -> bytes:
    """A JPEG at most THUMB_SIDE on its longer side of one decoded (H, W, 3) uint8 RGB frame."""
    from PIL import Image

    img = Image.fromarray(np.ascontiguousarray(frame, dtype=np.uint8))
    img.thumbnail((THUMB_SIDE, THUMB_SIDE))
    out = io.BytesIO()
    img.save(out, format="JPEG", quality=82)
    return out.getvalue()


def data_uri(jpeg: bytes) -> str:
    return "data:image/jpeg;base64," + base64.b64encode(jpeg).decode()


def histogram_svg(h: Histogram, colors: dict[str, str], width: int = 330, height: int = 130) -> str:
    """Bars stacked by checklist (one colour each), the mean as a dashed line."""
    pad, pad_b, top = 6, 20, 8
    plot_w, plot_h = width - 2 * pad, height - pad_b - top
    n_bins = len(h.edges) - 1
    totals = [sum(c[i] for c in h.counts.values()) for i in range(n_bins)]
    peak, bar_w = max(totals) or 1, plot_w / n_bins
    bars, base = [], [0] * n_bins
    for name, counts in h.counts.items():
        for i, c in enumerate(counts):
            if c:
                y = top + plot_h * (1 - (base[i] + c) / peak)
                bars.append(f'<rect x="{pad + i * bar_w + 0.5:.1f}" y="{y:.1f}" width="{max(bar_w - 1, 1):.1f}" '
                            f'height="{plot_h * c / peak:.1f}" fill="{colors[name]}"><title>{_e(name)} '
                            f'[{h.edges[i]:.3g}, {h.edges[i + 1]:.3g}): {c}</title></rect>')
                base[i] += c
    lo, hi = h.edges[0], h.edges[-1]
    x = pad + plot_w * (h.total / h.n - lo) / (hi - lo)
    return (f'<svg width="{width}" height="{height}" viewBox="0 0 {width} {height}" role="img">{"".join(bars)}'
            f'<line x1="{pad}" x2="{width - pad}" y1="{top + plot_h}" y2="{top + plot_h}" stroke="#9aa3b2"/>'
            f'<text x="{pad}" y="{height - 5}" font-size="11" fill="#5b6475">{lo:.3g}</text>'
            f'<text x="{width - pad}" y="{height - 5}" font-size="11" fill="#5b6475" text-anchor="end">{hi:.3g}</text>'
            f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{top - 4}" y2="{top + plot_h}" stroke="#e8590c" stroke-width="2" '
            f'stroke-dasharray="4 3"/></svg>')


def _distributions(data: ReportData, colors: dict[str, str]) -> str:
    legend = " ".join(f'<span class="key"><i style="background:{c}"></i>{_e(n)}</span>' for n, c in colors.items())
    cards = [f'<div class="card"><h3>{_e(col)}</h3>{histogram_svg(h, colors)}'
             f'<div class="meta">mean {h.total / h.n:+.3f} (dashed) &middot; n {h.n}</div></div>'
             for col, h in data.histograms.items()]
    return f'<h2>Distributions</h2><p class="legend">{legend}</p><div class="grid">' + "".join(cards) + "</div>"


def _yes_rates(data: ReportData, checklists: dict[str, Checklist]) -> str:
    parts = ["<h2>Yes-rate per question</h2>"]
    masses = mass_means(data, checklists)
    for name, yes in data.yes.items():
        n, checklist = data.answered[name], checklists[name]
        mass = masses.get(name)
        rows = []
        for q, y, p_sum in zip(checklist.questions, yes, data.p_yes_sum[name]):
            rate, mean_p = y / n, p_sum / n
            mass_cell = "" if mass is None else (f'<td class="num{" low" if mass[q.id] < LOW_MASS else ""}">'
                                                 f'{mass[q.id]:.3f}</td>')
            rows.append(f'<tr><td><code>{_e(q.id)}</code><div class="qtext">{_e(q.text)}</div></td>'
                        f'<td><span class="tag">{_e(q.dimension or "gate")}</span></td>'
                        f'<td><div class="bar" title="bar: yes-rate; mark: mean p_yes">'
                        f'<i style="width:{100 * rate:.1f}%"></i>'
                        f'<s style="left:{100 * mean_p:.1f}%"></s></div></td>'
                        f'<td class="num">{100 * rate:.1f}%</td><td class="num">{mean_p:.3f}</td>{mass_cell}</tr>')
        parts.append(f"<h3>{_e(name)} <span class='meta'>&middot; {n} scored items</span></h3>"
                     "<table><tr><th>question</th>"
                     "<th>dimension</th><th>yes-rate (mark: mean p_yes)</th><th>yes</th><th>mean p_yes</th>"
                     + ("" if mass is None else "<th title='P(yes words) + P(no words) under the softmax over the "
                        "whole vocabulary'>mean answer mass</th>")
                     + "</tr>" + "".join(rows) + "</table>")
    return "".join(parts)


def _ratings(data: ReportData, checklists: dict[str, Checklist]) -> str:
    """Each rating question's mean level distribution and expected value (its mean p_yes)."""
    means = level_means(data)
    if not means:
        return ""
    parts = ["<h2>Rating questions</h2>"]
    for name, by_q in means.items():
        checklist = checklists[name]
        questions = {q.id: (i, q) for i, q in enumerate(checklist.questions)}
        rows = []
        for qid, probs in by_q.items():
            i, q = questions[qid]
            expected = data.p_yes_sum[name][i] / data.answered[name] if name in data.answered else float("nan")
            cells = "".join(f'<td class="num" title="mean P({_e(w)})">{_e(w)}: {p:.3f}</td>'
                            for w, p in zip(q.levels or [], probs))
            rows.append(f'<tr><td><code>{_e(qid)}</code><div class="qtext">{_e(q.text)}</div></td>'
                        f'<td class="num">{expected:.3f}</td>{cells}</tr>')
        parts.append(f"<h3>{_e(name)} <span class='meta'>&middot; {data.level_rows[name]} scored items</span></h3>"
                     "<table><tr><th>question</th><th title='mean of the expected value of the levels values "
                     "(p_yes)'>expected value</th><th colspan='99'>mean level probabilities, worst to best</th></tr>"
                     + "".join(rows) + "</table>")
    return "".join(parts)


def _errors(data: ReportData) -> str:
    errors = {s: n for s, n in data.status_counts.items() if s != OK}
    if not errors:
        return "<h2>Errors by kind</h2><p>No errors: every row was scored.</p>"
    rows = "".join(f'<tr><td><code>{_e(s)}</code></td><td class="num">{n}</td>'
                   f'<td class="num">{100 * n / data.rows:.1f}%</td>'
                   f'<td class="qtext">{_e(data.error_examples.get(s, ""))}</td></tr>'
                   for s, n in sorted(errors.items(), key=lambda kv: -kv[1]))
    return ("<h2>Errors by kind</h2><table><tr><th>status</th><th>rows</th><th>share</th>"
            "<th style='width:60%'>example</th></tr>"
            + rows + "</table>")


def _item(it: dict, thumbs: dict[str, str]) -> str:
    src = thumbs.get(it["id"], "")
    pic = (f'<img src="{src}" alt="{_e(it["id"])}">' if src.startswith("data:")
           else f'<div class="noimg" title="{_e(src)}">no preview</div>')
    return (f'<div class="item" title="{_e(it["uri"])}">{pic}<div class="t"><b>{it["value"]:+.3f}</b> '
            f'<code>{_e(it["id"])}</code><div class="p">{_e(it.get("prompt") or "")}</div></div></div>')


def _extremes(data: ReportData, thumbs: dict[str, str]) -> str:
    parts = ["<h2>Top and bottom items</h2>"]
    for name, by_col in data.top.items():
        for col, best in by_col.items():
            worst = data.bottom[name][col]
            parts.append(f"<h3>{_e(col)} <span class='meta'>&middot; {_e(name)}</span></h3>"
                         "<div class='label'>highest</div><div class='strip'>"
                         + "".join(_item(it, thumbs) for it in best)
                         + "</div><div class='label'>lowest</div><div class='strip'>"
                         + "".join(_item(it, thumbs) for it in worst) + "</div>")
    return "".join(parts)


def render_report(data: ReportData, checklists: dict[str, Checklist], thumbs: dict[str, str], *,
                  source: str, model: str | None) -> str:
    """`checklists` by name; `thumbs`: item id -> data URI, or the reason it has none."""
    ok = data.status_counts.get(OK, 0)
    score = data.histograms.get("score")
    tiles = [("rows", data.rows), ("scored ok", ok), ("errors", data.rows - ok),
             ("mean score", f"{score.total / score.n:+.3f}" if score and score.n else "-")]
    head = (f"<h1>vrscore report</h1><p class='sub'>{_e(source)} &middot; model {_e(model or 'unknown')} &middot; "
            f"checklists {_e(', '.join(checklists))}</p><div class='tiles'>"
            + "".join(f"<div class='tile'><b>{_e(v)}</b><span>{_e(k)}</span></div>" for k, v in tiles) + "</div>")
    warning = low_mass_warning(mass_means(data, checklists))
    if warning:
        head += f"<p class='warn'>{_e(warning)}</p>"
    colors = {name: PALETTE[i % len(PALETTE)] for i, name in enumerate(checklists)}
    body = (head + _distributions(data, colors) + _yes_rates(data, checklists) + _ratings(data, checklists)
            + _errors(data) + _extremes(data, thumbs))
    return (f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>vrscore report</title>"
            f"<style>{CSS}</style></head><body><main>{body}</main></body></html>\n")
