"""Render the report as one self-contained HTML page: inline CSS, no scripts, no remote fonts.

Every piece of text from experiments (titles, captions, findings, CSV cells, errors) goes through
:func:`html.escape`. Figures are ``<img>`` tags with paths relative to the page (``figures/*.png``).
"""

from __future__ import annotations

import csv
import html
import json
import pathlib
from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["render_page"]

_MAX_TABLE_ROWS = 30
_OPEN_TABLE_ROWS = 16

_CSS = """
body{font:15px/1.5 -apple-system,'Segoe UI',Helvetica,Arial,sans-serif;margin:0;color:#1d2330;background:#f4f5f8}
main{max-width:1180px;margin:0 auto;padding:24px 32px 64px}
h1{font-size:28px;margin:8px 0 4px}h2{font-size:21px;margin:0 0 10px;border-bottom:2px solid #dde1ea;padding-bottom:6px}
h3{font-size:15px;margin:18px 0 6px;color:#3b4457}
.lead{color:#4b5466;margin:0 0 18px}
section{background:#fff;border-radius:10px;box-shadow:0 1px 3px rgba(0,0,0,.08);padding:20px 24px;margin:22px 0}
.toc{columns:2;margin:8px 0 0;padding-left:20px}
.badge{display:inline-block;font-size:12px;padding:1px 8px;border-radius:10px;margin-left:8px;vertical-align:middle}
.ok{background:#e2f5e8;color:#17602f}.cached{background:#e6eefb;color:#1f4d99}
.failed,.missing{background:#fde8e8;color:#9b1c1c}
.agree{border-left:4px solid #2f9e5a;background:#f1faf4;padding:8px 12px;margin:10px 0}
.disagree{border-left:4px solid #d9822b;background:#fdf6ee;padding:8px 12px;margin:10px 0}
.neutral{border-left:4px solid #8a93a6;background:#f5f6f8;padding:8px 12px;margin:10px 0}
.published{color:#4b5466;font-size:14px}
ul.findings li{margin:3px 0}
.figs{display:grid;grid-template-columns:repeat(auto-fill,minmax(520px,1fr));gap:16px;margin-top:12px}
figure.wide{grid-column:1/-1}
figure.wide img{width:auto;max-width:100%;max-height:430px;margin:0 auto}
figure{margin:0;background:#fafbfc;border:1px solid #e5e8ef;border-radius:8px;padding:10px}
figure img{width:100%;height:auto;display:block}
figcaption{font-size:13px;color:#4b5466;margin-top:6px;white-space:pre-line}
table{border-collapse:collapse;font-size:12.5px;margin:6px 0 4px;display:block;overflow-x:auto;max-width:100%}
th,td{border:1px solid #e1e4ea;padding:3px 8px;text-align:right;white-space:nowrap}
th{background:#eef0f5;position:sticky;top:0}td:first-child,th:first-child{text-align:left}
.meta td{text-align:left;white-space:normal}
details{margin:8px 0}summary{cursor:pointer;color:#1f4d99}
pre{background:#f5f6f8;padding:8px;overflow-x:auto;font-size:12px}
.muted{color:#6b7386;font-size:13px}
"""


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _csv_table(root: pathlib.Path, rel: str) -> tuple[str, int]:
    """HTML for the first rows of a CSV, and its number of data rows."""
    path = root / rel
    try:
        with open(path, newline="", encoding="utf-8") as fh:
            rows = list(csv.reader(fh))
    except OSError as e:
        return f'<p class="muted">Table {_e(rel)} could not be read: {_e(e)}</p>', 0
    if not rows:
        return f'<p class="muted">Table {_e(rel)} is empty.</p>', 0
    head, body = rows[0], rows[1:]
    shown = body[:_MAX_TABLE_ROWS]
    parts = ["<table><thead><tr>", *(f"<th>{_e(h)}</th>" for h in head), "</tr></thead><tbody>"]
    for row in shown:
        parts.append("<tr>" + "".join(f"<td>{_e(c)}</td>" for c in row) + "</tr>")
    parts.append("</tbody></table>")
    more = f"first {len(shown)} of {len(body)} rows; " if len(body) > len(shown) else f"{len(body)} rows; "
    parts.append(f'<p class="muted">{_e(more)}full data: <a href="{_e(rel)}">{_e(rel)}</a></p>')
    return "".join(parts), len(body)


def _png_aspect(path: pathlib.Path) -> float:
    """Width / height from a PNG's IHDR chunk (1.0 when unreadable)."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(24)
        if head[:8] != b"\x89PNG\r\n\x1a\n":
            return 1.0
        w, h = int.from_bytes(head[16:20], "big"), int.from_bytes(head[20:24], "big")
        return w / h if h else 1.0
    except OSError:
        return 1.0


def _verdict(sec: Mapping[str, Any]) -> str:
    """The verdict word(s) an agreement text starts with, for the contents list."""
    text = str(sec.get("agreement") or "")
    for word in ("Agrees", "Disagrees", "Mixed", "Inconclusive", "Not tested", "Partly agrees", "Undecided"):
        if text.startswith(word):
            return word
    return str(sec.get("status", "")) if sec.get("status") in ("failed", "missing") else ""


def _agreement_class(text: str) -> str:
    low = text.lower()
    if low.startswith("agrees"):
        return "agree"
    if low.startswith(("disagrees", "partly", "mixed")):
        return "disagree"
    return "neutral"


def _section(root: pathlib.Path, sec: Mapping[str, Any]) -> str:
    name, status = str(sec.get("name", "?")), str(sec.get("status", "ok"))
    out = [
        f'<section id="{_e(name)}"><h2>{_e(sec.get("title", name))}'
        f'<span class="badge {_e(status)}">{_e(status)}</span></h2>'
    ]
    if status in ("failed", "missing"):
        out.append(f"<p>This experiment did not produce results: {_e(sec.get('error', 'unknown error'))}</p>")
        if sec.get("traceback"):
            out.append(f"<details><summary>traceback</summary><pre>{_e(sec['traceback'])}</pre></details>")
        out.append("</section>")
        return "".join(out)
    if sec.get("findings"):
        out.append(
            "<h3>Measured</h3><ul class='findings'>" + "".join(f"<li>{_e(f)}</li>" for f in sec["findings"]) + "</ul>"
        )
    if sec.get("published"):
        out.append(f"<p class='published'><b>Published:</b> {_e(sec['published'])}</p>")
    if sec.get("agreement"):
        out.append(
            f"<div class='{_agreement_class(str(sec['agreement']))}'><b>Agreement:</b> {_e(sec['agreement'])}</div>"
        )
    for note in sec.get("notes", []) or []:
        out.append(f"<p class='muted'>{_e(note)}</p>")
    figs = sec.get("figures", []) or []
    if figs:
        out.append("<div class='figs'>")
        for fig in figs:
            wide = ' class="wide"' if _png_aspect(root / fig["path"]) > 1.9 else ""
            out.append(
                f'<figure{wide}><img src="{_e(fig["path"])}" alt="{_e(fig.get("caption", ""))}" loading="lazy">'
                f"<figcaption>{_e(fig.get('caption', ''))}</figcaption></figure>"
            )
        out.append("</div>")
    for table in sec.get("tables", []) or []:
        caption = _e(table.get("caption", table["path"]))
        body, n_rows = _csv_table(root, table["path"])
        if n_rows <= _OPEN_TABLE_ROWS:  # small tables are shown; long ones fold away (CSV link inside)
            out.append(f"<h3>{caption}</h3>{body}")
        else:
            out.append(f"<details><summary>Table ({n_rows} rows): {caption}</summary>{body}</details>")
    cfg = json.dumps(sec.get("config", {}), sort_keys=True, default=str)
    out.append(
        f"<details><summary>config, seed and run time</summary><pre>{_e(cfg)}</pre>"
        f"<p class='muted'>seed {_e(sec.get('seed', ''))}; run time {_e(sec.get('runtime_s', ''))} s "
        f"(status {_e(status)})</p></details>"
    )
    out.append("</section>")
    return "".join(out)


def _first_sentence(section: Mapping[str, Any]) -> str:
    return str(section.get("agreement") or section.get("error") or "").split(". ")[0]


def _summary(summary: str | None, sections: Sequence[Mapping[str, Any]]) -> str:
    """The top of the page: the normalised score figure beside the verdict table."""
    rows = "".join(
        f"<tr><td><a href='#{_e(s.get('name'))}'>{_e(s.get('name'))}</a></td><td>{_e(_verdict(s) or '')}</td>"
        f"<td style='text-align:left;white-space:normal'>{_e(_first_sentence(s))}</td></tr>"
        for s in sections
    )
    fig = (
        f"<figure><img src='{_e(summary)}' alt='normalised score per encoding and task'><figcaption>Each encoding's "
        "score per task, normalised per task (1 = best; 0 = worst or chance); the raw value is in each cell.\n"
        "From the sections below (accuracy, or loss where lower is better).</figcaption></figure>"
        if summary
        else ""
    )
    return (
        "<section id='summary'><h2>Summary</h2><div class='figs'>"
        f"{fig}<div><table><thead><tr><th>section</th><th>verdict</th><th>counts</th></tr></thead>"
        f"<tbody>{rows}</tbody></table></div></div></section>"
    )


def render_page(
    root: pathlib.Path, sections: Sequence[Mapping[str, Any]], meta: Mapping[str, Any], summary: str | None = None
) -> str:
    """The full HTML page for ``sections`` (results of the runner) with run metadata ``meta``; ``summary``: the
    path of the summary figure (``figures/summary.png``), shown at the top beside the verdict table."""
    n_fig = sum(len(s.get("figures", []) or []) for s in sections)
    toc = "".join(
        f"<li><a href='#{_e(s.get('name'))}'>{_e(s.get('title', s.get('name')))}</a> "
        f"<span class='badge {_e(s.get('status', 'ok'))}'>{_e(s.get('status', 'ok'))}</span>"
        f"<span class='muted'> {_e(_verdict(s))}</span></li>"
        for s in sections
    )
    meta_rows = "".join(f"<tr><td>{_e(k)}</td><td>{_e(v)}</td></tr>" for k, v in meta.items())
    runtimes = "".join(
        f"<tr><td>{_e(s.get('name'))}</td><td>{_e(s.get('status', 'ok'))}</td>"
        f"<td>{_e(s.get('runtime_s', ''))}</td></tr>"
        for s in sections
    )
    body = "".join(_section(root, s) for s in sections)
    return (
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
        "<meta name='viewport' content='width=device-width, initial-scale=1'>"
        f"<title>ropekit report ({_e(meta.get('preset', ''))})</title><style>{_CSS}</style></head><body><main>"
        "<h1>What position encodings do: a ropekit study</h1>"
        f"<p class='lead'>Preset <b>{_e(meta.get('preset', ''))}</b>, {len(sections)} experiments, {n_fig} figures. "
        "Every number below is also in <code>results/*.csv</code>. Findings are computed from the measurements; "
        "the published result is quoted beside each, with a computed verdict.</p>"
        f"{_summary(summary, sections)}"
        f"<section><h2>Contents</h2><ul class='toc'>{toc}</ul></section>"
        f"{body}"
        f"<section id='machine'><h2>Machine, versions and run times</h2><table class='meta'>{meta_rows}</table>"
        f"<h3>Run time per experiment (seconds, one thread each)</h3><table><tr><th>experiment</th><th>status</th>"
        f"<th>run time (s)</th></tr>{runtimes}</table></section>"
        "</main></body></html>"
    )
