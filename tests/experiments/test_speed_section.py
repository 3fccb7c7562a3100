"""The speed section reads the benchmark CSV (schema of benchmarks/apply_rotary.py) and keys the cache on it."""

from __future__ import annotations

import csv
import pathlib

import pytest

from ropekit.experiments import speed
from ropekit.report.runner import run_experiments

HEADER = ["utc", "machine", "torch", "reps", "shape", "dtype", "pass", "impl", "median_ms", "ratio_to_floor"]


def _write(path: pathlib.Path, utc: str, ratio: float) -> None:
    new = not path.exists()
    with path.open("a", newline="") as fh:
        w = csv.writer(fh)
        if new:
            w.writerow(HEADER)
        for impl, r in (("copy floor", 1.0), ("ropekit", ratio), ("meta complex", 1.3), ("transformers eager", 7.0)):
            for dtype in ("float32", "bfloat16"):
                w.writerow([utc, "Test CPU <b>", "2.x", 5, "1x2x8x4", dtype, "fwd", impl, 0.1 * r, r])


def test_benchmark_csv_is_summarised_and_keys_the_cache(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bench = tmp_path / "bench.csv"
    _write(bench, "2026-01-01T00:00:00Z", 1.1)
    monkeypatch.setenv("ROPEKIT_BENCHMARK_CSV", str(bench))
    out = tmp_path / "report"
    first = run_experiments(["speed"], "tiny", out, workers=1, log=lambda _: None)[0]
    assert first["status"] == "ok"
    assert [f["path"] for f in first["figures"]] == ["figures/speed_ratios.png"]
    assert any("Test CPU <b>" in f for f in first["findings"])  # machine label carried through (escaped later)
    assert first["agreement"].startswith(("Agrees", "Mixed", "Disagrees"))
    with open(out / "results" / "speed_summary.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert {r["impl"] for r in rows} == {"copy floor", "ropekit", "meta complex", "transformers eager"}
    _write(bench, "2026-01-02T00:00:00Z", 0.9)  # a new run appended: cache must miss, latest run used
    second = run_experiments(["speed"], "tiny", out, workers=1, log=lambda _: None)[0]
    assert second["status"] == "ok"
    assert any("2026-01-02" in f for f in second["findings"])


def test_absent_benchmark_is_said_plainly(tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ROPEKIT_BENCHMARK_CSV", str(tmp_path / "missing.csv"))
    section = speed.run("tiny", tmp_path)
    assert section["figures"] == [] and "No benchmark results" in section["findings"][0]
