"""The runner: cache hits and misses, missing modules, unknown names, the CLI wiring."""

from __future__ import annotations

import json
import pathlib

import pytest

import ropekit.experiments as experiments
from ropekit.cli import build_parser
from ropekit.report.runner import cache_key, run_experiments


def test_cache_is_reused_and_keyed_on_preset_seed_and_config(tmp_path: pathlib.Path) -> None:
    log: list[str] = []
    first = run_experiments(["speed"], "tiny", tmp_path, workers=1, log=log.append)[0]
    second = run_experiments(["speed"], "tiny", tmp_path, workers=1, log=log.append)[0]
    assert first["status"] == "ok" and second["status"] == "cached"
    assert second["findings"] == first["findings"]
    forced = run_experiments(["speed"], "tiny", tmp_path, workers=1, force=True, log=log.append)[0]
    assert forced["status"] == "ok"
    keys = {
        cache_key("speed", "tiny", 0, {"a": 1}),
        cache_key("speed", "quick", 0, {"a": 1}),
        cache_key("speed", "tiny", 1, {"a": 1}),
        cache_key("speed", "tiny", 0, {"a": 2}),
    }
    assert len(keys) == 4


def test_cache_miss_when_an_output_file_was_deleted(tmp_path: pathlib.Path) -> None:
    run_experiments(["speed"], "tiny", tmp_path, workers=1, log=lambda _: None)
    entry = json.loads((tmp_path / "cache" / "speed.json").read_text())
    for table in entry["section"]["tables"]:
        (tmp_path / table["path"]).unlink()
    again = run_experiments(["speed"], "tiny", tmp_path, workers=1, log=lambda _: None)[0]
    assert again["status"] == "ok"


def test_missing_module_is_reported_not_raised(tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(experiments, "EXPERIMENTS", (*experiments.EXPERIMENTS, "ropekit.experiments.not_written"))
    result = run_experiments(["not_written"], "tiny", tmp_path, workers=1, log=lambda _: None)[0]
    assert result["status"] == "missing" and "not_written" in result["error"]


def test_unknown_experiment_and_preset_raise_clearly() -> None:
    with pytest.raises(ValueError, match="unknown experiment 'nope'"):
        experiments.load_experiment("nope")
    module = experiments.load_experiment("speed")
    with pytest.raises(ValueError, match="no preset 'huge'"):
        module.run("huge", pathlib.Path("/nonexistent-should-not-be-created"))


def test_cli_has_report_and_experiment_commands() -> None:
    parser = build_parser()
    args = parser.parse_args(["report", "--preset", "tiny", "--out", "x", "--only", "speed"])
    assert args.preset == "tiny" and args.out == "x"
    args = parser.parse_args(["experiment", "analysis", "--preset", "tiny"])
    assert args.name == "analysis"
    with pytest.raises(SystemExit):
        parser.parse_args(["experiment", "no-such-experiment"])
