"""KV-cache helpers: move already-rotated cached keys to new positions or a new scaling state.

A cached key is ``k_m = a * R(m * theta) k`` (``a`` the attention factor, ``theta`` the inverse frequencies
of the scaling state the key was rotated in). Rotations of one pair commute, so
``R(n * theta') R(-m * theta) = R(n * theta' - m * theta)``: one rotation by the angle difference, times
``a' / a``, turns it into the key a fresh forward pass would have produced at position ``n`` in state
``theta'``. Uses: shifting a sliding window, StreamingLLM-style attention sinks (Xiao et al. 2023: keep the
first tokens, give the window contiguous positions after them), evicting tokens, and keeping keys fresh when
dynamic NTK's base grows or LongRoPE switches from the short to the long factors (transformers#25306).

Legend: ``k: [B, H, T, D]`` rotated keys, ``v: [B, H, T, D]`` values, ``positions: [T]`` or ``[B, T]``
integer, ``keep: [K]`` integer indices into ``T``, ``r = rotary_dim / 2``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from ropekit.angles import check_positions, wrap_angles
from ropekit.functional import apply_rotary
from ropekit.modules import RotaryEmbedding
from ropekit.scaling import depends_on_length

__all__ = ["evict", "rerotate", "sink_window_keep"]

def _as_positions(positions: torch.Tensor | int, T: int, name: str, device: torch.device) -> torch.Tensor:
    """An int offset or an integer tensor ``[T]``/``[B, T]`` -> integer tensor on ``device``."""
    if isinstance(positions, int) and not isinstance(positions, bool):
        if positions < 0:
            raise ValueError(f"{name} offset must be >= 0, got {positions}")
        return torch.arange(positions, positions + T, device=device)
    if not isinstance(positions, torch.Tensor):
        raise TypeError(f"{name} must be an int offset or an integer tensor [T] / [B, T], got {type(positions)}")
    check_positions(positions, name=name, dims=(1, 2), allow_negative=False)
    if positions.shape[-1] != T:
        raise ValueError(f"{name} must be [T] or [B, T] with T={T} (the keys' length), got {tuple(positions.shape)}")
    return positions.to(device)


def _state_length(rope: RotaryEmbedding, seq_len: int | None, name: str) -> int | None:
    if not depends_on_length(rope.spec.rope_type):
        return None
    if seq_len is None:
        raise ValueError(
            f"rope_type {rope.spec.rope_type!r} depends on the sequence length: pass {name}=... (the length the "
            "keys were / will be rotated for), e.g. the cache length before and after the new tokens"
        )
    return seq_len


@torch.no_grad()
def rerotate(
    k: torch.Tensor,
    from_positions: torch.Tensor | int,
    to_positions: torch.Tensor | int,
    rope: RotaryEmbedding,
    *,
    from_seq_len: int | None = None,
    to_seq_len: int | None = None,
) -> torch.Tensor:
    """Re-rotate cached keys ``k: [B, H, T, D]`` from ``from_positions`` to ``to_positions`` (new tensor).

    Args:
        k: keys already rotated by ``rope`` (same pairing, same attention factor convention).
        from_positions, to_positions: int offsets or integer tensors ``[T]`` / ``[B, T]``.
        rope: the :class:`~ropekit.RotaryEmbedding` that rotated them.
        from_seq_len, to_seq_len: for length-dependent types (dynamic NTK, LongRoPE), the sequence length
            whose scaling state the keys are in, and the one they should be moved to (required there,
            ignored otherwise). Same positions with a new length = a pure state switch.

    The angle difference is formed in float64 and reduced modulo 2 pi, so moving a key by any distance costs
    one float32 rounding, like rotating it from scratch.
    """
    if k.dim() < 2 or k.shape[-1] != rope.head_dim:
        raise ValueError(f"k must be [..., T, head_dim={rope.head_dim}], got shape {tuple(k.shape)}")
    T = k.shape[-2]
    src = _as_positions(from_positions, T, "from_positions", k.device)
    dst = _as_positions(to_positions, T, "to_positions", k.device)
    inv_src, af_src = rope.frequencies(_state_length(rope, from_seq_len, "from_seq_len"))
    inv_dst, af_dst = rope.frequencies(_state_length(rope, to_seq_len, "to_seq_len"))
    angles = dst.to(torch.float64).unsqueeze(-1) * inv_dst.to(torch.float64)  # [..., T, r] exact
    angles = wrap_angles(angles - src.to(torch.float64).unsqueeze(-1) * inv_src.to(torch.float64))  # in [-pi, pi]
    ratio = af_dst / af_src
    cos, sin = angles.cos() * ratio, angles.sin() * ratio
    if cos.dim() == 3:  # [B, T, r] -> [B, 1, T, r]: broadcast over heads
        cos, sin = cos.unsqueeze(1), sin.unsqueeze(1)
    return apply_rotary(k, cos, sin, interleaved=rope.interleaved)


def sink_window_keep(length: int, *, n_sink: int, window: int, device: torch.device | None = None) -> torch.Tensor:
    """Indices ``[K]`` kept by StreamingLLM: the first ``n_sink`` tokens and the last ``window`` ones."""
    for name, value in (("length", length), ("n_sink", n_sink), ("window", window)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise ValueError(f"{name} must be an integer >= 0, got {value!r}")
    if n_sink + window >= length:
        return torch.arange(length, device=device)
    return torch.cat((torch.arange(n_sink, device=device), torch.arange(length - window, length, device=device)))


def _keep_indices(keep: Any, T: int) -> torch.Tensor:
    """``keep`` as sorted unique int64 indices ``[K]``: an index tensor or list, or a bool mask ``[T]``."""
    if isinstance(keep, (list, tuple, range)):
        if not all(isinstance(i, (int, bool)) for i in keep):
            raise ValueError(f"keep must be a list of integer indices or bools, got {list(keep)[:8]!r}")
        keep = torch.tensor(list(keep), dtype=torch.bool if keep and all(isinstance(i, bool) for i in keep) else None)
        if keep.numel() == 0:
            keep = keep.long()
    if not isinstance(keep, torch.Tensor):
        raise ValueError(f"keep must be a tensor [K] of indices, a list, or a bool mask [T]; got {type(keep).__name__}")
    if keep.dtype == torch.bool:
        if keep.shape != (T,):
            raise ValueError(f"a bool keep mask must have the cache length [{T}], got {tuple(keep.shape)}")
        return keep.nonzero().flatten()  # [K], ascending
    if keep.is_floating_point() or keep.is_complex() or keep.dim() != 1:
        raise ValueError(f"keep must be a 1-D integer index tensor [K], got {keep.dtype} {tuple(keep.shape)}")
    index: torch.Tensor = keep.long()
    keep = index
    if keep.numel() and (int(keep.min()) < 0 or int(keep.max()) >= T):
        raise ValueError(
            f"keep indices must lie in [0, {T}) (the cache length), got [{int(keep.min())}, {int(keep.max())}]"
        )
    if keep.numel() > 1 and not bool((keep[1:] > keep[:-1]).all()):
        what = "duplicates (a token cached twice)" if keep.unique().numel() < keep.numel() else "unsorted indices"
        raise ValueError(
            f"keep must be strictly increasing indices, got {what}: {keep[:8].tolist()}...; the kept tokens keep "
            f"their order (pass keep.unique() to sort and deduplicate)"
        )
    return index


@torch.no_grad()
def evict(
    k: torch.Tensor,
    v: torch.Tensor,
    keep: torch.Tensor | Sequence[int] | Sequence[bool],
    rope: RotaryEmbedding,
    *,
    positions: torch.Tensor | int = 0,
    from_seq_len: int | None = None,
    to_seq_len: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Keep tokens ``keep: [K]`` of the cache and give them contiguous positions ``0 .. K-1``.

    ``keep``: strictly increasing indices (a tensor or a list), or a bool mask ``[T]``; unsorted or repeated
    indices are refused (they would reorder the cache or cache a token twice).

    ``k, v: [B, H, T, D]`` -> ``[B, H, K, D]`` each; ``positions`` are the keys' current positions (an offset or
    ``[T]``). The kept keys are re-rotated (values are position-free), so the next token goes at position ``K``.
    For length-dependent types pass ``from_seq_len`` (old state) and ``to_seq_len`` (usually ``K + new tokens``).
    """
    if k.shape[:-1] != v.shape[:-1] or k.dim() != 4:
        raise ValueError(f"k and v must be [B, H, T, D] with equal B, H, T; got {tuple(k.shape)} and {tuple(v.shape)}")
    T = k.shape[-2]
    keep = _keep_indices(keep, T).to(k.device)
    pos = _as_positions(positions, T, "positions", k.device)
    if pos.dim() != 1:
        raise ValueError("evict needs the same positions for every batch row: positions [T] or an int offset")
    kept_k, kept_v = k.index_select(-2, keep), v.index_select(-2, keep)  # [B, H, K, D]
    new_k = rerotate(kept_k, pos[keep], 0, rope, from_seq_len=from_seq_len, to_seq_len=to_seq_len)
    return new_k, kept_v
