"""Functional tier: validated public functions on tensors.

Legend: ``x, q, k: [..., T, D]`` (heads before tokens, e.g. ``[B, H, T, D]``, by default; other layouts with
``layout=``), ``positions: [...]`` integer (float32/float64 fractional positions in :func:`rope_angles` and
:func:`rope_cos_sin`), ``inv_freq: [r]`` with ``r = rotary_dim / 2``, ``cos, sin: [..., T, r]``
broadcast over the leading dims of x, or ``[L, r]`` tables indexed by positions.

The math lives in :mod:`ropekit.reference`; this module checks inputs and gives clear errors.
"""

from __future__ import annotations

import math
import weakref
from typing import Any

import torch

from ropekit.angles import (
    check_cu_seqlens,
    check_positions,
    exact_position_angles,
    exceeds_exact_range,
    fractional_position_angles,
    position_angles,
    split_fractional,
    varlen_positions,
    wrap_angles,
)
from ropekit.kernels import dispatch, tablefree
from ropekit.kernels.backend import current_backend
from ropekit.kernels.cos_sin import cos_sin as fused_cos_sin

__all__ = [
    "LAYOUTS",
    "apply_rotary",
    "apply_rotary_qk",
    "apply_rotary_qk_tablefree",
    "rope_angles",
    "rope_cos_sin",
    "split_cos_sin_cache",
]

_FLOATS = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


# Frequency tensors already found finite, by (id, version, data pointer), each with a weak reference that proves
# the id was not reused: a module's inv_freq is checked once, not on every call (the scan was 8% of rope_cos_sin's
# time at 4096 positions).
_FINITE: dict[tuple[int, int, int], weakref.ref[torch.Tensor]] = {}


def _check_inv_freq(inv_freq: torch.Tensor) -> None:
    if not isinstance(inv_freq, torch.Tensor) or inv_freq.dim() != 1 or not inv_freq.is_floating_point():
        shape = tuple(inv_freq.shape) if isinstance(inv_freq, torch.Tensor) else type(inv_freq).__name__
        raise ValueError(f"inv_freq must be a 1-D float tensor [rotary_dim/2], got {shape}")
    if inv_freq.device.type == "cpu" and not torch.compiler.is_compiling() and inv_freq.numel():
        key = (id(inv_freq), inv_freq._version, inv_freq.data_ptr())
        seen = _FINITE.get(key)
        if seen is not None and seen() is inv_freq:
            return
        bad = int((~torch.isfinite(inv_freq.detach())).sum())  # CPU only: no device sync; NaN/inf: NaN tables
        if bad:
            raise ValueError(f"inv_freq must be finite, got {bad} NaN/inf entries; check the scaling parameters")
        if len(_FINITE) >= 256:
            _FINITE.clear()
        _FINITE[key] = weakref.ref(inv_freq)


def rope_angles(inv_freq: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
    """Rotation angles ``positions * inv_freq`` reduced to ``[-pi, pi]``, float32: ``[*positions.shape, r]``.

    Precision: the product of an integer position and a float32 frequency is exact in float64 for
    ``|position| < 2**29``, and the reduction modulo 2 pi is done in float64 before narrowing to float32, so the
    angle is within one float32 rounding of the true one at every such position (float32 ``position * inv_freq``
    is off by 6e-2 rad at 2**20). Integer positions at or beyond 2**29 (where that product rounds: 2**40 was off
    by 3.9e-5 rad, 2**62 by 2 rad) go through :func:`ropekit.angles.exact_position_angles`, which splits them
    into 21-bit digits: within one float32 rounding plus 1e-8 rad for every int64 position. That choice reads the
    positions' extremes, so under ``torch.compile``, and when ``inv_freq`` requires grad, positions must stay
    below 2**29 (beyond it the float64 product rounds as above). The frequencies are the float32 numbers given.

    Fractional positions: float32/float64 ``positions`` (finite, ``|p| < 2**63``) are split into ``floor(p)``,
    reduced as above, plus the fraction's angle in float64 (:func:`ropekit.angles.fractional_position_angles`):
    the same bound for the float number given, bit-identical angles for whole-number floats, and differentiable
    in the positions.
    """
    check_positions(positions, allow_float=True)
    _check_inv_freq(inv_freq)
    if positions.is_floating_point():
        return fractional_position_angles(inv_freq, positions)
    if not inv_freq.requires_grad and exceeds_exact_range(positions):
        return exact_position_angles(inv_freq, positions)
    return position_angles(inv_freq, positions)  # [..., r] in [-pi, pi]


def rope_cos_sin(
    inv_freq: torch.Tensor,
    positions: torch.Tensor,
    *,
    attention_factor: float = 1.0,
    dtype: torch.dtype = torch.float32,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``cos`` and ``sin`` tables for integer or fractional positions, each ``[*positions.shape, r]``.

    Positions may be any integer tensor: ``arange(T)``, per-batch ``[B, T]`` (offsets, left padding, packed
    sequences with restarting positions) or anything else, up to the int64 range (see :func:`rope_angles`).
    Accurate to 2e-6 absolute against float64 at positions up to 2**24. float32/float64 positions are
    fractional positions (the integer part reduced exactly, the fraction's angle in float64: see
    :func:`rope_angles`); whole-number floats give bit-identical tables to the same integers. The tables apply
    with :func:`apply_rotary` without ``positions=`` (whose positions index table rows, so are integers).
    ``attention_factor`` multiplies both (YaRN/LongRoPE's temperature, as transformers does).
    The result is cast to ``dtype`` last.

    Cost: on CPU, integer (and whole-number float) positions without autograd get their angles from one C++
    loop (:mod:`ropekit.kernels.cos_sin`: ``rope_angles``' numbers bit for bit), then torch's cos/sin: about
    1.2-1.4x the usual float32 ``(positions * inv_freq).cos()`` at 4096 positions and 0.65x at 32768
    (``benchmarks/apply_rotary.py --only cos_sin``; ``docs/kernels.md``). Otherwise (no C++ build, other devices,
    ``use_backend("eager")``) the float64 angle work is done in cache-sized chunks written straight into the
    outputs: up to about 2x the float32 way on short ranges, faster on long ranges and at large positions
    (``benchmarks/rope_cos_sin.py``).
    """
    if dtype not in _FLOATS:
        raise ValueError(f"dtype must be a floating dtype {_FLOATS}, got {dtype}")
    if not (isinstance(attention_factor, (int, float)) and math.isfinite(attention_factor)):
        raise ValueError(f"attention_factor must be a finite number, got {attention_factor!r}")
    check_positions(positions, allow_float=True)
    _check_inv_freq(inv_freq)
    simple = inv_freq.requires_grad or positions.device.type == "meta" or torch.compiler.is_compiling()
    simple = simple or positions.requires_grad  # learned / content-dependent positions: keep the graph
    # C++ pass (CPU integer or whole-number float positions, float32/float64 frequencies, no autograd):
    # rope_angles' angles bit for bit from one loop, then torch's cos/sin (ropekit.kernels.cos_sin); None: torch
    fused = None
    if not simple and positions.is_floating_point() and positions.device.type == "cpu":
        whole = positions.to(torch.int64)  # |p| < 2**63 (checked): exact for whole numbers
        if bool((whole == positions).all()):  # whole-number floats: the ints' tables, bit for bit
            fused = fused_cos_sin(inv_freq, whole)
    elif not simple:
        fused = fused_cos_sin(inv_freq, positions)
    if fused is not None:
        cos, sin = fused
    else:
        if not simple and positions.is_floating_point():
            simple = exceeds_exact_range(split_fractional(positions)[0])
        elif not simple:
            simple = exceeds_exact_range(positions)  # beyond 2**29: rope_angles' digit-split reduction
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
    fractional = flat.is_floating_point()
    for start in range(0, n_total, rows):
        n = min(rows, n_total - start)
        chunk = flat[start : start + n]
        if fractional:  # floor(p) * f exactly (below 2**29), plus the fraction's angle: as fractional_position_angles
            whole, frac = split_fractional(chunk)
            angles = torch.outer(whole.to(torch.float64), inv64, out=angles64[:n])
            angles.add_(torch.outer(frac, inv64, out=turns64[:n]))  # turns64 is scratch until wrap_angles
        else:
            angles = torch.outer(chunk.to(torch.float64), inv64, out=angles64[:n])  # exact
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
    if not _broadcasts_onto(cos.shape[:-1], x.shape[:-1]):  # ~1 us; torch.broadcast_shapes costs 15 us a call
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


def _check_rotary_args(x: torch.Tensor, cos: Any, sin: Any, positions: Any, name: str = "x") -> None:
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


LAYOUTS = ("bhtd", "bthd", "tbhd", "thd")
_RANKS = {"bthd": 4, "tbhd": 4, "thd": 3}


def split_cos_sin_cache(cos_sin_cache: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """vLLM's ``cos_sin_cache`` ``[L, rotary_dim]`` (cos in the first half of each row, sin in the second) as
    ``cos, sin: [L, rotary_dim / 2]`` column views: no copy, the kernels read the rows with their stride.

    Pass them with ``positions=`` (vLLM's ``forward(positions, query, key)``). bf16/fp16 caches are accepted and
    widened to float32 per call (a table-sized copy); the result is only as precise as the table.
    """
    if not isinstance(cos_sin_cache, torch.Tensor) or cos_sin_cache.dim() != 2 or cos_sin_cache.shape[1] % 2:
        shape = tuple(cos_sin_cache.shape) if isinstance(cos_sin_cache, torch.Tensor) else type(cos_sin_cache)
        raise ValueError(f"cos_sin_cache must be [L, rotary_dim] with an even rotary_dim, got {shape}")
    r = cos_sin_cache.shape[1] // 2
    return cos_sin_cache[:, :r], cos_sin_cache[:, r:]


def _to_bhtd(x: torch.Tensor, layout: str, name: str) -> torch.Tensor:
    """The ``[..., H, T, D]`` view of ``x`` in ``layout`` (never a copy)."""
    if layout == "bhtd":
        return x
    want = _RANKS[layout]
    if x.dim() != want:
        shapes = {"bthd": "[B, T, H, D]", "tbhd": "[T, B, H, D]", "thd": "[total_tokens, H, D]"}
        raise ValueError(f"layout={layout!r} needs {name} of shape {shapes[layout]}, got {tuple(x.shape)}")
    if layout == "bthd":
        return x.transpose(1, 2)
    if layout == "tbhd":
        return x.permute(1, 2, 0, 3)
    return x.transpose(0, 1).unsqueeze(0)  # thd -> [1, H, total, D]


def _from_bhtd(x: torch.Tensor, layout: str) -> torch.Tensor:
    if layout == "bhtd":
        return x
    if layout == "bthd":
        return x.transpose(1, 2)
    if layout == "tbhd":
        return x.permute(2, 0, 1, 3)
    return x.squeeze(0).transpose(0, 1)  # squeeze, not [0]: select's backward would zero-fill and copy


def _token_positions(
    x4: torch.Tensor,
    layout: str,
    positions: torch.Tensor | None,
    cu_seqlens: torch.Tensor | None,
    seqlen_offsets: int | torch.Tensor | None,
    device: torch.device,
) -> torch.Tensor | int | None:
    """The one reading of ``positions`` / ``cu_seqlens`` / ``seqlen_offsets`` for the ``[..., H, T, D]`` view ``x4``.

    Returns per-token positions (``[T]`` varlen, the given ``positions``, or ``[B, T]`` from per-row offsets), an int
    offset (token t is at position ``t + offset``), or ``None`` when nothing was given (``"bhtd"``: cos/sin broadcast
    over x as given).
    """
    T = x4.shape[-2]
    if cu_seqlens is not None:
        if layout != "thd":
            raise ValueError(f"cu_seqlens needs layout='thd' ([total_tokens, H, D] packed sequences), got {layout!r}")
        if positions is not None:
            raise ValueError("pass either cu_seqlens (positions restart per sequence) or positions=, not both")
        check_cu_seqlens(cu_seqlens, T)
        offsets = 0 if seqlen_offsets is None else seqlen_offsets
        if isinstance(offsets, torch.Tensor):
            check_positions(offsets, name="seqlen_offsets", dims=(1,))
            if offsets.shape[0] != cu_seqlens.shape[0] - 1:
                raise ValueError(
                    f"seqlen_offsets must have one entry per sequence ({cu_seqlens.shape[0] - 1}), got "
                    f"{tuple(offsets.shape)}"
                )
        return varlen_positions(cu_seqlens, T, offsets)
    if positions is not None:
        if seqlen_offsets is not None:
            raise ValueError("pass either seqlen_offsets or positions= (add the offsets to the positions), not both")
        return positions
    if seqlen_offsets is None and layout == "bhtd":
        return None
    if isinstance(seqlen_offsets, torch.Tensor):
        check_positions(seqlen_offsets, name="seqlen_offsets", dims=(1,))
        if layout == "thd" or x4.dim() != 4 or seqlen_offsets.shape[0] != x4.shape[0]:
            raise ValueError(
                f"seqlen_offsets as a tensor holds one offset per batch row ({x4.shape[0] if x4.dim() == 4 else '-'})"
                f" of a batched layout, or per sequence with cu_seqlens; got shape {tuple(seqlen_offsets.shape)}"
            )
        return torch.arange(T, device=device) + seqlen_offsets.to(device=device, dtype=torch.int64)[:, None]  # [B, T]
    off = 0 if seqlen_offsets is None else seqlen_offsets
    if not isinstance(off, int) or isinstance(off, bool) or off < 0:
        raise ValueError(f"seqlen_offsets must be a non-negative int or a [B] / [n_seq] tensor, got {off!r}")
    return off


def _positions_for(
    x4: torch.Tensor,
    cos: Any,
    sin: Any,
    layout: str,
    positions: torch.Tensor | None,
    cu_seqlens: torch.Tensor | None,
    seqlen_offsets: int | torch.Tensor | None,
    name: str,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """Resolve layout / varlen / offsets to ``(cos, sin, positions)`` for the ``[..., H, T, D]`` view ``x4``.

    Returns tables and per-token positions in the dispatch contract: ``positions`` None (cos/sin broadcast over
    x4) or ``[T]`` / ``[B, T]`` rows of ``[L, r]`` tables.
    """
    T = x4.shape[-2]
    table_rows = cu_seqlens is None and positions is None and (seqlen_offsets is not None or layout != "bhtd")
    if table_rows and (not isinstance(cos, torch.Tensor) or cos.dim() != 2):
        # A table [L, r] read from row offset (+ t): flash-attention's seqlen_offsets and every non-default layout.
        raise ValueError(
            f"with layout={layout!r} or seqlen_offsets, cos and sin must be [L, rotary_dim/2] tables (token t uses "
            f"row t + offset), got shape {tuple(cos.shape) if isinstance(cos, torch.Tensor) else type(cos)}"
        )
    device = cos.device if isinstance(cos, torch.Tensor) else x4.device
    pos = _token_positions(x4, layout, positions, cu_seqlens, seqlen_offsets, device)
    if pos is None or isinstance(pos, torch.Tensor):
        return cos, sin, pos
    if pos + T > cos.shape[0]:
        raise ValueError(
            f"{name} has {T} tokens from row {pos} but the cos/sin table has {cos.shape[0]} rows; build the table for "
            f"at least {pos + T} positions"
        )
    return cos[pos : pos + T], sin[pos : pos + T], None


def _check_slice(head_dim: int, cos: torch.Tensor, rotary_offset: int, name: str) -> None:
    if not isinstance(rotary_offset, int) or isinstance(rotary_offset, bool) or rotary_offset < 0:
        raise ValueError(f"rotary_offset must be a non-negative int, got {rotary_offset!r}")
    r2 = 2 * cos.shape[-1]
    if rotary_offset + r2 > head_dim:
        raise ValueError(
            f"rotary_offset={rotary_offset} + rotary_dim {r2} exceeds {name}'s head_dim {head_dim}: the rotated "
            f"features are [rotary_offset, rotary_offset + rotary_dim)"
        )


def _prepare_call(
    x: Any,
    cos: Any,
    sin: Any,
    layout: str,
    positions: torch.Tensor | None,
    cu_seqlens: torch.Tensor | None,
    seqlen_offsets: int | torch.Tensor | None,
    rotary_offset: int,
    name: str,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor | None]:
    if layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {LAYOUTS}, got {layout!r}")
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if x.dim() < 2:
        raise ValueError(f"{name} must be [..., T, head_dim] with at least 2 dims, got shape {tuple(x.shape)}")
    x4 = _to_bhtd(x, layout, name)
    cos, sin, pos = _positions_for(x4, cos, sin, layout, positions, cu_seqlens, seqlen_offsets, name)
    if layout == "thd" and isinstance(pos, torch.Tensor) and pos.dim() == 1:
        pos = pos.unsqueeze(0)  # [1, total]: the one "batch" row of the [1, H, total, D] view
    _check_call(x4, cos, sin, pos, rotary_offset, name)
    return x4, cos, sin, pos


def _check_call(
    x4: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, pos: torch.Tensor | None, rotary_offset: int, name: str
) -> None:
    if rotary_offset:
        _check_slice(x4.shape[-1], cos, rotary_offset, name)
        # Validate widths on the rotated slice: the features outside it pass through.
        _check_rotary_args(x4[..., rotary_offset:], cos, sin, pos, name)
    else:
        _check_rotary_args(x4, cos, sin, pos, name)


def apply_rotary(
    x: torch.Tensor,
    cos: torch.Tensor,
    sin: torch.Tensor,
    *,
    interleaved: bool = False,
    positions: torch.Tensor | None = None,
    layout: str = "bhtd",
    cu_seqlens: torch.Tensor | None = None,
    seqlen_offsets: int | torch.Tensor | None = None,
    rotary_offset: int = 0,
    inverse: bool = False,
    inplace: bool = False,
) -> torch.Tensor:
    """Rotate ``2 * cos.shape[-1]`` features of ``x`` (from ``rotary_offset``); the rest pass through.

    Args:
        x: ``[..., H, T, D]`` (``layout="bhtd"``, the default), ``[B, T, H, D]`` (``"bthd"``: flash-attention,
            vLLM, TransformerEngine ``bshd``), ``[T, B, H, D]`` (``"tbhd"``: ``sbhd``) or ``[total_tokens, H, D]``
            (``"thd"``: packed sequences); any float dtype, any strides with unit stride on D (views of a packed
            QKV projection are rotated where they are, never copied).
        cos, sin: ``"bhtd"`` without offsets: ``[..., T, r]`` from :func:`rope_cos_sin`, broadcast over x's
            leading dims. Otherwise ``[L, r]`` tables (bf16/fp16 accepted and widened: the result is only as
            precise as the table; :func:`split_cos_sin_cache` reads vLLM's ``cos_sin_cache``), and token t uses
            row ``positions[..., t]``, else row ``t + offset``.
        interleaved: pairs ``(x[2j], x[2j+1])`` (GPT-J, RoFormer, Meta Llama checkpoints) instead of the
            half pairing ``(x[j], x[j+r])`` (Hugging Face Llama, GPT-NeoX, Qwen).
        positions: optional integer ``[T]`` or ``[B, T]`` (B = the batch dim; ``[total_tokens]`` for ``"thd"``):
            per-token positions, KV-cache offsets, packed sequences, without building a ``[B, T, r]`` table.
            They index table rows, so float positions are refused; for fractional positions pass
            ``rope_cos_sin(inv_freq, positions)`` tables (``[T, r]``, or ``[B, 1, T, r]`` per batch row) instead.
        cu_seqlens: ``"thd"`` only: ``[n_seq + 1]`` int32/int64 cumulative lengths (flash-attention varlen);
            positions restart at 0 (plus ``seqlen_offsets``) for each sequence.
        seqlen_offsets: an int (all rows start there) or a ``[B]`` / ``[n_seq]`` integer tensor (per batch row or
            per sequence): the position of the first token, e.g. the KV-cache length during decoding.
        rotary_offset: first rotated feature: features ``[rotary_offset, rotary_offset + 2r)`` rotate (DeepSeek
            style trailing slices: ``rotary_offset = D - 2r``).
        inverse: rotate by minus the angle (undo a rotation: ``apply_rotary(apply_rotary(x, ...), ...,
            inverse=True)`` is x up to rounding).
        inplace: write into x and return it (see :func:`apply_rotary_qk`).

    Returns:
        ``[..., T, D]`` in x's layout and dtype (computed in float32 for bf16/fp16).
    """
    x4, cos, sin, pos = _prepare_call(x, cos, sin, layout, positions, cu_seqlens, seqlen_offsets, rotary_offset, "x")
    out = dispatch.apply_rotary(
        x4, cos, sin, interleaved=interleaved, positions=pos, inplace=inplace, offset=rotary_offset, conj=inverse
    )
    return x if inplace else _from_bhtd(out, layout)


def apply_rotary_qk(
    q: torch.Tensor,
    k: torch.Tensor,
    cos: torch.Tensor,
    sin: torch.Tensor,
    *,
    interleaved: bool = False,
    inplace: bool = False,
    positions: torch.Tensor | None = None,
    layout: str = "bhtd",
    cu_seqlens: torch.Tensor | None = None,
    seqlen_offsets: int | torch.Tensor | None = None,
    rotary_offset: int = 0,
    inverse: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Rotate queries and keys with the same table in one pass. ``q: [..., Hq, T, D]``, ``k: [..., Hk, T, D]``.

    q and k may have different head counts (GQA/MQA); the features outside the rotated slice are kept. Layouts,
    tables, positions, ``cu_seqlens``, ``seqlen_offsets``, ``rotary_offset`` and ``inverse`` as in
    :func:`apply_rotary` (the same for q and k).

    ``inplace=True`` overwrites q and k and returns them. It works on views (the q and k heads of a packed
    ``[B, T, Hq + 2 Hk, D]`` or ``[B, T, 3, H, D]`` projection, v untouched), bumps their version counters (a q
    saved by another op for backward then fails autograd's in-place check instead of corrupting gradients), and
    works on tensors that require grad (not leaves): the backward rotates the incoming gradient by minus the
    angle, saving only the tables. It raises ``ValueError`` when q or k has elements sharing memory (an expanded
    tensor) or q and k overlap (``apply_rotary_qk(x, x, ..., inplace=True)``): the shared elements would be
    rotated more than once. Under ``torch.compile`` it is computed out of place and copied back.
    """
    q4, cq, sq, pos = _prepare_call(q, cos, sin, layout, positions, cu_seqlens, seqlen_offsets, rotary_offset, "q")
    if not isinstance(k, torch.Tensor):
        raise TypeError(f"k must be a torch.Tensor, got {type(k).__name__}")
    if k.dim() < 2:
        raise ValueError(f"k must be [..., T, head_dim] with at least 2 dims, got shape {tuple(k.shape)}")
    k4 = _to_bhtd(k, layout, "k")
    _check_call(k4, cq, sq, pos, rotary_offset, "k")  # q's resolved tables and positions (built once)
    if q.shape[-1] != k.shape[-1]:
        raise ValueError(f"q and k must have the same head_dim, got {q.shape[-1]} and {k.shape[-1]}")
    out_q, out_k = dispatch.apply_rotary_qk(
        q4, k4, cq, sq, interleaved=interleaved, inplace=inplace, positions=pos, offset=rotary_offset, conj=inverse
    )
    if inplace:
        return q, k
    return _from_bhtd(out_q, layout), _from_bhtd(out_k, layout)


def apply_rotary_qk_tablefree(
    q: torch.Tensor,
    k: torch.Tensor | None,
    inv_freq: torch.Tensor,
    *,
    positions: torch.Tensor | None = None,
    interleaved: bool = False,
    layout: str = "bhtd",
    cu_seqlens: torch.Tensor | None = None,
    seqlen_offsets: int | torch.Tensor | None = None,
    rotary_offset: int = 0,
    inverse: bool = False,
    attention_factor: float = 1.0,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Rotate q (and k) with angles formed inside the kernel from positions and ``inv_freq``: no cos/sin table.

    The same rotation as ``apply_rotary_qk(q, k, *rope_cos_sin(inv_freq, pos, attention_factor=...), ...)``: the
    angle of each (token, pair) is reduced exactly for any int64 position
    (:func:`ropekit.angles.exact_position_angles`), once per token and reused for every head of q and k
    (:mod:`ropekit.kernels.tablefree`). Its cos/sin may differ from the table's by one float32 ulp; the precision
    is the same.

    Args:
        q: ``[..., Hq, T, D]`` in ``layout`` (see :func:`apply_rotary`); k: ``[..., Hk, T, D]`` or ``None`` (q only).
        inv_freq: ``[r]`` float frequencies (:func:`ropekit.rope_frequencies`); ``2 r`` features rotate.
        positions: integer ``[T]`` / ``[B, T]`` (``[total_tokens]`` for ``"thd"``); default ``t`` (plus
            ``seqlen_offsets``). ``cu_seqlens``: ``"thd"`` packed sequences, positions restart per sequence.
        attention_factor: multiplies cos and sin (YaRN / LongRoPE's ``attention_factor`` from
            :func:`ropekit.rope_frequencies`).
        interleaved, layout, seqlen_offsets, rotary_offset, inverse: as in :func:`apply_rotary`.

    Returns:
        ``(q_out, k_out)`` new tensors in the inputs' layout and dtype (``k_out`` None when k is None).
        Differentiable in q and k; the backward saves only the positions and frequencies.
    """
    if layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {LAYOUTS}, got {layout!r}")
    _check_inv_freq(inv_freq)
    if isinstance(attention_factor, bool) or not isinstance(attention_factor, (int, float)) or not (
        math.isfinite(attention_factor) and attention_factor > 0
    ):
        raise ValueError(f"attention_factor must be a positive finite number, got {attention_factor!r}")
    views = []
    for name, x in (("q", q), ("k", k)):
        if x is None and name == "k":
            continue
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
        if x.dtype not in _FLOATS:
            raise ValueError(f"{name} must be a floating tensor (fp16/bf16/fp32/fp64), got {x.dtype}")
        if x.dim() < 2:
            raise ValueError(f"{name} must be [..., T, head_dim] with at least 2 dims, got shape {tuple(x.shape)}")
        views.append(_to_bhtd(x, layout, name))
    q4 = views[0]
    k4 = views[1] if len(views) > 1 else None
    r = inv_freq.shape[0]
    if r == 0:
        raise ValueError("inv_freq is empty: nothing to rotate (rotary_dim must be >= 2)")
    _check_slice(q4.shape[-1], inv_freq[None], rotary_offset, "q")  # [1, r]: the slice check reads r columns
    if k4 is not None and (k4.shape[-1] != q4.shape[-1] or k4.shape[-2] != q4.shape[-2] or k4.dtype != q4.dtype):
        raise ValueError(
            f"q {tuple(q.shape)} {q.dtype} and k {tuple(k4.shape)} {k4.dtype} must share T, head_dim and dtype"
        )
    unbatched = q4.dim() == 3  # [H, T, D]
    if unbatched:
        q4, k4 = q4[None], (None if k4 is None else k4[None])
    if q4.dim() != 4 or (k4 is not None and k4.dim() != 4):
        raise ValueError(f"q and k must be [B, H, T, D] or [H, T, D] (or their layout's form), got {tuple(q.shape)}")
    if k4 is not None and k4.shape[0] != q4.shape[0]:
        raise ValueError(f"q and k must share the batch dim, got {q4.shape[0]} and {k4.shape[0]}")
    T = q4.shape[-2]
    pos = _token_positions(q4, layout, positions, cu_seqlens, seqlen_offsets, q4.device)
    if pos is None or isinstance(pos, int):
        pos = torch.arange(T, device=q4.device) + (pos or 0)
    check_positions(pos, dims=(1, 2))
    if pos.shape[-1] != T or (pos.dim() == 2 and pos.shape[0] not in (1, q4.shape[0])):
        raise ValueError(
            f"positions must be [T] or [B, T] with T = {T} and B = {q4.shape[0]}, got shape {tuple(pos.shape)}"
        )
    pos2 = pos.reshape(1, T) if pos.dim() == 1 else pos  # [Bp, T]
    out_q, out_k = tablefree.rotate(
        q4, k4, pos2.to(torch.int64), inv_freq, interleaved=interleaved, conj=inverse, offset=rotary_offset,
        scale=float(attention_factor), backend=current_backend().value,
    )  # fmt: skip
    if unbatched:
        out_q, out_k = out_q[0], (None if out_k is None else out_k[0])
    return _from_bhtd(out_q, layout), (None if out_k is None else _from_bhtd(out_k, layout))
