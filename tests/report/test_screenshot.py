"""A real headless browser renders the report page; the screenshot is checked (skipped without a browser)."""

from __future__ import annotations

import importlib.util
import pathlib

import pytest

from ropekit.report import build_report

_SCRIPT = pathlib.Path(__file__).resolve().parents[2] / "scripts" / "screenshot_report.py"


def _script():
    spec = importlib.util.spec_from_file_location("screenshot_report", _SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_screenshot_of_rendered_report(tmp_path: pathlib.Path) -> None:
    shot = _script()
    if shot.find_browser() is None:
        pytest.skip("no Chromium-family browser installed (apt-get install -y chromium)")
    index = build_report(tmp_path / "report", preset="tiny", only=["analysis", "speed"], workers=1, log=lambda _: None)
    png = shot.take_screenshot(index, tmp_path / "shot.png", width=1000, height=2400)
    assert shot.check_screenshot(png, width=1000, height=2400) == []


def test_check_flags_a_blank_page(tmp_path: pathlib.Path) -> None:
    import matplotlib.image as mpimg
    import numpy as np

    blank = tmp_path / "blank.png"
    mpimg.imsave(blank, np.ones((240, 100, 3)))
    problems = _script().check_screenshot(blank, width=100, height=240)
    assert any("blank" in p for p in problems)
