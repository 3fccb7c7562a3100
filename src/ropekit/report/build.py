"""Assemble the report: run every registered experiment, then write ``index.html`` and ``report.json``."""

from __future__ import annotations

import datetime as _dt
import json
import os
import pathlib
import platform
import subprocess
import time
from collections.abc import Sequence
from typing import Any

from ropekit.report.html import render_page
from ropekit.report.runner import run_experiments

__all__ = ["build_report", "machine_info"]


def _cpu_model() -> str:
    try:
        for line in pathlib.Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _git_commit() -> str:
    root = pathlib.Path(__file__).resolve().parents[3]
    try:
        out = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        )
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def machine_info() -> dict[str, str]:
    """Machine, OS and versions of everything that shapes the numbers."""
    import matplotlib
    import numpy
    import torch

    import ropekit

    return {
        "machine": f"{_cpu_model()}, {os.cpu_count()} logical cores, {platform.machine()}",
        "os": platform.platform(),
        "python": platform.python_version(),
        "torch": f"{torch.__version__} (threads per experiment: 1)",
        "numpy": numpy.__version__,
        "matplotlib": matplotlib.__version__,
        "ropekit": f"{ropekit.__version__} (git {_git_commit()})",
    }


def build_report(
    out_dir: str | os.PathLike[str] = "report",
    *,
    preset: str = "quick",
    seed: int = 0,
    only: Sequence[str] | None = None,
    workers: int = 2,
    force: bool = False,
    log: Any = print,
) -> pathlib.Path:
    """Run (or reuse) the experiments and write ``out_dir/index.html``; returns its path.

    Args:
        out_dir: report folder (created); holds ``index.html``, ``report.json``, ``results/``, ``figures/``,
            ``sections/`` and ``cache/``.
        preset: ``tiny``, ``quick`` or ``full`` (each experiment's ``PRESETS`` entry).
        only: short experiment names to run (default: all registered, in report order).
        workers: parallel worker processes (one torch thread each); 1 runs in this process.
        force: ignore cached results.
    """
    from ropekit.experiments import experiment_names

    names = list(only) if only else experiment_names()
    unknown = sorted(set(names) - set(experiment_names()))
    if unknown:
        raise ValueError(f"unknown experiment(s) {unknown}; choose from {experiment_names()}")
    root = pathlib.Path(out_dir)
    root.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    sections = run_experiments(names, preset, root, seed=seed, force=force, workers=workers, log=log)
    wall = time.perf_counter() - start
    meta = {
        "preset": preset,
        "seed": str(seed),
        "generated (UTC)": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S"),
        "wall time of this run (s)": f"{wall:.1f} with {workers} worker process(es)",
        "experiments": ", ".join(f"{s['name']}: {s.get('status')}" for s in sections),
        **machine_info(),
    }
    page = render_page(root, sections, meta)
    (root / "index.html").write_text(page, encoding="utf-8")
    (root / "report.json").write_text(
        json.dumps({"meta": meta, "sections": sections}, indent=2, default=str), encoding="utf-8"
    )
    return root / "index.html"
