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


def test_cache_key_covers_the_import_graph_models_train_and_data() -> None:
    from ropekit.report.runner import _PACKAGE_ROOT, source_files

    rel = {str(p.relative_to(_PACKAGE_ROOT)) for p in source_files("classification")}
    assert {"experiments/classification.py", "experiments/_classify.py", "experiments/_common.py"} <= rel
    assert {"models/transformer.py", "models/positions.py", "train/loop.py", "train/tasks.py"} <= rel
    assert "data/files/spam_assassin.jsonl.xz" in rel and "scaling.py" in rel
    assert "experiments/vision.py" not in rel  # another experiment's module is not a source of this one
    assert "nd/vit.py" in {str(p.relative_to(_PACKAGE_ROOT)) for p in source_files("vision")}


def test_speed_looks_for_the_benchmark_in_the_working_directory_only(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from ropekit.experiments import speed

    monkeypatch.delenv("ROPEKIT_BENCHMARK_CSV", raising=False)
    monkeypatch.chdir(tmp_path)
    assert speed.find_benchmark_csv() is None
    (tmp_path / "benchmarks" / "results").mkdir(parents=True)
    (tmp_path / "benchmarks" / "results" / "apply_rotary.csv").write_text("a\n1\n")
    assert speed.find_benchmark_csv() == tmp_path / "benchmarks" / "results" / "apply_rotary.csv"


def test_no_model_encoding_or_training_loop_is_defined_under_experiments() -> None:
    """Experiments build models with ropekit.models and train with ropekit.train's step: no nn.Module subclass, no
    optimizer and no backward pass in any experiment module."""
    import ast

    from ropekit.report.runner import _PACKAGE_ROOT

    for path in sorted((_PACKAGE_ROOT / "experiments").glob("*.py")):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.ClassDef):
                bases = {ast.unparse(b) for b in node.bases}
                assert not bases & {"nn.Module", "torch.nn.Module", "Module"}, f"{path.name} defines {node.name}"
            if isinstance(node, ast.Attribute):
                assert node.attr not in ("backward", "AdamW", "SGD", "Adam"), f"{path.name} uses .{node.attr}"
