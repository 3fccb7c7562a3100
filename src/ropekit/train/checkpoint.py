"""Training checkpoints: safetensors + JSON only (nothing is unpickled), written atomically.

Layout of ``out_dir``::

    out_dir/ckpt/step-000120/model.safetensors      weights
    out_dir/ckpt/step-000120/optimizer.safetensors  AdamW moments and step counts ("state.<i>.<name>")
    out_dir/ckpt/step-000120/state.json             step, configs, task spec, history, sha256 of both files
    out_dir/latest.json                             {"step": 120, "path": "ckpt/step-000120"}  (renamed into place)

A step folder is written as ``step-000120.tmp<pid>`` (every file fsynced) and renamed when complete, then
``latest.json`` is replaced: a kill or power cut at any moment leaves the previous checkpoint valid, and a damaged
latest checkpoint falls back to the newest intact one. Each file records the run id of the folder's marker
(:func:`claim_run_folder`), so a file of an earlier run in the same folder is an error, never silently loaded.
``state.json`` records file hashes, so a truncated or edited file is reported as corrupt instead of loading garbage.
The learning rate is a pure function of the step and batches are a pure function of ``(seed, step)``, so there
is no scheduler or data-loader state to save.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
from pathlib import Path
from typing import Any

import torch

from ropekit.fileio import atomic_write, claim_output_folder, fsync_dir, read_marker, run_id_of
from ropekit.models.io import RUN_ID_KEY, CheckpointError, atomic_save_tensors, check_run_file, read_json, read_tensors

__all__ = [
    "RUN_ENTRIES",
    "claim_run_folder",
    "latest_checkpoint",
    "load_checkpoint",
    "optimizer_from_tensors",
    "optimizer_to_tensors",
    "save_checkpoint",
]


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def optimizer_to_tensors(opt: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], list[dict[str, Any]]]:
    """Optimizer state as flat tensors ``state.<param index>.<name>`` plus JSON-able param groups."""
    sd = opt.state_dict()
    tensors = {}
    for idx, st in sd["state"].items():
        for name, value in st.items():
            t = value if isinstance(value, torch.Tensor) else torch.tensor(value)
            tensors[f"state.{idx}.{name}"] = t
    groups = [{k: v for k, v in g.items()} for g in sd["param_groups"]]
    return tensors, groups


def optimizer_from_tensors(
    opt: torch.optim.Optimizer, tensors: dict[str, torch.Tensor], groups: list[dict[str, Any]]
) -> None:
    state: dict[int, dict[str, torch.Tensor]] = {}
    for key, t in tensors.items():
        _, idx, name = key.split(".", 2)
        state.setdefault(int(idx), {})[name] = t
    try:
        opt.load_state_dict({"state": state, "param_groups": groups})
    except (ValueError, KeyError) as e:
        raise CheckpointError(f"optimizer state does not match the model's parameters ({e})") from None


RUN_ENTRIES = ("config.json", "model.safetensors", "metrics.json", "tokenizer.json", "latest.json", "ckpt")
"""What a training run writes into its ``out_dir`` (and all that ``--overwrite`` removes)."""


def _written_by_train(folder: Path) -> bool:
    """A run folder from before ownership markers: ``config.json`` with the model/train/task records."""
    try:
        meta = json.loads((folder / "config.json").read_text())
    except (OSError, ValueError):
        return False
    return isinstance(meta, dict) and {"model", "train", "task"} <= set(meta)


def claim_run_folder(out_dir: str | os.PathLike[str], *, resume: bool = False, overwrite: bool = False) -> str:
    """Make ``out_dir`` this run's folder (:func:`ropekit.fileio.claim_output_folder`) and return its run id.

    A new run needs an absent or empty folder, or a run folder of ``ropekit train`` with ``overwrite`` (which
    removes exactly :data:`RUN_ENTRIES`, so the run starts empty with a fresh run id); ``resume`` keeps the run."""
    if resume and overwrite:
        raise ValueError("--resume and --overwrite contradict each other: continue the run, or start it afresh")
    marker = claim_output_folder(
        out_dir, command="train", entries=RUN_ENTRIES, overwrite=overwrite, adopt=_written_by_train
    )
    return str(marker["run_id"])


def _step_of(p: Path) -> int | None:
    try:
        return int(p.name.removeprefix("step-")) if p.name.startswith("step-") and p.name[5:].isdigit() else None
    except ValueError:
        return None


def save_checkpoint(
    out_dir: str | os.PathLike[str],
    step: int,
    model: torch.nn.Module,
    opt: torch.optim.Optimizer,
    state: dict[str, Any],
    keep: int = 2,
) -> Path:
    """Write the checkpoint of ``step`` and point ``latest.json`` at it; keep the newest ``keep`` step folders.

    Every file is fsynced, then the step folder is renamed into place and ``ckpt/`` fsynced, then ``latest.json``
    is replaced. Leftover ``*.tmp<pid>`` folders of a killed writer are removed first. Pruning keeps the newest
    ``keep`` steps up to ``step``; step folders past ``step`` are an abandoned run's (``--overwrite``, or a resume
    from an older intact checkpoint) and are removed, so they can never sort after this run's newest."""
    out = Path(out_dir)
    ckpt = out / "ckpt"
    ckpt.mkdir(parents=True, exist_ok=True)
    for p in ckpt.iterdir():
        if ".tmp" in p.name and p.is_dir():  # a writer killed mid-save (this process writes only its own)
            shutil.rmtree(p, ignore_errors=True)
    for p in out.iterdir():  # atomic_write's temporaries (".config.json.<random>.tmp") of a killed writer
        if p.name.startswith(".") and p.name.endswith(".tmp") and p.is_file():
            p.unlink(missing_ok=True)
    name = f"step-{step:06d}"
    final = ckpt / name
    tmp = ckpt / f"{name}.tmp{os.getpid()}"
    tmp.mkdir()
    run_id = run_id_of(out)
    meta = {RUN_ID_KEY: run_id} if run_id else None
    atomic_save_tensors(model.state_dict(), tmp / "model.safetensors", meta)
    opt_tensors, groups = optimizer_to_tensors(opt)
    atomic_save_tensors(opt_tensors, tmp / "optimizer.safetensors", meta)
    full = {
        **state,
        "step": step,
        "run_id": run_id,
        "optimizer_param_groups": groups,
        "torch": torch.__version__,
        "sha256": {f: _sha256(tmp / f) for f in ("model.safetensors", "optimizer.safetensors")},
    }
    atomic_write(tmp / "state.json", json.dumps(full, indent=1).encode())
    if final.exists():
        shutil.rmtree(final)
    os.replace(tmp, final)
    fsync_dir(ckpt)
    atomic_write(out / "latest.json", json.dumps({"step": step, "path": f"ckpt/{name}"}).encode())
    steps = sorted((s, p) for p in ckpt.iterdir() if (s := _step_of(p)) is not None)
    stale = [p for s, p in steps if s > step]
    kept = [p for s, p in steps if s <= step]
    for p in stale + (kept[:-keep] if keep > 0 else []):
        shutil.rmtree(p, ignore_errors=True)
    return final


def _intact(folder: Path) -> str | None:
    """Why the step folder is not a usable checkpoint, or ``None`` when its files match ``state.json``."""
    try:
        state = read_json(folder / "state.json")
        for f, digest in state.get("sha256", {}).items():
            if not (folder / f).is_file() or _sha256(folder / f) != digest:
                return f"{f} is missing or differs from its sha256 in state.json"
    except (CheckpointError, OSError) as e:
        return str(e)
    return None


def latest_checkpoint(out_dir: str | os.PathLike[str]) -> Path | None:
    """The newest intact checkpoint of ``out_dir``, or ``None`` when it has none.

    Normally the folder ``latest.json`` points at. When that pointer or its folder is damaged (a power cut, a
    truncated file), the newest step folder whose files match their recorded hashes is used instead, with a
    message on stderr; :class:`CheckpointError` when the run has checkpoints but none is intact."""
    out = Path(out_dir)
    pointer_file = out / "latest.json"
    steps = (
        sorted(
            ((s, p) for p in (out / "ckpt").iterdir() if (s := _step_of(p)) is not None and p.is_dir()), reverse=True
        )
        if (out / "ckpt").is_dir()
        else []
    )
    if not pointer_file.exists() and not steps:
        return None
    problem = None
    try:
        pointer = read_json(pointer_file)
        if not isinstance(pointer.get("path"), str):
            raise CheckpointError(f"{pointer_file} has no 'path'; it is corrupt")
        target = out / pointer["path"]
        problem = _intact(target)
        if problem is None:
            return target
        problem = f"{target}: {problem}"
    except CheckpointError as e:
        problem = str(e)
    for _, p in steps:
        if _intact(p) is None:
            print(f"ropekit: the latest checkpoint is damaged ({problem}); using {p}", file=sys.stderr)
            return p
    raise CheckpointError(
        f"{out} has no intact checkpoint ({problem}); start afresh with --overwrite or use another folder"
    )


def load_checkpoint(
    folder: str | os.PathLike[str],
) -> tuple[dict[str, Any], dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """``(state, model tensors, optimizer tensors)`` of a step folder, after checking the recorded hashes."""
    folder = Path(folder)
    state = read_json(folder / "state.json")
    run = folder.parent.parent
    marker = read_marker(run) or {}
    legacy = state.get("run_id") is None and marker.get("adopted")  # written before run ids existed
    if run_id_of(run) is not None and state.get("run_id") != run_id_of(run) and not legacy:
        raise CheckpointError(
            f"checkpoint {folder} belongs to run {state.get('run_id')}, not to the run in {run} "
            f"({run_id_of(run)}); it is left over from an earlier run: start afresh with --overwrite"
        )
    check_run_file(folder / "model.safetensors", run, state.get("run_id"))
    for f, digest in state.get("sha256", {}).items():
        if not (folder / f).is_file():
            raise CheckpointError(f"checkpoint {folder} is missing {f}")
        if _sha256(folder / f) != digest:
            raise CheckpointError(
                f"checkpoint file {folder / f} is corrupt (sha256 differs from state.json); "
                f"delete {folder} and point latest.json at an earlier step, or start afresh"
            )
    return state, read_tensors(folder / "model.safetensors"), read_tensors(folder / "optimizer.safetensors")
