"""Training checkpoints: safetensors + JSON only (nothing is unpickled), written atomically.

Layout of ``out_dir``::

    out_dir/ckpt/step-000120/model.safetensors      weights
    out_dir/ckpt/step-000120/optimizer.safetensors  AdamW moments and step counts ("state.<i>.<name>")
    out_dir/ckpt/step-000120/state.json             step, configs, task spec, history, sha256 of both files
    out_dir/latest.json                             {"step": 120, "path": "ckpt/step-000120"}  (renamed into place)

A step folder is written as ``step-000120.tmp<pid>`` and renamed when complete, then ``latest.json`` is replaced:
a kill at any moment leaves the previous checkpoint valid. ``state.json`` records file hashes, so a truncated or
edited file is reported as corrupt instead of loading garbage. The learning rate is a pure function of the step
and batches are a pure function of ``(seed, step)``, so there is no scheduler or data-loader state to save.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path
from typing import Any

import torch

from ropekit.models.io import CheckpointError, atomic_save_tensors, atomic_write_bytes, read_json, read_tensors

__all__ = ["latest_checkpoint", "load_checkpoint", "optimizer_from_tensors", "optimizer_to_tensors", "save_checkpoint"]


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


def save_checkpoint(
    out_dir: str | os.PathLike[str],
    step: int,
    model: torch.nn.Module,
    opt: torch.optim.Optimizer,
    state: dict[str, Any],
    keep: int = 2,
) -> Path:
    """Write the checkpoint of ``step`` and point ``latest.json`` at it; keep the newest ``keep`` step folders."""
    out = Path(out_dir)
    name = f"step-{step:06d}"
    final = out / "ckpt" / name
    tmp = out / "ckpt" / f"{name}.tmp{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    atomic_save_tensors(model.state_dict(), tmp / "model.safetensors")
    opt_tensors, groups = optimizer_to_tensors(opt)
    atomic_save_tensors(opt_tensors, tmp / "optimizer.safetensors")
    full = {
        **state,
        "step": step,
        "optimizer_param_groups": groups,
        "torch": torch.__version__,
        "sha256": {f: _sha256(tmp / f) for f in ("model.safetensors", "optimizer.safetensors")},
    }
    atomic_write_bytes(tmp / "state.json", json.dumps(full, indent=1).encode())
    if final.exists():
        shutil.rmtree(final)
    os.replace(tmp, final)
    atomic_write_bytes(out / "latest.json", json.dumps({"step": step, "path": f"ckpt/{name}"}).encode())
    old = sorted(p for p in (out / "ckpt").iterdir() if p.name.startswith("step-") and ".tmp" not in p.name)
    for p in old[:-keep] if keep > 0 else []:
        shutil.rmtree(p, ignore_errors=True)
    return final


def latest_checkpoint(out_dir: str | os.PathLike[str]) -> Path | None:
    """The folder ``latest.json`` points at, or ``None`` when ``out_dir`` has no checkpoint yet."""
    out = Path(out_dir)
    if not (out / "latest.json").exists():
        return None
    pointer = read_json(out / "latest.json")
    if "path" not in pointer:
        raise CheckpointError(f"{out / 'latest.json'} has no 'path'; it is corrupt")
    return out / pointer["path"]


def load_checkpoint(
    folder: str | os.PathLike[str],
) -> tuple[dict[str, Any], dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """``(state, model tensors, optimizer tensors)`` of a step folder, after checking the recorded hashes."""
    folder = Path(folder)
    state = read_json(folder / "state.json")
    for f, digest in state.get("sha256", {}).items():
        if not (folder / f).is_file():
            raise CheckpointError(f"checkpoint {folder} is missing {f}")
        if _sha256(folder / f) != digest:
            raise CheckpointError(
                f"checkpoint file {folder / f} is corrupt (sha256 differs from state.json); "
                f"delete {folder} and point latest.json at an earlier step, or start afresh"
            )
    return state, read_tensors(folder / "model.safetensors"), read_tensors(folder / "optimizer.safetensors")
