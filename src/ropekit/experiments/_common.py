"""Shared plumbing for experiments: output folders, CSV and figure writing, the section dict, progress bars.

Every experiment follows the protocol in ``docs/report.md``: ``run(preset, out_dir, *, seed)`` writes
``out_dir/results/<name>*.csv``, ``out_dir/figures/<name>_*.png`` and ``out_dir/sections/<name>.json`` and
returns the section dict built by :func:`make_section`.
"""

from __future__ import annotations

import csv
import json
import math
import os
import pathlib
import random
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, TypeVar

__all__ = [
    "Outputs",
    "agreement_text",
    "check_preset",
    "mean_std",
    "progress",
    "seed_everything",
    "verdict",
]

T = TypeVar("T")

# The report sets this to "0" in its worker processes so that parallel experiments do not draw
# interleaved bars; the report shows one line per experiment instead.
PROGRESS_ENV = "ROPEKIT_INNER_PROGRESS"


def progress(iterable: Iterable[T], *, desc: str, total: int | None = None) -> Iterable[T]:
    """``tqdm`` over ``iterable`` unless the report disabled inner bars (env ``ROPEKIT_INNER_PROGRESS=0``)."""
    from tqdm.auto import tqdm

    disable = os.environ.get(PROGRESS_ENV, "1") == "0"
    return tqdm(iterable, desc=desc, total=total, disable=disable, leave=False, dynamic_ncols=True)


def check_preset(name: str, presets: Mapping[str, Mapping[str, Any]], preset: str) -> dict[str, Any]:
    """The preset dict (a copy), or a ``ValueError`` naming the valid presets."""
    if preset not in presets:
        raise ValueError(f"experiment {name!r} has no preset {preset!r}; choose one of {sorted(presets)}")
    return dict(presets[preset])


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (CPU) from one integer."""
    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for a single value)."""
    n = len(values)
    if n == 0:
        return math.nan, math.nan
    m = sum(values) / n
    if n == 1:
        return m, 0.0
    return m, math.sqrt(sum((v - m) ** 2 for v in values) / (n - 1))


def verdict(n_agree: int, n_total: int) -> str:
    """``"Agrees"`` / ``"Partly agrees"`` / ``"Disagrees"`` / ``"Undecided"`` from counts of checked statements."""
    if n_total == 0:
        return "Undecided"
    if n_agree == n_total:
        return "Agrees"
    return "Partly agrees" if n_agree else "Disagrees"


def agreement_text(agrees: bool | None, measured: str, published: str) -> str:
    """One sentence: whether the measured statement agrees with the published one (decided by the caller's data)."""
    if agrees is None:
        return f"Undecided: {measured} (published: {published})."
    verdict = "Agrees" if agrees else "Disagrees"
    return f"{verdict}: measured {measured}; published: {published}."


class Outputs:
    """Paths and writers under one report folder for one experiment.

    ``out_dir/results/<name>_<table>.csv``, ``out_dir/figures/<name>_<figure>.png``,
    ``out_dir/sections/<name>.json``. Paths recorded in the section are relative to ``out_dir``.
    """

    def __init__(self, out_dir: pathlib.Path | str, name: str) -> None:
        self.root = pathlib.Path(out_dir)
        self.name = name
        for sub in ("results", "figures", "sections"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        self.figures: list[dict[str, str]] = []
        self.tables: list[dict[str, str]] = []

    def write_csv(self, table: str, rows: Sequence[Mapping[str, Any]], caption: str) -> str:
        """Write tidy ``rows`` (one measurement per row; all rows share the first row's keys) to a CSV."""
        if not rows:
            raise ValueError(f"{self.name}: table {table!r} has no rows; an experiment must measure something")
        columns = list(rows[0].keys())
        rel = f"results/{self.name}_{table}.csv"
        with open(self.root / rel, "w", newline="", encoding="utf-8") as fh:
            writer = csv.DictWriter(fh, fieldnames=columns)
            writer.writeheader()
            for row in rows:
                if list(row.keys()) != columns:
                    raise ValueError(f"{self.name}/{table}: row columns {list(row)} differ from {columns}")
                writer.writerow({k: _fmt(v) for k, v in row.items()})
        self.tables.append({"path": rel, "caption": caption})
        return rel

    def save_figure(self, fig: Any, figure: str, caption: str) -> str:
        """Save a matplotlib figure as PNG (dpi 110) and close it. ``caption``: what it shows / how measured."""
        import matplotlib.pyplot as plt

        rel = f"figures/{self.name}_{figure}.png"
        fig.savefig(self.root / rel, dpi=110, bbox_inches="tight")
        plt.close(fig)
        self.figures.append({"path": rel, "caption": caption})
        return rel

    def section(
        self,
        *,
        title: str,
        findings: list[str],
        published: str,
        agreement: str,
        config: Mapping[str, Any],
        seed: int,
        runtime_s: float,
        notes: list[str] | None = None,
    ) -> dict[str, Any]:
        """Build the section dict and write it to ``sections/<name>.json``."""
        section = {
            "name": self.name,
            "title": title,
            "figures": list(self.figures),
            "tables": list(self.tables),
            "findings": list(findings),
            "published": published,
            "agreement": agreement,
            "config": dict(config),
            "seed": seed,
            "runtime_s": round(runtime_s, 2),
            "notes": list(notes or []),
        }
        with open(self.root / "sections" / f"{self.name}.json", "w", encoding="utf-8") as fh:
            json.dump(section, fh, indent=2, default=str)
        return section


def _fmt(value: Any) -> Any:
    """Floats with 6 significant digits in CSVs; everything else as is."""
    if isinstance(value, float):
        return f"{value:.6g}"
    return value


def matplotlib_agg() -> Any:
    """``matplotlib.pyplot`` with the non-interactive Agg backend selected."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt
