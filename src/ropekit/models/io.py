"""Save and load a model as ``config.json`` + ``model.safetensors`` (no pickle anywhere).

Both files are written with :func:`ropekit.fileio.atomic_write` (temporary file in the same folder, fsync,
rename), so a reader never sees a half-written file. Loading checks that the tensors match the config and says
which keys differ.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from ropekit.fileio import atomic_write, read_marker, run_id_of
from ropekit.models.transformer import ModelConfig, build_model

__all__ = [
    "RUN_ID_KEY",
    "CheckpointError",
    "atomic_save_tensors",
    "atomic_write_bytes",
    "load_model",
    "load_state_checked",
    "model_config",
    "save_model",
    "tensor_metadata",
]

RUN_ID_KEY = "ropekit_run_id"


class CheckpointError(ValueError):
    """A checkpoint is missing, corrupt, or does not match the model it is loaded into."""


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    """Write ``data`` to ``path`` atomically and durably (:func:`ropekit.fileio.atomic_write`)."""
    atomic_write(path, data)


def atomic_save_tensors(
    tensors: dict[str, torch.Tensor], path: str | os.PathLike[str], metadata: dict[str, str] | None = None
) -> None:
    """``safetensors`` file written atomically (tensors made contiguous, detached, on CPU).

    A file written into a run folder (one with a ``run_id`` in its :mod:`ropekit.fileio` marker) records that id
    as ``ropekit_run_id`` in its metadata, so a file left over from another run is recognised on load."""
    path = Path(path)
    meta = dict(metadata or {})
    run_id = run_id_of(path.parent)
    if run_id is not None:
        meta.setdefault(RUN_ID_KEY, run_id)
    flat = {k: v.detach().cpu().contiguous() for k, v in tensors.items()}
    atomic_write(path, lambda tmp: save_file(flat, tmp, metadata=meta or None))


def tensor_metadata(path: str | os.PathLike[str]) -> dict[str, str]:
    """The metadata of a safetensors file (``{}`` when it has none); :class:`CheckpointError` if unreadable."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            return dict(f.metadata() or {})
    except (SafetensorError, OSError, ValueError, RuntimeError) as e:
        raise CheckpointError(f"{path} is corrupt or not a safetensors file ({e})") from None


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


def check_run_file(path: Path, run: Path, state_run_id: str | None = None) -> None:
    """Refuse a weights file that another run wrote into ``run`` (its ``ropekit_run_id`` is not the run's).

    The run's id is its marker's (:mod:`ropekit.fileio`); ``state_run_id`` is the one a checkpoint's
    ``state.json`` recorded. Folders without a marker (``save_model``, the Python API) are not checked."""
    marker = read_marker(run)
    want = marker.get("run_id") if marker else None
    if marker is None or want is None or not path.is_file():
        return
    got = tensor_metadata(path).get(RUN_ID_KEY)
    if got is None and marker.get("adopted"):
        return  # written before run ids existed
    for name, value in (("its metadata", got), ("state.json", state_run_id)):
        if (value is not None and value != want) or (name == "its metadata" and value is None):
            raise CheckpointError(
                f"{path} does not belong to the run in {run}: {name} records run id {value} but the run is {want} "
                f"(a file left over from an earlier run in this folder); re-run `ropekit train` with --overwrite "
                f"or use another folder"
            )


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


def model_config(model: torch.nn.Module) -> ModelConfig:
    """The :class:`ModelConfig` a ``ropekit.models`` network was built from (``TypeError`` for other modules)."""
    config = getattr(model, "config", None)
    if not isinstance(config, ModelConfig):
        raise TypeError(f"expected a ropekit.models network (built by build_model), got {type(model).__name__}")
    return config


def save_model(model: torch.nn.Module, folder: str | os.PathLike[str]) -> Path:
    """Write ``folder/config.json`` and ``folder/model.safetensors`` for a model built by ``build_model``.

    ``folder`` must be absent, empty or an earlier ``save_model`` folder (:mod:`ropekit.fileio`): a folder holding
    someone else's ``config.json`` raises :class:`ropekit.fileio.OutputFolderError` instead of overwriting it."""
    from ropekit.fileio import claim_output_folder

    folder = Path(folder)
    claim_output_folder(folder, command="save_model", entries=("config.json", "model.safetensors"), flag="folder")
    atomic_save_tensors(model.state_dict(), folder / "model.safetensors")
    atomic_write_bytes(folder / "config.json", json.dumps(model_config(model).to_dict(), indent=2).encode())
    return folder


def load_model(folder: str | os.PathLike[str], map_location: str | torch.device = "cpu") -> torch.nn.Module:
    """Rebuild the model from ``folder/config.json`` and load ``folder/model.safetensors`` into it (eval mode).

    ``folder``: written by :func:`save_model`; a finished training run's ``out_dir``; one of its checkpoint step
    folders (config from ``state.json``); or an unfinished run's ``out_dir`` (its latest checkpoint)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise CheckpointError(
            f"{folder} is not a folder"
            + (" (it does not exist)" if not folder.exists() else "")
            + "; expected a folder written by ropekit.models.save_model or `ropekit train`"
        )
    run = folder
    if not (folder / "model.safetensors").exists() and (folder / "latest.json").exists():
        from ropekit.train.checkpoint import latest_checkpoint  # a run still in progress: its newest checkpoint

        folder = latest_checkpoint(folder) or folder
    elif (folder / "state.json").exists() and folder.parent.name == "ckpt":
        run = folder.parent.parent  # a checkpoint step folder of a run
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
    check_run_file(folder / "model.safetensors", run, cfg_data.get("run_id"))
    load_state_checked(model, read_tensors(folder / "model.safetensors"), str(folder))
    return model.to(map_location).eval()
