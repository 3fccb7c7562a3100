"""Screenshot the report page in a real headless browser and check that the picture is not broken.

Usage::

    python scripts/screenshot_report.py [REPORT_DIR] [--out PNG] [--width 1280] [--height 4000]

Needs Chromium (Debian: ``apt-get install -y chromium``). Exit code 0 when the screenshot was taken and looks
sane (right size, not blank, content in the top band and further down), 1 when a check fails, 2 when no browser
is installed. ``tests/report/test_screenshot.py`` runs the same checks and skips when no browser is installed.
"""

from __future__ import annotations

import argparse
import pathlib
import shutil
import subprocess
import sys
import tempfile

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")

# Keep the browser off the network and away from the user's profile: the page is a local file.
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
)


def find_browser() -> str | None:
    """Path of the first Chromium-family browser on PATH, or None."""
    return next((path for name in BROWSERS if (path := shutil.which(name))), None)


def take_screenshot(
    index_html: pathlib.Path,
    png: pathlib.Path,
    *,
    width: int = 1280,
    height: int = 4000,
    browser: str | None = None,
    timeout: float = 120.0,
) -> pathlib.Path:
    """Render ``index_html`` headless at ``width x height`` into ``png``; ``RuntimeError`` if it fails."""
    browser = browser or find_browser()
    if browser is None:
        raise RuntimeError(f"no browser found (tried {', '.join(BROWSERS)}); install one: apt-get install -y chromium")
    index_html, png = pathlib.Path(index_html).resolve(), pathlib.Path(png).resolve()
    if not index_html.exists():
        raise RuntimeError(f"{index_html} does not exist; build it first with `ropekit report`")
    png.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="ropekit-chromium-") as profile:
        cmd = [
            browser,
            *FLAGS,
            f"--user-data-dir={profile}",
            f"--screenshot={png}",
            f"--window-size={width},{height}",
            index_html.as_uri(),
        ]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
    if not png.exists():
        raise RuntimeError(f"browser wrote no screenshot (exit {proc.returncode}): {proc.stderr[-800:]}")
    return png


def check_screenshot(png: pathlib.Path, *, width: int = 1280, height: int = 4000) -> list[str]:
    """Problems found in the screenshot (empty list = looks sane)."""
    import matplotlib.image as mpimg
    import numpy as np

    img = mpimg.imread(png)[..., :3]  # [H, W, 3] floats in 0..1
    problems = []
    if img.shape[:2] != (height, width):
        problems.append(f"size {img.shape[1]}x{img.shape[0]}, expected {width}x{height}")
    if float(img.std()) < 0.02:
        problems.append(f"page looks blank (pixel std {img.std():.4f})")
    top = img[: min(300, img.shape[0])]
    if float(top.std()) < 0.02:
        problems.append("nothing visible in the top 300 px (title missing?)")
    band = img[img.shape[0] // 8 : img.shape[0] // 2]
    colourful = float((np.ptp(band, axis=-1) > 0.15).mean())  # share of saturated pixels: plots, badges
    if colourful < 0.001:
        problems.append("no coloured content in the upper half (figures missing?)")
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("report_dir", nargs="?", default="report", help="folder holding index.html (default report/)")
    parser.add_argument("--out", default=None, help="PNG path (default REPORT_DIR/screenshot.png)")
    parser.add_argument("--width", type=int, default=1280)
    parser.add_argument("--height", type=int, default=4000)
    args = parser.parse_args(argv)
    if find_browser() is None:
        print(f"no browser found (tried {', '.join(BROWSERS)}); install one: apt-get install -y chromium")
        return 2
    report_dir = pathlib.Path(args.report_dir)
    png = pathlib.Path(args.out) if args.out else report_dir / "screenshot.png"
    take_screenshot(report_dir / "index.html", png, width=args.width, height=args.height)
    problems = check_screenshot(png, width=args.width, height=args.height)
    for p in problems:
        print(f"problem: {p}")
    print(f"screenshot: {png} ({'ok' if not problems else f'{len(problems)} problem(s)'})")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
