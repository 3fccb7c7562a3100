"""Keeping a transformers KV cache fresh when the scaling state changes (dynamic NTK, LongRoPE).

transformers rotates each new key with the frequencies of the current call and never revisits cached keys,
so after dynamic NTK's base grows, or LongRoPE switches to its long factors, old keys are stale and cached
decoding no longer equals a full forward pass (transformers#25306). :func:`rerotate_cache_` moves every cached
key to the new state in place, with :func:`ropekit.cache.rerotate`.

Legend: cache layers hold ``keys: [B, Hk, T, D]``; a layer holding fewer tokens than ``from_seq_len``
(sliding window) holds the last ones, positions ``from_seq_len - T .. from_seq_len - 1``.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ropekit.cache import rerotate
from ropekit.hf.patch import RopekitRotary

__all__ = ["rerotate_cache_"]


def _rotary_of(model: nn.Module) -> RopekitRotary:
    found = [m for m in model.modules() if isinstance(m, RopekitRotary)]
    if len(found) != 1:
        raise ValueError(
            f"expected a model patched by ropekit.hf.patch with one rotary module, found {len(found)}; "
            "call ropekit.hf.patch(model, mode='current') first"
        )
    return found[0]


def _layer_types(model: nn.Module, n_layers: int, rotary: RopekitRotary) -> list[str | None]:
    if list(rotary.ropes) == ["default"]:
        return [None] * n_layers
    config: Any = getattr(model, "config", None)
    config = getattr(config, "text_config", None) or config
    types = list(getattr(config, "layer_types", None) or [])
    if len(types) != n_layers:
        raise ValueError(
            f"the rotary module has layer types {list(rotary.ropes)} but config.layer_types has "
            f"{len(types)} entries for {n_layers} cache layers"
        )
    return types


@torch.no_grad()
def rerotate_cache_(model: nn.Module, cache: Any, *, from_seq_len: int, to_seq_len: int) -> int:
    """Move the cached keys of ``cache`` from the scaling state of ``from_seq_len`` to that of ``to_seq_len``.

    Call it before a forward pass that makes the sequence ``to_seq_len`` long when the cache was filled up to
    ``from_seq_len``; the patched model should use ``mode="current"``. Positions do not change. Returns the
    number of cache layers whose keys changed (0 when both lengths share a state, e.g. static rope types).
    """
    rotary = _rotary_of(model)
    layers = getattr(cache, "layers", None)
    if layers is None:
        raise ValueError(f"expected a transformers Cache with .layers (DynamicCache), got {type(cache).__name__}")
    types = _layer_types(model, len(layers), rotary)
    changed = 0
    for layer, layer_type in zip(layers, types, strict=True):
        keys = getattr(layer, "keys", None)
        if keys is None or keys.numel() == 0:
            continue
        if type(layer).__name__ not in ("DynamicLayer", "DynamicSlidingWindowLayer"):
            raise ValueError(f"cannot re-rotate a {type(layer).__name__} (only full-precision dynamic caches)")
        rope = rotary.rope(layer_type)
        before, after = rope.frequencies(from_seq_len), rope.frequencies(to_seq_len)
        if before[1] == after[1] and torch.equal(before[0], after[0]):
            continue
        T = keys.shape[-2]
        if from_seq_len < T:
            raise ValueError(f"cache layer holds {T} tokens but from_seq_len={from_seq_len}; pass the cached length")
        offset = from_seq_len - T
        layer.keys = rerotate(keys, offset, offset, rope, from_seq_len=from_seq_len, to_seq_len=to_seq_len).to(
            keys.dtype
        )
        changed += 1
    return changed
