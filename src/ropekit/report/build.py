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

from ropekit.fileio import atomic_write
from ropekit.report.html import render_page
from ropekit.report.runner import run_experiments

__all__ = ["build_report", "machine_info", "summary_figure"]


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


def summary_figure(root: pathlib.Path, sections: Sequence[dict[str, Any]]) -> str | None:
    """``figures/summary.png``: each encoding's score per task, normalised per task to 0 (worst, or chance when the
    task states it) .. 1 (best), from the sections' ``scores``; raw values printed in the cells. None if no scores."""
    import math

    import numpy as np

    from ropekit.experiments._common import matplotlib_agg

    tasks = [t for s in sections if s.get("status") in ("ok", "cached") for t in s.get("scores") or []]
    if not tasks:
        return None
    encodings = list(dict.fromkeys(k for t in tasks for k in t["values"]))
    grid = np.full((len(encodings), len(tasks)), math.nan)  # [E, K] normalised
    raw = np.full_like(grid, math.nan)
    for j, t in enumerate(tasks):
        vals = {k: float(v) for k, v in t["values"].items() if v is not None and math.isfinite(float(v))}
        if not vals:
            continue
        sign = 1.0 if t.get("higher_is_better", True) else -1.0
        best = max(sign * v for v in vals.values())
        worst = min(sign * v for v in vals.values())
        if t.get("chance") is not None and sign > 0:
            worst = min(worst, float(t["chance"]))
        for k, v in vals.items():
            i = encodings.index(k)
            raw[i, j] = v
            grid[i, j] = (sign * v - worst) / (best - worst) if best > worst else 1.0
    plt = matplotlib_agg()
    fig, ax = plt.subplots(figsize=(1.9 * len(tasks) + 3, 0.42 * len(encodings) + 1.6))
    im = ax.imshow(np.ma.masked_invalid(grid), cmap="viridis", vmin=0, vmax=1, aspect="auto")
    for (i, j), v in np.ndenumerate(raw):
        if math.isfinite(v):
            ax.text(
                j, i, f"{v:.3f}", ha="center", va="center", fontsize=7, color="white" if grid[i, j] < 0.6 else "black"
            )
    ax.set_xticks(range(len(tasks)), [t["task"] for t in tasks], rotation=20, ha="right", fontsize=8)
    ax.set_yticks(range(len(encodings)), encodings, fontsize=8)
    fig.colorbar(im, ax=ax, label="normalised score (1 = best on the task)")
    (root / "figures").mkdir(parents=True, exist_ok=True)
    fig.savefig(root / "figures" / "summary.png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return "figures/summary.png"


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
    device: str = "cpu",
) -> pathlib.Path:
    """Run (or reuse) the experiments and write ``out_dir/index.html``; returns its path.

    Args:
        out_dir: report folder (created); holds ``index.html``, ``report.json``, ``results/``, ``figures/``,
            ``sections/`` and ``cache/``.
        preset: ``tiny``, ``quick`` or ``full`` (each experiment's ``PRESETS`` entry).
        only: short experiment names to run (default: all registered, in report order).
        workers: parallel worker processes (one torch thread each); 1 runs in this process.
        force: ignore cached results.
        device: where the experiments train (``"cpu"`` or ``"cuda"``; checked before anything runs). Part of the
            cache key.
    """
    from ropekit.experiments import experiment_names

    names = list(only) if only else experiment_names()
    unknown = sorted(set(names) - set(experiment_names()))
    if unknown:
        raise ValueError(f"unknown experiment(s) {unknown}; choose from {experiment_names()}")
    from ropekit.train.device import resolve_device

    resolve_device(device)  # a CUDA device without CUDA is refused here, not in every worker
    root = pathlib.Path(out_dir)
    root.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    sections = run_experiments(
        names, preset, root, seed=seed, force=force, workers=workers, log=log, device=device
    )
    wall = time.perf_counter() - start
    meta = {
        "preset": preset,
        "seed": str(seed),
        "device": device,
        "generated (UTC)": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S"),
        "wall time of this run (s)": f"{wall:.1f} with {workers} worker process(es)",
        "experiments": ", ".join(f"{s['name']}: {s.get('status')}" for s in sections),
        **machine_info(),
    }
    page = render_page(root, sections, meta, summary=summary_figure(root, sections))
    atomic_write(root / "report.json", json.dumps({"meta": meta, "sections": sections}, indent=2, default=str).encode())
    atomic_write(root / "index.html", page.encode("utf-8"))  # last: the page appears only when complete
    return root / "index.html"
