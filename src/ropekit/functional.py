"""Functional tier: validated public functions on tensors.

Legend: ``x, q, k: [..., T, D]`` (heads before tokens, e.g. ``[B, H, T, D]``), ``positions: [...]`` integer,
``inv_freq: [r]`` with ``r = rotary_dim / 2``, ``cos, sin: [..., T, r]`` broadcast over the leading dims of x.
For the ``[B, T, H, D]`` layout (flash-attention's), pass ``cos[:, None, :]`` so T lines up.

The math lives in :mod:`ropekit.reference`; this module checks inputs and gives clear errors.
"""

from __future__ import annotations

import math

import torch

from ropekit.angles import check_positions, position_angles, wrap_angles
from ropekit.kernels import dispatch

__all__ = ["apply_rotary", "apply_rotary_qk", "rope_angles", "rope_cos_sin"]

_FLOATS = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


def _check_inv_freq(inv_freq: torch.Tensor) -> None:
    if not isinstance(inv_freq, torch.Tensor) or inv_freq.dim() != 1 or not inv_freq.is_floating_point():
        shape = tuple(inv_freq.shape) if isinstance(inv_freq, torch.Tensor) else type(inv_freq).__name__
        raise ValueError(f"inv_freq must be a 1-D float tensor [rotary_dim/2], got {shape}")


def rope_angles(inv_freq: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
    """Rotation angles ``positions * inv_freq`` reduced to ``[-pi, pi]``, float32: ``[*positions.shape, r]``.

    Precision: the product of an integer position (< 2**29) and a float32 frequency is exact in float64,
    and the reduction modulo 2 pi is done in float64 before narrowing to float32, so the angle is within
    one float32 rounding of the true one at any position (float32 ``position * inv_freq`` is off by
    6e-2 rad at 2**20). The frequencies themselves are taken as the float32 numbers given.
    """
    check_positions(positions)
    _check_inv_freq(inv_freq)
    return position_angles(inv_freq, positions)  # [..., r] in [-pi, pi]


def rope_cos_sin(
    inv_freq: torch.Tensor,
    positions: torch.Tensor,
    *,
    attention_factor: float = 1.0,
    dtype: torch.dtype = torch.float32,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``cos`` and ``sin`` tables for integer positions, each ``[*positions.shape, r]``.

    Positions may be any integer tensor: ``arange(T)``, per-batch ``[B, T]`` (offsets, left padding, packed
    sequences with restarting positions) or anything else. Accurate to 2e-6 absolute against float64 at
    positions up to 2**24 (see :func:`rope_angles`). ``attention_factor`` multiplies both (YaRN/LongRoPE's
    temperature, as transformers does). The result is cast to ``dtype`` last.

    Cost: the float64 angle work is done in cache-sized chunks written straight into the outputs. Against the
    usual float32 ``(positions * inv_freq).cos()``: up to about 2x on short ranges (4096 positions), faster on
    long ranges and at large positions, where float32 ``cos`` pays for its own range reduction
    (``benchmarks/rope_cos_sin.py``; figures in the README).
    """
    if dtype not in _FLOATS:
        raise ValueError(f"dtype must be a floating dtype {_FLOATS}, got {dtype}")
    if not (isinstance(attention_factor, (int, float)) and math.isfinite(attention_factor)):
        raise ValueError(f"attention_factor must be a finite number, got {attention_factor!r}")
    check_positions(positions)
    _check_inv_freq(inv_freq)
    simple = inv_freq.requires_grad or positions.device.type == "meta" or torch.compiler.is_compiling()
    if simple:  # differentiable in inv_freq (learned frequencies), traceable, shape-only on meta
        angles = rope_angles(inv_freq, positions)  # [..., r] float32 in [-pi, pi]
        cos, sin = torch.cos(angles), torch.sin(angles)
    else:
        cos, sin = _cos_sin_chunked(inv_freq, positions)
    if attention_factor != 1.0:
        cos, sin = cos * attention_factor, sin * attention_factor
    return cos.to(dtype), sin.to(dtype)


_CHUNK_ELEMENTS = 1 << 15  # 256 KiB of float64 angles: stays in L2 (measured: 2**14..2**17 are alike)


@torch.no_grad()
def _cos_sin_chunked(inv_freq: torch.Tensor, positions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Same numbers as :func:`rope_angles` + cos/sin, computed chunk by chunk: ``[*positions.shape, r]`` each.

    Fresh multi-MiB float64 intermediates cost page faults that dominate the run time; chunks reuse cache,
    and the three chunk buffers are allocated once per call (a fresh 256 KiB tensor per chunk is an mmap and
    64 page faults with glibc's default threshold: 1.3-1.5x -> 1.0-1.2x of the float32 way at 4096 positions).
    """
    r = inv_freq.numel()
    flat = positions.reshape(-1)  # [N]
    n_total = flat.numel()
    cos = torch.empty(n_total, r, device=inv_freq.device)  # [N, r] float32
    sin = torch.empty_like(cos)
    inv64 = inv_freq.to(torch.float64)
    rows = max(1, _CHUNK_ELEMENTS // max(r, 1))
    size = (min(rows, n_total), r)
    angles64 = torch.empty(size, dtype=torch.float64, device=inv_freq.device)  # [rows, r]
    turns64 = torch.empty_like(angles64)
    reduced32 = torch.empty(size, device=inv_freq.device)  # [rows, r] float32
    for start in range(0, n_total, rows):
        n = min(rows, n_total - start)
        angles = torch.outer(flat[start : start + n].to(torch.float64), inv64, out=angles64[:n])  # exact
        reduced = wrap_angles(angles, out=reduced32[:n], scratch=turns64[:n])  # [n, r] in [-pi, pi]
        torch.cos(reduced, out=cos[start : start + n])
        torch.sin(reduced, out=sin[start : start + n])
    return cos.view(*positions.shape, r), sin.view(*positions.shape, r)


def _broadcasts_onto(small: torch.Size, big: torch.Size) -> bool:
    """Whether ``torch.broadcast_shapes(big, small) == big``: every right-aligned dim of small is 1 or equal."""
    if len(small) > len(big):
        return False
    return all(s == 1 or s == b for s, b in zip(reversed(small), reversed(big), strict=False))


def _check_rotary_inputs(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, name: str = "x") -> None:
    for label, t in ((name, x), ("cos", cos), ("sin", sin)):
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"{label} must be a torch.Tensor, got {type(t).__name__}")
        if t.dtype not in _FLOATS:
            raise ValueError(f"{label} must be a floating tensor (fp16/bf16/fp32/fp64), got {t.dtype}")
    if x.dim() < 2:
        raise ValueError(f"{name} must be [..., T, head_dim] with at least 2 dims, got shape {tuple(x.shape)}")
    if cos.shape != sin.shape:
        raise ValueError(f"cos and sin must have the same shape, got {tuple(cos.shape)} and {tuple(sin.shape)}")
    if cos.dim() < 1:
        raise ValueError("cos and sin must be [..., T, rotary_dim/2] tables, got scalars")
    head_dim, r = x.shape[-1], cos.shape[-1]
    if 2 * r > head_dim:
        raise ValueError(
            f"cos/sin have {r} columns (rotary pairs) but {name} has head_dim {head_dim} < 2*{r}; ropekit "
            "tables hold one column per pair, [..., T, rotary_dim/2]. For Hugging Face style duplicated "
            f"[..., T, rotary_dim] tables pass cos[..., :{r // 2}] and sin[..., :{r // 2}]"
        )
    if r == 0:
        raise ValueError("cos/sin have 0 columns: nothing to rotate (rotary_dim must be >= 2)")
    if _broadcasts_onto(cos.shape[:-1], x.shape[:-1]):
        return  # the common case, in about 1 us (torch.broadcast_shapes costs 15 us a call)
    try:
        shape = torch.broadcast_shapes(x.shape[:-1], cos.shape[:-1])
    except RuntimeError:
        shape = None
    if shape != x.shape[:-1]:
        raise ValueError(
            f"cos/sin of shape {tuple(cos.shape)} do not broadcast over {name} of shape {tuple(x.shape)}: "
            f"expected [..., T, {r}] with T = {x.shape[-2]} lining up with {name}'s second-to-last dim. "
            f"{name} must be [..., T, head_dim] (heads before tokens); for [B, T, H, D] use cos[:, None, :]"
        )


def _check_table_positions(x: torch.Tensor, cos: torch.Tensor, positions: torch.Tensor, name: str = "x") -> None:
    """``positions: [T]`` or ``[B, T]`` index rows of ``cos, sin: [L, r]`` tables for ``x: [..., T, D]``."""
    check_positions(positions)
    if positions.device != cos.device:
        raise ValueError(f"positions are on {positions.device} but cos/sin on {cos.device}; move them to one device")
    T = x.shape[-2]
    if positions.dim() not in (1, 2) or positions.shape[-1] != T:
        raise ValueError(
            f"positions must be [T] or [B, T] with T = {T} ({name}'s second-to-last dim), got shape "
            f"{tuple(positions.shape)}"
        )
    if positions.dim() == 2 and (x.dim() < 3 or positions.shape[0] not in (1, x.shape[0])):
        raise ValueError(
            f"positions of shape {tuple(positions.shape)} must be [B, T] with B = {name}.shape[0] "
            f"for {name} of shape {tuple(x.shape)} ([B, H, T, D]); use positions [T] to share them across the batch"
        )
    if positions.numel() and not torch.compiler.is_compiling():  # data-dependent check: eager only
        lo, hi = int(positions.min()), int(positions.max())
        if lo < 0 or hi >= cos.shape[0]:
            raise ValueError(
                f"positions range over [{lo}, {hi}] but the cos/sin table has {cos.shape[0]} rows; positions must "
                f"be in [0, {cos.shape[0] - 1}]: build the table for at least {hi + 1} positions"
            )


def _check_rotary_args(x, cos, sin, positions, name: str = "x") -> None:
    if positions is None:
        _check_rotary_inputs(x, cos, sin, name)
        return
    if isinstance(cos, torch.Tensor) and (cos.dim() != 2 or cos.shape[0] == 0):
        raise ValueError(
            f"with positions=, cos and sin must be [L, rotary_dim/2] tables (one row per position, L >= 1), got "
            f"shape {tuple(cos.shape)}; build them with rope_cos_sin(inv_freq, torch.arange(L)) or drop positions="
        )
    if isinstance(x, torch.Tensor) and isinstance(sin, torch.Tensor) and x.dim() >= 2:
        # Validate dtypes and widths on the per-token view: one table row stands in for each of the T tokens.
        _check_rotary_inputs(x, cos[:1].expand(x.shape[-2], -1), sin[:1].expand(x.shape[-2], -1), name)
    else:
        _check_rotary_inputs(x, cos, sin, name)
    if cos.shape != sin.shape:
        raise ValueError(f"cos and sin must have the same shape, got {tuple(cos.shape)} and {tuple(sin.shape)}")
    _check_table_positions(x, cos, positions, name)


def apply_rotary(
    x: torch.Tensor,
    cos: torch.Tensor,
    sin: torch.Tensor,
    *,
    interleaved: bool = False,
    positions: torch.Tensor | None = None,
) -> torch.Tensor:
    """Rotate the first ``2 * cos.shape[-1]`` features of ``x``; the rest pass through.

    Args:
        x: ``[..., T, D]``, any float dtype.
        cos, sin: ``[..., T, r]`` from :func:`rope_cos_sin`, broadcast over x's leading dims.
        interleaved: pairs ``(x[2j], x[2j+1])`` (GPT-J, RoFormer, Meta Llama checkpoints) instead of the
            half pairing ``(x[j], x[j+r])`` (Hugging Face Llama, GPT-NeoX, Qwen).
        positions: optional integer ``[T]`` or ``[B, T]`` (B = x.shape[0]); cos and sin are then ``[L, r]``
            tables and token t uses row ``positions[..., t]`` (per-token positions, KV-cache offsets, packed
            sequences) without building a ``[B, T, r]`` table.

    Returns:
        A new ``[..., T, D]`` tensor of x's dtype (computed in float32 for bf16/fp16).
    """
    _check_rotary_args(x, cos, sin, positions)
    return dispatch.apply_rotary(x, cos, sin, interleaved=interleaved, positions=positions)


def apply_rotary_qk(
    q: torch.Tensor,
    k: torch.Tensor,
    cos: torch.Tensor,
    sin: torch.Tensor,
    *,
    interleaved: bool = False,
    inplace: bool = False,
    positions: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Rotate queries and keys with the same table. ``q: [..., Hq, T, D]``, ``k: [..., Hk, T, D]``.

    q and k may have different head counts (GQA/MQA) and head dims' pass-through parts are kept.
    With ``inplace=True`` q and k are overwritten and returned (they must not require grad).
    ``positions`` as in :func:`apply_rotary` (cos/sin are then ``[L, r]`` tables).
    """
    _check_rotary_args(q, cos, sin, positions, "q")
    _check_rotary_args(k, cos, sin, positions, "k")
    if q.shape[-1] != k.shape[-1]:
        raise ValueError(f"q and k must have the same head_dim, got {q.shape[-1]} and {k.shape[-1]}")
    return dispatch.apply_rotary_qk(q, k, cos, sin, interleaved=interleaved, inplace=inplace, positions=positions)
