"""Every registered experiment, "tiny" preset, end to end through the report: outputs exist and are well formed.

Checks the protocol (section keys, relative paths, CSV columns, decodable PNGs, JSON on disk, HTML that parses,
the summary figure, a trained model that ``ropekit eval`` loads), never the measured values.
"""

from __future__ import annotations

import csv
import json
import pathlib
import subprocess
import sys
from html.parser import HTMLParser

from ropekit.experiments import experiment_names, load_experiment
from ropekit.report import build_report

SECTION_KEYS = {
    "name",
    "title",
    "figures",
    "tables",
    "findings",
    "published",
    "agreement",
    "config",
    "seed",
    "runtime_s",
    "notes",
    "scores",
}
VERDICTS = ("Agrees", "Disagrees", "Mixed", "Inconclusive", "Not tested")


def _available(name: str) -> bool:
    try:
        load_experiment(name)
    except ImportError:
        return False
    return True


def _check_section(name: str, out: pathlib.Path, section: dict) -> None:
    assert section["status"] == "ok", section.get("traceback") or section.get("error")
    assert set(section) >= SECTION_KEYS
    module = load_experiment(name)
    assert set(module.PRESETS) >= {"tiny", "quick", "full"}
    assert section["config"] == json.loads(json.dumps(module.PRESETS["tiny"], default=str))
    assert section["findings"] and all(isinstance(f, str) and f for f in section["findings"])
    assert isinstance(section["agreement"], str) and section["agreement"].startswith(VERDICTS)
    for score in section["scores"]:
        assert score["task"] and score["values"] and isinstance(score["higher_is_better"], bool)
    on_disk = json.loads((out / "sections" / f"{name}.json").read_text())
    assert on_disk["findings"] == section["findings"]
    for table in section["tables"]:
        path = out / table["path"]
        assert table["path"].startswith(f"results/{name}") and table["path"].endswith(".csv")
        with open(path, newline="") as fh:
            rows = list(csv.reader(fh))
        assert len(rows) >= 2, f"{path} has no data rows"
        assert all(len(r) == len(rows[0]) for r in rows), f"{path}: ragged rows"
        assert all(h.strip() for h in rows[0]) and len(set(rows[0])) == len(rows[0])
    import matplotlib.image as mpimg

    for fig in section["figures"]:
        assert fig["path"].startswith(f"figures/{name}_") and fig["path"].endswith(".png")
        image = mpimg.imread(out / fig["path"])
        assert image.ndim == 3 and image.shape[0] > 50 and image.shape[1] > 50
        assert image.std() > 0, "blank figure"
        assert fig["caption"].count("\n") == 1, "captions have two lines: what it shows / how measured"


def _check_index(out: pathlib.Path, data: dict) -> None:
    page = (out / "index.html").read_text()
    refs: list[str] = []

    class Refs(HTMLParser):
        def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
            refs.extend(v for k, v in attrs if k in ("src", "href") and v and not v.startswith("#"))

    Refs().feed(page)
    assert refs and all((out / r).exists() for r in refs)
    assert "<script" not in page
    n_fig = sum(len(s.get("figures", [])) for s in data["sections"])
    assert (out / "figures" / "summary.png").is_file()
    assert page.count("<img ") == n_fig + 1  # the summary figure at the top
    assert page.index("id='summary'") < page.index('id="analysis"')


def test_tiny_report_end_to_end(tmp_path: pathlib.Path) -> None:
    """One test (so that pytest-xdist does not build the report twice): run every experiment's tiny preset through
    the report with 2 worker processes, then check each section and the page."""
    out = tmp_path / "report"
    index = build_report(out, preset="tiny", workers=2, log=lambda _: None)
    data = json.loads((index.parent / "report.json").read_text())
    by_name = {s["name"]: s for s in data["sections"]}
    assert list(by_name) == experiment_names()
    failures = []
    for name in experiment_names():
        if not _available(name):
            failures.append(f"{name}: ropekit.experiments.{name} does not import")
            continue
        try:
            _check_section(name, out, by_name[name])
        except AssertionError as e:
            failures.append(f"{name}: {e}")
    assert not failures, "\n".join(failures)
    _check_index(out, data)
    _check_trained_model_loads_with_ropekit_eval(out)


def _check_trained_model_loads_with_ropekit_eval(out: pathlib.Path) -> None:
    """The classification experiment keeps a model as a ``ropekit train`` run; ``ropekit eval`` must load it."""
    run = out / "models" / "classification-rope"
    assert (run / "model.safetensors").is_file() and (run / "config.json").is_file()
    proc = subprocess.run(
        [sys.executable, "-m", "ropekit.cli", "eval", str(run), "--split", "test"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert 0.0 <= result["accuracy"] <= 1.0 and result["pe"] == {"kind": "rope"}
