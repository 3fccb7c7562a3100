"""Evaluate a trained model under another position-encoding spec: same weights, new ``pe`` (e.g. a RoPE scaling).

This is what ``ropekit eval --rope-type ...`` does: ``dataclasses.replace`` of the model's config with the new
``pe`` and a checked state load (every tensor of the trained model must fit the new one, none may be missing)::

    from ropekit.models import with_position_encoding
    yarn = with_position_encoding(model, {"kind": "rope", "rope_parameters": {"rope_type": "yarn", "factor": 4.0}})
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from torch import nn

from ropekit.models.io import load_state_checked
from ropekit.models.transformer import build_model

__all__ = ["with_position_encoding"]


def with_position_encoding(model: nn.Module, pe: str | Mapping[str, Any], *, source: str = "model") -> nn.Module:
    """A new model of ``model``'s class and sizes with position encoding ``pe`` and ``model``'s weights (a copy).

    The result is in the same train/eval mode as ``model``. Raises ``CheckpointError`` (via the checked load) when
    the weights do not fit, e.g. a learned table swapped for RoPE.
    """
    config = getattr(model, "config", None)
    if config is None:
        raise ValueError(f"{type(model).__name__} has no .config: build it with ropekit.models.build_model")
    swapped = build_model(dataclasses.replace(config, pe=dict(pe) if not isinstance(pe, str) else pe))
    load_state_checked(swapped, {k: v.detach().clone() for k, v in model.state_dict().items()}, source)
    device = next((p.device for p in model.parameters()), None)
    if device is not None:
        swapped = swapped.to(device)  # it stays where the original is
    return swapped.train(model.training)
