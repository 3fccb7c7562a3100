"""``ropekit report``: run the experiments, cache their results, and assemble ``DIR/index.html``.

Public entry point: :func:`build_report`. The runner (:mod:`ropekit.report.runner`) runs experiments
in worker processes with a result cache; :mod:`ropekit.report.html` renders the page; the machine and
version record comes from :func:`machine_info`.
"""

from ropekit.report.build import build_report, machine_info
from ropekit.report.runner import cache_key, run_experiments

__all__ = ["build_report", "cache_key", "machine_info", "run_experiments"]
