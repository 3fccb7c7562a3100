"""Where training runs: the one device rule of :mod:`ropekit.train` and the report.

Inputs follow the model: a batch (or an evaluation set) is moved to the device of the model's parameters right
before the model reads it, so tasks and experiments build their tensors on the CPU (with CPU generators, the
same numbers on every machine) and never name a device themselves. Results come back to the CPU before NumPy
reads them (``tensor.cpu()``; free on the CPU).
"""

from __future__ import annotations

from typing import Any, TypeVar

import torch
from torch import nn

__all__ = ["model_device", "resolve_device", "to_device"]

T = TypeVar("T")


def resolve_device(device: str | torch.device | None) -> torch.device:
    """``None`` / ``"cpu"`` / ``"cuda"`` / ``"cuda:1"`` ... -> a device this process can use.

    Raises:
        ValueError: a malformed name, or a CUDA device when CUDA is not available (say ``--device cpu``).
    """
    if device is None:
        return torch.device("cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as e:
        raise ValueError(f"device must be like 'cpu', 'cuda' or 'cuda:1', got {device!r} ({e})") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device {device!r} asked for, but this torch build sees no CUDA GPU; use 'cpu'")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ValueError(f"device {device!r}: only {torch.cuda.device_count()} CUDA device(s) are visible")
    elif dev.type != "cpu":
        raise ValueError(f"device must be 'cpu' or a CUDA device, got {device!r}")
    return dev


def model_device(model: nn.Module) -> torch.device:
    """The device of ``model``'s first parameter (or buffer); the CPU for a model with neither."""
    for p in model.parameters():
        return p.device
    for b in model.buffers():
        return b.device
    return torch.device("cpu")


def to_device(obj: T, device: torch.device) -> T:
    """``obj`` with every tensor in it (nested tuples, lists and dicts) on ``device``; other values as they are."""
    out: Any
    if isinstance(obj, torch.Tensor):
        out = obj if obj.device == device else obj.to(device)
    elif isinstance(obj, tuple):
        items = [to_device(v, device) for v in obj]
        out = type(obj)(*items) if hasattr(obj, "_fields") else tuple(items)  # a NamedTuple keeps its type
    elif isinstance(obj, list):
        out = [to_device(v, device) for v in obj]
    elif isinstance(obj, dict):
        out = {k: to_device(v, device) for k, v in obj.items()}
    else:
        out = obj
    return out
