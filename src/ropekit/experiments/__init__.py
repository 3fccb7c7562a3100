"""Experiments of ``ropekit report``: one module per section, each following the protocol in ``docs/report.md``.

``EXPERIMENTS`` is the registry the report runs, in report order. A module exposes ``NAME``, ``TITLE``,
``PRESETS`` (``tiny``/``quick``/``full``) and ``run(preset, out_dir, *, seed=0) -> dict``, the protocol function
decorated with :func:`ropekit.experiments._common.protocol` (see docs/report.md).
"""

from __future__ import annotations

import importlib
from types import ModuleType

__all__ = ["EXPERIMENTS", "experiment_names", "load_experiment"]

# Report order.
EXPERIMENTS: tuple[str, ...] = (
    "ropekit.experiments.analysis",
    "ropekit.experiments.order",
    "ropekit.experiments.classification",
    "ropekit.experiments.extrapolation",
    "ropekit.experiments.passkey",
    "ropekit.experiments.lengthgen",
    "ropekit.experiments.cope",
    "ropekit.experiments.vision",
    "ropekit.experiments.speed",
)


def experiment_names() -> list[str]:
    """Short names (``"analysis"``, ...) of the registered experiments, in report order."""
    return [path.rsplit(".", 1)[1] for path in EXPERIMENTS]


def load_experiment(name: str) -> ModuleType:
    """Import one experiment by short name; ``ValueError`` for unknown names, ``ImportError`` if not written yet."""
    paths = {path.rsplit(".", 1)[1]: path for path in EXPERIMENTS}
    if name not in paths:
        raise ValueError(f"unknown experiment {name!r}; choose one of {sorted(paths)}")
    module = importlib.import_module(paths[name])
    for attr in ("NAME", "TITLE", "PRESETS", "run"):
        if not hasattr(module, attr):
            raise ValueError(f"experiment module {paths[name]} lacks {attr!r} (see docs/report.md for the protocol)")
    return module
