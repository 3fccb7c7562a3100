"""The page renderer: escaping, well-formed HTML, offline (no scripts or remote resources)."""

from __future__ import annotations

import pathlib

from ropekit.report.html import render_page

EVIL = "<script>alert('x')</script> & \"quotes\""


def _section(tmp: pathlib.Path, rows: int = 3) -> dict:
    (tmp / "results").mkdir(exist_ok=True)
    lines = ["kind,value"] + [f"{EVIL.replace(',', ' ').replace(chr(34), '')},{i}" for i in range(rows)]
    (tmp / "results" / "x_t.csv").write_text("\n".join(lines) + "\n")
    return {
        "name": "x",
        "title": EVIL,
        "status": "ok",
        "figures": [{"path": "figures/x_a.png", "caption": EVIL + "\nline two"}],
        "tables": [{"path": "results/x_t.csv", "caption": EVIL}],
        "findings": [EVIL],
        "published": EVIL,
        "agreement": "Agrees: " + EVIL,
        "config": {"k": EVIL},
        "seed": 0,
        "runtime_s": 1.0,
    }


def test_text_is_escaped_everywhere(tmp_path: pathlib.Path, html_check) -> None:
    page = render_page(tmp_path, [_section(tmp_path)], {"machine": EVIL})
    assert "<script>" not in page
    assert "&lt;script&gt;" in page
    checker = html_check(page)
    assert not any(tag == "script" for tag, _ in checker.tags)
    assert any(EVIL in t for t in checker.text)  # the text survives, as text


def test_page_is_offline_and_links_are_relative(tmp_path: pathlib.Path, html_check) -> None:
    page = render_page(tmp_path, [_section(tmp_path)], {"preset": "tiny"})
    checker = html_check(page)
    for tag, attrs in checker.tags:
        for key in ("src", "href"):
            value = attrs.get(key) or ""
            assert "://" not in value, f"<{tag} {key}={value!r}> is not local"
        assert tag != "link", "stylesheets must be inline"
    assert "<style>" in page and "@import" not in page and "url(" not in page


def test_long_tables_fold_and_failed_sections_show_the_error(tmp_path: pathlib.Path, html_check) -> None:
    failed = {"name": "y", "title": "Y", "status": "failed", "error": "ValueError: <bad>", "traceback": "tb <x>"}
    page = render_page(tmp_path, [_section(tmp_path, rows=100), failed], {})
    html_check(page)
    assert "<details><summary>Table (100 rows)" in page
    assert "first 30 of 100 rows" in page
    assert "ValueError: &lt;bad&gt;" in page
