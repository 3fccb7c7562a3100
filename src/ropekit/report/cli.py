"""``ropekit report`` and ``ropekit experiment NAME``: register both subcommands (imports stay cheap)."""

from __future__ import annotations

import argparse
import json
import os
import pathlib

__all__ = ["register"]

_PRESETS = ("tiny", "quick", "full", "gpu")
_DEVICE = (
    "where the experiments train: cpu (default) or cuda; the gpu preset sizes the models for one GPU "
    "(same protocol, about 100x the parameters of quick)"
)
REPORT_ENTRIES = ("index.html", "report.json", "results", "figures", "sections", "cache")
"""What ``ropekit report`` and ``ropekit experiment`` write into ``--out`` (and all that ``--overwrite`` removes)."""


def _written_by_report(folder: pathlib.Path) -> bool:
    """A report folder from before ownership markers: its ``report.json`` or its experiments' ``cache/``."""
    try:
        data = json.loads((folder / "report.json").read_text())
        return isinstance(data, dict) and "sections" in data
    except (OSError, ValueError):
        return (folder / "cache").is_dir() and (folder / "sections").is_dir()


def claim_report_folder(out: str | os.PathLike[str], *, overwrite: bool = False) -> None:
    """``--out`` must be new, empty or a report folder (:func:`ropekit.fileio.claim_output_folder`)."""
    from ropekit.fileio import claim_output_folder

    claim_output_folder(out, command="report", entries=REPORT_ENTRIES, overwrite=overwrite, adopt=_written_by_report)


def _report(args: argparse.Namespace) -> int:
    from ropekit.report.build import build_report

    only = [s for s in (args.only or "").split(",") if s] or None
    if args.workers < 1:
        raise ValueError(f"--workers must be >= 1, got {args.workers}")
    from ropekit.experiments import experiment_names

    unknown = sorted(set(only or []) - set(experiment_names()))
    if unknown:
        raise ValueError(f"--only names unknown experiment(s) {unknown}; choose from {experiment_names()}")
    from ropekit.train.device import resolve_device

    resolve_device(args.device)  # before the folder is claimed
    claim_report_folder(args.out, overwrite=args.overwrite)
    path = build_report(
        args.out,
        preset=args.preset,
        seed=args.seed,
        only=only,
        workers=args.workers,
        force=args.force,
        device=args.device,
    )
    sections = json.loads((path.parent / "report.json").read_text())["sections"]
    bad = [s["name"] for s in sections if s.get("status") == "failed"]
    n_fig = sum(len(s.get("figures", []) or []) for s in sections)
    print(f"wrote {path} ({len(sections)} experiments, {n_fig} figures)")
    if bad:
        print(f"failed experiments: {', '.join(bad)} (see the report)")
    return 1 if bad else 0


def _experiment(args: argparse.Namespace) -> int:
    from ropekit.report.runner import run_experiments
    from ropekit.train.device import resolve_device

    resolve_device(args.device)  # before the folder is claimed
    claim_report_folder(args.out, overwrite=args.overwrite)
    os.environ.setdefault("ROPEKIT_INNER_PROGRESS", "1")  # in-process: show the experiment's own bars
    out = pathlib.Path(args.out)
    section = run_experiments(
        [args.name], args.preset, out, seed=args.seed, force=args.force, workers=1, device=args.device
    )[0]
    if section.get("status") in ("failed", "missing"):
        print(f"{args.name}: {section.get('status')}: {section.get('error')}")
        return 1
    for finding in section.get("findings", []):
        print(f"- {finding}")
    print(f"agreement: {section.get('agreement')}")
    print(
        f"wrote {out / 'sections' / (args.name + '.json')}, its figures and results/{args.name}_*.csv "
        f"(run `ropekit report --out {out}` for the page)"
    )
    return 0


_OVERWRITE = (
    "start the report folder afresh: remove what ropekit wrote there before (index.html, report.json, results/, "
    "figures/, sections/, cache/), nothing else. A folder ropekit did not write is always refused"
)


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``report`` and ``experiment`` to the ``ropekit`` command."""
    from ropekit.experiments import experiment_names

    p = subparsers.add_parser(
        "report",
        help="run all experiments and write an HTML report",
        description="Run every experiment (cached) and write DIR/index.html with figures, tables and results/*.csv.",
    )
    p.add_argument("--preset", choices=_PRESETS, default="quick", help="experiment size (default: quick, <= 10 min)")
    p.add_argument(
        "--out", default="report", help="output folder: new, empty or an earlier report's (default: report/)"
    )
    p.add_argument("--seed", type=int, default=0, help="base seed (default 0)")
    p.add_argument("--workers", type=int, default=2, help="parallel worker processes, one thread each (default 2)")
    p.add_argument("--only", default="", help="comma-separated experiment names (default: all)")
    p.add_argument("--force", action="store_true", help="recompute even when cached results are up to date")
    p.add_argument("--overwrite", action="store_true", help=_OVERWRITE)
    p.add_argument("--device", default="cpu", help=_DEVICE)
    p.set_defaults(func=_report)

    e = subparsers.add_parser(
        "experiment",
        help="run one experiment of the report",
        description="Run one experiment (cached like the report) and write its CSVs, figures and "
        "section JSON under DIR; index.html is left to `ropekit report`.",
    )
    e.add_argument("name", choices=experiment_names(), help="experiment name")
    e.add_argument("--preset", choices=_PRESETS, default="quick", help="experiment size (default: quick)")
    e.add_argument("--out", default="report", help="output folder (default: report/)")
    e.add_argument("--seed", type=int, default=0, help="base seed (default 0)")
    e.add_argument("--force", action="store_true", help="recompute even when cached")
    e.add_argument("--overwrite", action="store_true", help=_OVERWRITE)
    e.add_argument("--device", default="cpu", help=_DEVICE)
    e.set_defaults(func=_experiment)
