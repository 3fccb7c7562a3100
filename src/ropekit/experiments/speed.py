"""Speed: the kernel benchmark table, read from ``benchmarks/results/apply_rotary.csv`` (nothing is timed here).

The benchmark is run by ``make bench`` (``benchmarks/apply_rotary.py`` in the repository, not part of the installed
package); it appends one row per measurement with the machine it ran on. The section reads the CSV named by
``$ROPEKIT_BENCHMARK_CSV``, else ``benchmarks/results/apply_rotary.csv`` under the directory the report is run from
(``make run`` runs it from the repository root); it never looks up the package's own install location.
This section copies the rows, labels them with their machine, and plots the time column it finds (a column whose
name contains ``ratio``, else ``median``, else ``ms``/``us``) per implementation. When the file is absent it says so
plainly.
"""

from __future__ import annotations

import csv
import os
import pathlib
from typing import Any

from ropekit.experiments._common import Outputs, matplotlib_agg, progress, protocol

__all__ = ["NAME", "PRESETS", "TITLE", "cache_inputs", "find_benchmark_csv", "run"]

NAME = "speed"
TITLE = "Speed: apply_rotary kernel benchmark"

# The presets only differ in how many rows are plotted; the benchmark itself is run by its own script.
PRESETS: dict[str, dict[str, Any]] = {
    "tiny": {"max_rows_plotted": 20},
    "quick": {"max_rows_plotted": 60},
    "full": {"max_rows_plotted": 400},
}
PRESETS["gpu"] = dict(PRESETS["quick"])  # reads the benchmark CSV: no model

_ENV = "ROPEKIT_BENCHMARK_CSV"
_DEFAULT_CSV = "benchmarks/results/apply_rotary.csv"


def find_benchmark_csv() -> pathlib.Path | None:
    """``$ROPEKIT_BENCHMARK_CSV`` if set, else ``benchmarks/results/apply_rotary.csv`` under the working directory."""
    path = pathlib.Path(os.environ[_ENV]) if os.environ.get(_ENV) else pathlib.Path.cwd() / _DEFAULT_CSV
    return path if path.exists() else None


def cache_inputs() -> list[pathlib.Path]:
    """Files whose content the report's cache key must include (the benchmark CSV, when present)."""
    path = find_benchmark_csv()
    return [path] if path is not None else []


# Measured earlier on this machine kind (docs/kernels.md): same-run ratio to the copy floor, forward pass.
PUBLISHED_RANGES = {
    ("meta complex", "float32"): (1.1, 1.5),
    ("meta complex", "bfloat16"): (6.0, 14.0),
    ("transformers compile", "float32"): (3.0, 5.6),
    ("transformers compile", "bfloat16"): (2.5, 6.8),
    ("transformers eager", "float32"): (6.0, 10.0),
    ("transformers eager", "bfloat16"): (6.0, 20.0),
}
_SCHEMA = {"utc", "impl", "dtype", "pass", "shape", "ratio_to_floor", "median_ms", "machine"}


def _structured(rows: list[dict[str, str]], out: Outputs, cfg: dict[str, Any]) -> tuple[list[str], str]:
    """Figures, tables, findings and agreement for the schema written by ``benchmarks/apply_rotary.py``."""
    import numpy as np

    latest = max(r["utc"] for r in rows)
    run_rows = [r for r in rows if r["utc"] == latest and _num(r["ratio_to_floor"]) is not None]
    machine = run_rows[0]["machine"]
    impls = list(dict.fromkeys(r["impl"] for r in run_rows))
    combos = list(dict.fromkeys((r["dtype"], r["pass"]) for r in run_rows))
    ratio: dict[tuple[str, str, str], float] = {}
    summary = []
    for impl in impls:
        for dtype, pas in combos:
            vals = [
                v
                for r in run_rows
                if (r["impl"], r["dtype"], r["pass"]) == (impl, dtype, pas)
                and (v := _num(r["ratio_to_floor"])) is not None
            ]
            if vals:
                ratio[(impl, dtype, pas)] = float(np.median(vals))
                summary.append(
                    {
                        "impl": impl,
                        "dtype": dtype,
                        "pass": pas,
                        "median_ratio_to_floor": ratio[(impl, dtype, pas)],
                        "shapes": len(vals),
                        "machine": machine,
                        "utc": latest,
                    }
                )
    out.write_csv("summary", summary, f"Median ratio to the copy floor over shapes, latest run ({latest}, {machine}).")
    out.write_csv("table", [dict(r) for r in rows][-cfg["max_rows_plotted"] :], "Benchmark rows as recorded (latest).")
    plt = matplotlib_agg()
    fig, ax = plt.subplots(figsize=(12, 4.2))
    width = 0.8 / max(1, len(combos))
    for j, (dtype, pas) in enumerate(combos):
        xs = [i + (j - (len(combos) - 1) / 2) * width for i, impl in enumerate(impls) if (impl, dtype, pas) in ratio]
        ys = [ratio[(impl, dtype, pas)] for impl in impls if (impl, dtype, pas) in ratio]
        ax.bar(xs, ys, width, label=f"{dtype} {pas}")
    ax.axhline(1.0, color="black", lw=0.8)
    ax.set_yscale("log")
    ax.set_xticks(range(len(impls)), impls, rotation=20, ha="right", fontsize=8)
    ax.set(ylabel="time / copy floor (log)", title=f"apply_rotary vs the copy floor ({machine})")
    ax.legend(fontsize=8, ncol=len(combos))
    out.save_figure(
        fig,
        "ratios",
        "Rotary time relative to copying q and k (1 = the memory floor), median over shapes, "
        "per implementation, dtype and pass.\nFrom benchmarks/apply_rotary.py's latest run "
        f"({latest}) on {machine}; ratios are same-run, so machine noise is shared.",
    )
    findings = [f"Latest benchmark run {latest} on {machine}: {len(run_rows)} rows, {len(impls)} implementations."]
    for dtype, pas in combos:
        if ("ropekit", dtype, pas) in ratio:
            peers = {
                i: ratio[(i, dtype, pas)]
                for i in impls
                if not i.startswith("ropekit") and i != "copy floor" and (i, dtype, pas) in ratio
            }
            best = min(peers.items(), key=lambda kv: kv[1]) if peers else ("none", float("nan"))
            findings.append(
                f"{dtype} {pas}: ropekit {ratio[('ropekit', dtype, pas)]:.2f}x the floor; fastest peer "
                f"{best[0]} {best[1]:.2f}x."
            )
    checks = []
    for (impl, dtype), (lo, hi) in PUBLISHED_RANGES.items():
        got = ratio.get((impl, dtype, "fwd"))
        if got is not None:
            checks.append((f"{impl} {dtype} fwd {got:.2f}x (published {lo:g}-{hi:g}x)", lo <= got <= hi))
    from ropekit.experiments._common import Claim, agreement

    claims = [
        Claim(
            f"peer ratio in the published range: {t}",
            "earlier run on this machine kind (docs/kernels.md)",
            t.split("(published ")[-1].rstrip(")"),
            t.split(" (published")[0],
            "agrees" if ok else "disagrees",
        )
        for t, ok in checks
    ]
    return findings, agreement([], claims)


def _pick(columns: list[str], *needles: str) -> str | None:
    for needle in needles:
        for c in columns:
            if needle in c.lower():
                return c
    return None


def _num(value: str) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


@protocol
def run(cfg: dict[str, Any], out: Outputs, *, seed: int) -> dict[str, Any]:
    """Copy and plot the benchmark rows, or report their absence."""
    published = (
        "An earlier run on this machine kind (docs/kernels.md): Meta's complex form 1.1-1.5x the copy floor in fp32; "
        "transformers eager 6-10x fp32; torch.compile of the cat form 1.07-1.24x fp32."
    )
    path = find_benchmark_csv()
    rows: list[dict[str, str]] = []
    if path is not None:
        with open(path, newline="", encoding="utf-8") as fh:
            rows = list(csv.DictReader(fh))
    if path is None or not rows:
        where = os.environ.get(_ENV) or _DEFAULT_CSV
        msg = (
            f"No benchmark results: {where} is absent or empty (looked up under the working directory), so no speed "
            "numbers are shown. The benchmark is run by `make bench` in the repository; rerun the report after it."
        )
        out.write_csv("status", [{"benchmark_csv": where, "present": False, "rows": 0}], "Benchmark file status.")
        return {"findings": [msg], "published": published, "agreement": "Not tested: no benchmark rows to compare."}
    columns = list(rows[0].keys())
    if set(columns) >= _SCHEMA:
        findings, agreement = _structured(rows, out, cfg)
        return {"findings": findings, "published": published, "agreement": agreement}
    machine_col = _pick(columns, "machine", "cpu", "host")
    label_cols = [c for c in columns if _num(rows[0][c]) is None and c != machine_col][:3]
    value_col = _pick(columns, "ratio", "median", "_ms", "ms", "_us", "time")
    machines = sorted({r.get(machine_col, "") for r in rows}) if machine_col else ["not recorded in the CSV"]
    out.write_csv(
        "table",
        [dict(r) for r in progress(rows, desc=NAME)],
        f"Benchmark rows as recorded (machine: {'; '.join(machines)}).",
    )
    findings = [f"{len(rows)} benchmark rows from {path.name}, measured on: {'; '.join(machines)}."]
    agreement = "Not tested: the benchmark's columns do not include a ratio to the copy floor."
    if value_col:
        plt = matplotlib_agg()
        plotted = [r for r in rows if _num(r[value_col]) is not None][-cfg["max_rows_plotted"] :]
        labels = [" / ".join(r[c] for c in label_cols) or str(i) for i, r in enumerate(plotted)]
        values = [v for r in plotted if (v := _num(r[value_col])) is not None]
        fig, ax = plt.subplots(figsize=(9, max(2.5, 0.22 * len(plotted) + 1)))
        ax.barh(range(len(plotted)), values, color="#4c72b0")
        ax.set_yticks(range(len(plotted)), labels, fontsize=7)
        ax.invert_yaxis()
        ax.set(xlabel=value_col, title=f"apply_rotary benchmark ({machines[0][:60]})")
        out.save_figure(
            fig,
            "benchmark",
            f"{value_col} per benchmark row ({', '.join(label_cols)}), last "
            f"{len(plotted)} rows.\nRead from benchmarks/results/apply_rotary.csv; machine: "
            f"{'; '.join(machines)[:120]}.",
        )
        best = min(zip(values, labels, strict=True))
        findings.append(f"Smallest {value_col}: {best[0]:.3g} ({best[1]}).")
        if "ratio" in value_col.lower():
            within = sum(v <= 1.5 for v in values)
            agreement = (
                f"{'Agrees' if within else 'Disagrees'}: {within} of {len(values)} rows are within 1.5x of "
                "the floor, where the published peers' best reach 1.07-1.5x."
            )
    return {"findings": findings, "published": published, "agreement": agreement}
