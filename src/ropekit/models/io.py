"""Save and load a model as ``config.json`` + ``model.safetensors`` (no pickle anywhere).

Both files are written to a temporary name in the same folder and renamed into place, so a reader never sees a
half-written file. Loading checks that the tensors match the config and says which keys differ.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from ropekit.models.transformer import ModelConfig, build_model

__all__ = ["CheckpointError", "atomic_write_bytes", "load_model", "load_state_checked", "save_model"]


class CheckpointError(ValueError):
    """A checkpoint is missing, corrupt, or does not match the model it is loaded into."""


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    """Write ``data`` to ``path`` via ``path.tmp`` + ``os.replace`` (atomic on POSIX)."""
    path = Path(path)
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def atomic_save_tensors(
    tensors: dict[str, torch.Tensor], path: str | os.PathLike[str], metadata: dict[str, str] | None = None
) -> None:
    """``safetensors`` file written atomically (tensors made contiguous, detached, on CPU)."""
    path = Path(path)
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    save_file({k: v.detach().cpu().contiguous() for k, v in tensors.items()}, str(tmp), metadata=metadata)
    os.replace(tmp, path)


def read_tensors(path: str | os.PathLike[str]) -> dict[str, torch.Tensor]:
    """Load a safetensors file, turning every failure into a :class:`CheckpointError` naming the file."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(
            f"checkpoint file {path} does not exist; check the path (expected a folder written "
            f"by ropekit with config.json and model.safetensors)"
        )
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError, RuntimeError) as e:
        raise CheckpointError(
            f"checkpoint file {path} is corrupt or not a safetensors file ({e}); "
            f"re-create it or resume from an earlier checkpoint"
        ) from None


def read_json(path: str | os.PathLike[str]) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint file {path} does not exist")
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CheckpointError(f"checkpoint file {path} is not valid JSON ({e}); it is corrupt") from None
    if not isinstance(data, dict):
        raise CheckpointError(f"checkpoint file {path} should hold a JSON object, got {type(data).__name__}")
    return data


def load_state_checked(model: torch.nn.Module, state: dict[str, torch.Tensor], source: str) -> None:
    """``model.load_state_dict(state)`` with an error that lists missing, unexpected and mis-shaped tensors."""
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    shapes = [
        f"{k}: checkpoint {tuple(state[k].shape)} vs model {tuple(own[k].shape)}"
        for k in sorted(set(own) & set(state))
        if own[k].shape != state[k].shape
    ]
    if missing or unexpected or shapes:
        raise CheckpointError(
            f"checkpoint {source} does not match the model: missing {missing[:5]}, unexpected "
            f"{unexpected[:5]}, shape mismatches {shapes[:5]}; build the model from the "
            f"checkpoint's own config.json (ropekit.models.load_model) or use matching options"
        )
    model.load_state_dict(state)


def save_model(model: torch.nn.Module, folder: str | os.PathLike[str]) -> Path:
    """Write ``folder/config.json`` and ``folder/model.safetensors`` for a model built by ``build_model``."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    atomic_save_tensors(model.state_dict(), folder / "model.safetensors")
    atomic_write_bytes(folder / "config.json", json.dumps(model.config.to_dict(), indent=2).encode())
    return folder


def load_model(folder: str | os.PathLike[str], map_location: str | torch.device = "cpu") -> torch.nn.Module:
    """Rebuild the model from ``folder/config.json`` and load ``folder/model.safetensors`` into it (eval mode).

    ``folder``: written by :func:`save_model`; a finished training run's ``out_dir``; one of its checkpoint step
    folders (config from ``state.json``); or an unfinished run's ``out_dir`` (its latest checkpoint)."""
    folder = Path(folder)
    if not (folder / "model.safetensors").exists() and (folder / "latest.json").exists():
        pointer = read_json(folder / "latest.json")  # a training run still in progress: its latest checkpoint
        folder = folder / str(pointer.get("path", ""))
    config_file = folder / "config.json" if (folder / "config.json").exists() else folder / "state.json"
    if not config_file.exists():
        raise CheckpointError(
            f"{folder} holds neither config.json nor state.json; expected a folder written by "
            f"ropekit.models.save_model or ropekit.train.train"
        )
    cfg_data = read_json(config_file)
    try:
        cfg = ModelConfig.from_dict(cfg_data.get("model", cfg_data))
    except (TypeError, ValueError) as e:
        raise CheckpointError(f"{config_file} holds an invalid model config: {e}") from None
    model = build_model(cfg)
    load_state_checked(model, read_tensors(folder / "model.safetensors"), str(folder))
    return model.to(map_location).eval()
