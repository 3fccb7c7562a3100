"""Run the registered experiments (in parallel worker processes, one thread each) with a result cache.

The runner owns what every experiment shares: the preset lookup, one torch thread, seeding, timing, progress and
writing the section (:func:`run_protocol`); an experiment's ``run`` holds its protocol only.

Cache: ``DIR/cache/<name>.json`` holds the key and the section. The key hashes everything a result depends on:
experiment name, preset, seed, the preset's config, the ropekit version, and every source file the experiment
runs: the modules reachable from ``ropekit/experiments/<name>.py`` through ``import`` statements (anywhere in a
file, so imports inside functions count; found with :mod:`ast`, see :func:`source_files`), and the data files
(non-Python files) of every package reached, e.g. the bundled data of ``ropekit.data``. A hit also requires every
file the section lists to exist. ``force=True`` ignores the cache.
"""

from __future__ import annotations

import ast
import concurrent.futures as cf
import hashlib
import json
import multiprocessing
import os
import pathlib
import time
import traceback
from collections.abc import Callable, Sequence
from typing import Any

from ropekit.fileio import atomic_write

__all__ = ["ExperimentResult", "cache_key", "run_experiments", "run_protocol", "source_files"]

_PACKAGE_ROOT = pathlib.Path(__file__).resolve().parents[1]  # src/ropekit


class ExperimentResult(dict):
    """Section dict plus ``status`` (``ok``/``cached``/``failed``/``missing``)."""


def _module_file(module: str) -> pathlib.Path | None:
    """The file of ``ropekit.x.y`` inside this package (``.py`` or package ``__init__.py``), or None."""
    parts = module.split(".")
    if parts[0] != "ropekit":
        return None
    base = _PACKAGE_ROOT.joinpath(*parts[1:])
    for path in (base.with_suffix(".py"), base / "__init__.py"):
        if path.is_file():
            return path
    return None


def _imports(path: pathlib.Path, module: str) -> set[str]:
    """Absolute names of every ``ropekit`` module ``path`` imports (top level or inside functions)."""
    tree = ast.parse(path.read_bytes(), filename=str(path))
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, node.module] if node.module else anchor)
            else:
                base = node.module or ""
            found.add(base)
            found.update(f"{base}.{a.name}" for a in node.names)  # `from pkg import submodule`
    names: set[str] = set()
    for name in found:
        parts = name.split(".")
        names.update(".".join(parts[:i]) for i in range(1, len(parts) + 1))  # parents run their __init__
    return {n for n in names if n.startswith("ropekit")}


def source_files(name: str) -> list[pathlib.Path]:
    """Every package file ``ropekit.experiments.<name>`` can run: its import graph, plus package data files."""
    seen: dict[str, pathlib.Path] = {}
    todo = [f"ropekit.experiments.{name}"]
    while todo:
        module = todo.pop()
        if module in seen:
            continue
        path = _module_file(module)
        if path is None:
            continue
        seen[module] = path
        todo.extend(_imports(path, module) - seen.keys())
    files = set(seen.values())
    for path in seen.values():
        if path.name != "__init__.py":
            continue
        for f in path.parent.rglob("*"):  # data files of a reached package (not those of its subpackages)
            if f.is_file() and f.suffix not in (".py", ".pyc") and "__pycache__" not in f.parts:
                owner = next(p for p in f.parents if (p / "__init__.py").exists())
                if owner == path.parent:
                    files.add(f)
    return sorted(files)


def cache_key(
    name: str,
    preset: str,
    seed: int,
    config: dict[str, Any],
    inputs: Sequence[pathlib.Path] = (),
    *,
    device: str = "cpu",
) -> str:
    """sha256 over name, preset, seed, config, device, ropekit version, :func:`source_files` and ``inputs``.

    ``inputs``: data files an experiment reads that are not part of the package (its optional
    ``cache_inputs()`` hook, e.g. the benchmark CSV of the speed section).
    """
    from ropekit import __version__

    h = hashlib.sha256()
    h.update(json.dumps([name, preset, seed, config, device, __version__], sort_keys=True, default=str).encode())
    for path in source_files(name):
        h.update(str(path.relative_to(_PACKAGE_ROOT)).encode())
        h.update(path.read_bytes())
    for path in inputs:
        h.update(str(path).encode())
        h.update(pathlib.Path(path).read_bytes())
    return h.hexdigest()


def run_protocol(
    measure: Callable[..., dict[str, Any]], preset: str, out_dir: pathlib.Path, *, seed: int = 0, device: str = "cpu"
) -> dict[str, Any]:
    """Run one experiment's protocol ``measure(cfg, out, *, seed)`` with the shared boilerplate; return its section.

    Looks the preset up in the module's ``PRESETS`` (``ValueError`` naming the valid ones), uses one torch thread,
    seeds Python/NumPy/torch from ``seed``, trains on ``device`` (:func:`~ropekit.experiments._common.run_device`),
    times the call and writes ``sections/<NAME>.json`` via :meth:`Outputs.section`.
    """
    import sys

    import torch

    from ropekit.experiments._common import Outputs, check_preset, running_on, seed_everything

    module = sys.modules[measure.__module__]
    cfg = check_preset(module.NAME, module.PRESETS, preset)
    torch.set_num_threads(1)
    seed_everything(seed)
    start = time.perf_counter()
    out = Outputs(out_dir, module.NAME)
    with running_on(device):
        body = measure(cfg, out, seed=seed)
    runtime = time.perf_counter() - start
    return out.section(title=module.TITLE, config=cfg, seed=seed, runtime_s=runtime, device=device, **body)


def _cached(out_dir: pathlib.Path, name: str, key: str) -> dict[str, Any] | None:
    path = out_dir / "cache" / f"{name}.json"
    if not path.exists():
        return None
    try:
        entry = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None
    section = entry.get("section") if entry.get("key") == key else None
    if not section:
        return None
    paths = [f["path"] for f in section.get("figures", [])] + [t["path"] for t in section.get("tables", [])]
    if not all((out_dir / p).exists() for p in paths):
        return None
    return section


def _worker(name: str, preset: str, out_dir: str, seed: int, device: str = "cpu") -> dict[str, Any]:
    """Run one experiment in this (worker) process. Returns the section, or a failure record."""
    os.environ.setdefault("ROPEKIT_INNER_PROGRESS", "0")
    from ropekit.experiments import load_experiment
    from ropekit.kernels.backend import current_backend, use_backend

    # The models are tiny, so the compiled rotary kernel gains nothing here, while its first build costs 30-60 s
    # per fresh machine: use the pure-PyTorch backend unless the user chose one with ROPEKIT_BACKEND.
    backend = current_backend() if os.environ.get("ROPEKIT_BACKEND") else "eager"
    start = time.perf_counter()
    try:
        module = load_experiment(name)
        with use_backend(backend):
            section = module.run(preset, pathlib.Path(out_dir), seed=seed, device=device)
        return {**section, "status": "ok", "rotary_backend": backend}
    except Exception as e:  # one failed experiment must not sink the whole report
        return {
            "name": name,
            "title": name,
            "status": "failed",
            "error": f"{type(e).__name__}: {e}",
            "traceback": traceback.format_exc(limit=6),
            "runtime_s": round(time.perf_counter() - start, 2),
        }


def _missing(name: str, error: str) -> ExperimentResult:
    return ExperimentResult(name=name, title=name, status="missing", error=error, runtime_s=0.0)


def run_experiments(
    names: Sequence[str],
    preset: str,
    out_dir: pathlib.Path,
    *,
    seed: int = 0,
    force: bool = False,
    workers: int = 2,
    log: Any = print,
    device: str = "cpu",
) -> list[ExperimentResult]:
    """Run experiments by short name; reuse cached results; return results in the order of ``names``.

    ``workers=1`` runs in this process (no subprocesses); otherwise a spawn pool of ``workers`` processes,
    each with one torch thread, takes experiments longest-first (by last recorded runtime).
    """
    from ropekit.experiments import load_experiment

    out_dir = pathlib.Path(out_dir)
    (out_dir / "cache").mkdir(parents=True, exist_ok=True)
    results: dict[str, ExperimentResult] = {}
    todo: list[tuple[str, str]] = []
    for name in names:
        try:
            module = load_experiment(name)
        except ImportError as e:
            results[name] = _missing(name, f"module not available yet ({e})")
            log(f"[missing] {name}: {e}")
            continue
        if preset not in module.PRESETS:
            results[name] = _missing(name, f"no preset {preset!r} (has {sorted(module.PRESETS)})")
            continue
        inputs = module.cache_inputs() if hasattr(module, "cache_inputs") else []
        key = cache_key(name, preset, seed, module.PRESETS[preset], inputs, device=device)
        hit = None if force else _cached(out_dir, name, key)
        if hit is not None:
            results[name] = ExperimentResult(hit, status="cached")
            log(f"[cached] {name} ({hit.get('runtime_s', 0):.1f} s when computed)")
        else:
            todo.append((name, key))

    def finish(name: str, key: str, section: dict[str, Any]) -> None:
        results[name] = ExperimentResult(section)
        if section.get("status") == "ok":
            entry = {"key": key, "section": {k: v for k, v in section.items() if k != "status"}}
            atomic_write(out_dir / "cache" / f"{name}.json", json.dumps(entry, default=str).encode("utf-8"))
            log(f"[done]   {name} in {section.get('runtime_s', 0):.1f} s")
        else:
            log(f"[FAILED] {name}: {section.get('error')}")

    todo.sort(key=lambda nk: -_last_runtime(out_dir, nk[0]))
    if todo:
        log(
            f"[run]    {len(todo)} experiment(s) in {min(workers, len(todo))} process(es), longest first: "
            + ", ".join(name for name, _ in todo)
        )
    from tqdm.auto import tqdm

    bar = tqdm(total=len(todo), desc=f"report ({preset})", unit="exp", disable=not todo, dynamic_ncols=True)
    if workers <= 1 or len(todo) <= 1:
        for name, key in todo:
            bar.set_postfix_str(name)
            finish(name, key, _worker(name, preset, str(out_dir), seed, device))
            bar.update()
    else:
        ctx = multiprocessing.get_context("spawn")
        with cf.ProcessPoolExecutor(max_workers=workers, mp_context=ctx) as pool:
            futures = {
                pool.submit(_worker, name, preset, str(out_dir), seed, device): (name, key) for name, key in todo
            }
            for fut in cf.as_completed(futures):
                name, key = futures[fut]
                try:
                    section = fut.result()
                except Exception as e:  # the worker process itself died
                    section = {"name": name, "title": name, "status": "failed", "error": repr(e), "runtime_s": 0.0}
                finish(name, key, section)
                bar.update()
    bar.close()
    for name, _ in todo:
        _record_runtime(out_dir, name, float(results[name].get("runtime_s", 0.0)))
    return [results[n] for n in names]


def _runtimes_path(out_dir: pathlib.Path) -> pathlib.Path:
    return out_dir / "cache" / "runtimes.json"


# First-run scheduling guess (seconds, quick preset) until a runtime has been recorded.
_DEFAULT_RUNTIME = {
    "passkey": 200.0,
    "order": 200.0,
    "extrapolation": 150.0,
    "classification": 100.0,
    "lengthgen": 100.0,
    "vision": 80.0,
}


def _last_runtime(out_dir: pathlib.Path, name: str) -> float:
    try:
        return float(json.loads(_runtimes_path(out_dir).read_text())[name])
    except (OSError, ValueError, KeyError):
        return _DEFAULT_RUNTIME.get(name, 1.0)


def _record_runtime(out_dir: pathlib.Path, name: str, seconds: float) -> None:
    path = _runtimes_path(out_dir)
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        data = {}
    data[name] = seconds
    atomic_write(path, json.dumps(data, indent=1).encode("utf-8"))
