"""Positions and rotation angles: the one home of the position checks and of the reduction modulo 2 pi.

Every place that turns positions into angles (the functional tier, the KV-cache re-rotation, the
transformers rotary module, the N-D encodings) checks its positions with :func:`check_positions` and
reduces float64 angles with :func:`wrap_angles`, so a precision or validation decision is made once.

Legend: ``positions: [...]`` integer (or float32/float64 where a function says so: fractional positions),
``inv_freq: [r]`` float, angles ``[..., r]``.
"""

from __future__ import annotations

import math
from fractions import Fraction

import torch

__all__ = [
    "EXACT_POSITION_LIMIT",
    "check_cu_seqlens",
    "check_positions",
    "exact_angle_constants",
    "exact_position_angles",
    "exceeds_exact_range",
    "fractional_position_angles",
    "position_angles",
    "split_fractional",
    "varlen_positions",
    "wrap_angles",
]

_TWO_PI = 2 * math.pi

# |position| < 2**29: a 29-bit integer times a float32 frequency (24-bit significand) is exact in float64 (53 bits),
# so the float64 reduction is within one float32 rounding of the true angle. Beyond, the product rounds (2**40 was
# off by 3.9e-5 rad, 2**62 by 2 rad); :func:`exact_position_angles` splits such positions instead.
EXACT_POSITION_LIMIT = 1 << 29
_DIGIT_BITS = 21  # int64 = three 21-bit digits (the top one signed); a digit times a float64 is within 2**-31 relative
# 2 pi to 63 significant digits: (2**42 f) mod 2 pi needs about 13 + 17 of them.
_INT64_BOUND = 2.0**63  # float positions at or beyond this have no int64 integer part
_TWO_PI_EXACT = Fraction(2 * 314159265358979323846264338327950288419716939937510582097494459, 10**62)


def check_positions(
    positions: object,
    *,
    name: str = "positions",
    dims: tuple[int, ...] | None = None,
    allow_negative: bool = True,
    allow_float: bool = False,
) -> torch.Tensor:
    """Check that ``positions`` is an integer tensor (and, optionally, its rank and sign); return it.

    Args:
        positions: the value to check.
        name: the argument's name, used in the error messages.
        dims: accepted numbers of dimensions (e.g. ``(1, 2)`` for ``[T]`` / ``[B, T]``); ``None``: any.
        allow_negative: when False, a negative position is an error. The check reads the minimum (one host
            sync), so it is skipped while ``torch.compile`` traces.
        allow_float: also accept float32/float64 (fractional) positions. They must be finite and within the
            int64 range (``|p| < 2**63``: their integer part is reduced exactly, see
            :func:`fractional_position_angles`); that check reads the values (one host sync, skipped while
            ``torch.compile`` traces and on meta tensors). float16/bfloat16 are refused: they hold whole numbers
            exactly only up to 2048/256. Negative float positions follow ``allow_negative`` like integers.

    Raises:
        TypeError: not a tensor. ValueError: a dtype that is not accepted, non-finite or out-of-range float
        positions, wrong rank or a negative position.
    """
    if not isinstance(positions, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor of integers, got {type(positions).__name__}")
    is_float = positions.is_floating_point()
    if is_float and allow_float and positions.dtype not in (torch.float32, torch.float64):
        raise ValueError(
            f"{name} must be integers (int32/int64) or float32/float64 fractional positions, got "
            f"{positions.dtype}, which holds whole numbers exactly only up to "
            f"{2048 if positions.dtype == torch.float16 else 256}: use positions.double()"
        )
    if (is_float and not allow_float) or positions.is_complex() or positions.dtype == torch.bool:
        raise ValueError(
            f"{name} must be an integer tensor (int32/int64) here, got {positions.dtype}: these positions index "
            "table rows or count tokens. Whole-number floats: positions.long(); fractional positions: build the "
            "cos/sin tables with ropekit.rope_cos_sin(inv_freq, positions) (it accepts float32/float64 positions) "
            "and apply them without positions="
        )
    if dims is not None and positions.dim() not in dims:
        shapes = " or ".join({1: "[T]", 2: "[B, T]"}.get(d, f"{d}-D") for d in dims)
        raise ValueError(f"{name} must be {shapes}, got shape {tuple(positions.shape)}")
    readable = positions.numel() and positions.device.type != "meta" and not torch.compiler.is_compiling()
    if is_float and readable:
        values = positions.detach()
        if not bool(torch.isfinite(values).all()):
            raise ValueError(f"{name} must be finite, got NaN or inf positions; check how they were computed")
        if float(values.abs().max()) >= _INT64_BOUND:
            raise ValueError(
                f"{name} must be within the int64 range (|p| < 2**63), got |p| up to {float(values.abs().max()):.3g}"
            )
    if not allow_negative and readable and float(positions.min()) < 0:
        raise ValueError(
            f"{name} must be >= 0, got a negative position; left padding should use position 0 for pads "
            "(e.g. positions = (attention_mask.cumsum(-1) - 1).clamp(min=0))"
        )
    return positions


def wrap_angles(
    angles: torch.Tensor, *, out: torch.Tensor | None = None, scratch: torch.Tensor | None = None
) -> torch.Tensor:
    """Reduce float64 ``angles`` to ``[-pi, pi]`` and narrow to float32 (same shape).

    Precision: the reduction is done in float64, where the angle of an integer position (< 2**29) times a
    float32 frequency is exact, so the result is within one float32 rounding of the true angle at any such
    position (float32 ``position * inv_freq`` is off by 6e-2 rad at 2**20). Differentiable: the number of
    turns is computed from a detached copy, so the gradient of the result is that of ``angles``.

    Buffered form (``out``: float32, ``scratch``: float64, both of ``angles``' shape): the same numbers with
    no allocation, overwriting ``angles`` and ``scratch``; not differentiable (chunked table builders).
    """
    if angles.dtype != torch.float64:
        raise ValueError(f"wrap_angles expects float64 angles (exact products), got {angles.dtype}")
    if out is not None:
        turns = torch.mul(angles, 1 / _TWO_PI, out=scratch).round_()
        return out.copy_(angles.sub_(turns, alpha=_TWO_PI))
    turns = torch.round(angles.detach() * (1 / _TWO_PI))
    return (angles - turns * _TWO_PI).to(torch.float32)


def position_angles(inv_freq: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
    """``positions * inv_freq`` formed in float64 and wrapped: ``[*positions.shape, r]`` float32 in ``[-pi, pi]``.

    No validation (callers check with :func:`check_positions`); integer or float positions alike.
    """
    angles = positions.to(torch.float64).unsqueeze(-1) * inv_freq.to(torch.float64)  # [..., r], exact for ints
    return wrap_angles(angles)


def check_cu_seqlens(cu_seqlens: object, total: int, *, name: str = "cu_seqlens") -> torch.Tensor:
    """Check flash-attention style cumulative sequence lengths ``[n_seq + 1]`` (0, ..., total); return them.

    Value checks (starts at 0, non-decreasing, ends at ``total``) read the tensor: eager only.
    """
    if not isinstance(cu_seqlens, torch.Tensor) or cu_seqlens.dtype not in (torch.int32, torch.int64):
        raise ValueError(
            f"{name} must be an int32/int64 tensor [n_seq + 1], got {type(cu_seqlens).__name__}"
            + (f" of {cu_seqlens.dtype}" if isinstance(cu_seqlens, torch.Tensor) else "")
        )
    if cu_seqlens.dim() != 1 or cu_seqlens.shape[0] < 2:
        raise ValueError(f"{name} must be [n_seq + 1] with n_seq >= 1, got shape {tuple(cu_seqlens.shape)}")
    if cu_seqlens.device.type != "meta" and not torch.compiler.is_compiling():
        first, last = int(cu_seqlens[0]), int(cu_seqlens[-1])
        if first != 0 or last != total or bool((cu_seqlens[1:] < cu_seqlens[:-1]).any()):
            raise ValueError(
                f"{name} must start at 0, never decrease and end at the token count {total}, got "
                f"{cu_seqlens.tolist() if cu_seqlens.numel() <= 16 else f'[{first}, ..., {last}]'}"
            )
    return cu_seqlens


def varlen_positions(cu_seqlens: torch.Tensor, total: int, offsets: int | torch.Tensor = 0) -> torch.Tensor:
    """Per-token positions of packed sequences: ``[total]`` int64, restarting at ``offsets[s]`` for sequence s.

    Token t of sequence s (``cu_seqlens[s] <= t < cu_seqlens[s + 1]``) gets ``t - cu_seqlens[s] + offsets[s]``
    (flash-attention's varlen rotary with ``seqlen_offsets``). ``offsets``: an int or ``[n_seq]`` integers.
    No validation (see :func:`check_cu_seqlens`).
    """
    cu = cu_seqlens.to(torch.int64)
    tok = torch.arange(total, device=cu.device)  # [total]
    seq = torch.searchsorted(cu[1:], tok, right=True).clamp_(max=cu.shape[0] - 2)  # sequence of each token
    pos = tok - cu[seq]
    if isinstance(offsets, torch.Tensor):
        return pos + offsets.to(device=cu.device, dtype=torch.int64)[seq]
    return pos + int(offsets) if offsets else pos


def exceeds_exact_range(positions: torch.Tensor) -> bool:
    """Whether an integer position has ``|p| >= 2**29`` (the float64 product with a float32 frequency would round).

    Reads the extreme values (one host sync); False while ``torch.compile`` traces and on meta tensors.
    """
    if (
        positions.is_floating_point()
        or not positions.numel()
        or positions.device.type == "meta"
        or torch.compiler.is_compiling()
        or positions.dtype in (torch.int8, torch.uint8, torch.int16, torch.bool)
    ):
        return False
    return int(positions.max()) >= EXACT_POSITION_LIMIT or int(positions.min()) <= -EXACT_POSITION_LIMIT


def _wrap64(angles: torch.Tensor) -> torch.Tensor:
    return angles - torch.round(angles * (1 / _TWO_PI)) * _TWO_PI


@torch.no_grad()
def exact_position_angles(inv_freq: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
    """``positions * inv_freq`` reduced to ``[-pi, pi]`` for every int64 position: ``[*positions.shape, r]`` float32.

    The position is split into three 21-bit digits ``p = d2 * 2**42 + d1 * 2**21 + d0`` (d2 signed), and
    ``c_i = (2**(21 i) * f) mod 2 pi`` is computed per frequency in exact rational arithmetic and rounded once to
    float64, so ``p * f = sum(d_i * c_i) (mod 2 pi)``. Each ``d_i * c_i`` (``|d_i| < 2**21``) is formed and reduced
    in float64 with an error below 3e-9 rad, so the result is within one float32 rounding plus 1e-8 rad of the
    true angle at any position, ``-2**63`` and ``2**63 - 1`` included. Not differentiable (the frequencies are
    taken as the float32 numbers given); ``positions`` must be integers.
    """
    return wrap_angles(_exact_angles64(inv_freq, positions))


@torch.no_grad()
def _exact_angles64(inv_freq: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
    """The digit-split sum of :func:`exact_position_angles` before narrowing: ``[..., r]`` float64, ``|a| <= 3 pi``."""
    c = exact_angle_constants(inv_freq).to(positions.device)  # [3, r]
    p = positions.to(torch.int64).unsqueeze(-1)  # [..., 1]
    mask = (1 << _DIGIT_BITS) - 1
    digits = (p & mask, (p >> _DIGIT_BITS) & mask, p >> (2 * _DIGIT_BITS))  # each |d| < 2**21, exact in float64
    parts = [_wrap64(d.to(torch.float64) * c[i]) for i, d in enumerate(digits)]
    return parts[0] + parts[1] + parts[2]  # [..., r], |total| <= 3 pi


_CONSTANTS_CACHE: dict[tuple[float, ...], torch.Tensor] = {}


def exact_angle_constants(inv_freq: torch.Tensor) -> torch.Tensor:
    """The digit constants of :func:`exact_position_angles`: ``[3, r]`` float64 CPU, row i ``(2**(21 i) f) mod 2 pi``.

    ``f`` is each frequency rounded to float32 (as :func:`exact_position_angles` takes it); exact rational
    arithmetic, rounded once to float64. Shared with the C++ ``rope_cos_sin`` pass, which does the same digit
    split itself. Cached per frequency vector (the rational arithmetic costs about a millisecond for 64
    frequencies; at most 256 vectors are kept). Treat the result as read-only.
    """
    key = tuple(inv_freq.detach().to(torch.float32).cpu().tolist())
    cached = _CONSTANTS_CACHE.get(key)
    if cached is None:
        freqs = [Fraction(f) for f in key]
        table = [[float((Fraction(1 << (_DIGIT_BITS * i)) * f) % _TWO_PI_EXACT) for f in freqs] for i in range(3)]
        cached = torch.tensor(table, dtype=torch.float64).reshape(3, len(key))  # [3, r]
        if len(_CONSTANTS_CACHE) >= 256:
            _CONSTANTS_CACHE.clear()
        _CONSTANTS_CACHE[key] = cached
    return cached


def split_fractional(positions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Float positions ``[...]`` -> (integer part ``floor(p)`` int64, fraction ``p - floor(p)`` float64 in [0, 1)).

    Both parts are exact (a float minus its floor is representable). The fraction keeps the gradient of
    ``positions`` (d frac / d p = 1), so angles built from it are differentiable in the positions.
    No validation (see :func:`check_positions` with ``allow_float=True``).
    """
    p64 = positions.to(torch.float64)
    whole = torch.floor(p64.detach())
    return whole.to(torch.int64), p64 - whole


def fractional_position_angles(inv_freq: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
    """``positions * inv_freq`` for float32/float64 positions in ``[-pi, pi]``: ``[*positions.shape, r]`` float32.

    The position is split into ``n = floor(p)`` (int64) and ``u = p - n`` in [0, 1), both exact. ``n * f`` takes
    the integer path (the exact float64 product below 2**29, the digit split of :func:`exact_position_angles`
    beyond, when ``inv_freq`` does not require grad) and ``u * f`` is added in float64 before the one reduction.

    Precision: the positions are taken as the float numbers given (a float32 position of 2**24 + 0.5 does not
    exist: pass float64 for large fractional positions; float64 resolves 2**-23 at 2**29 and 2**-10 at 2**42).
    The angle is within one float32 rounding plus 1e-8 rad of the true ``p * f`` of the given ``p`` for every
    ``|p| < 2**63``, ``u * f`` adding at most one float64 rounding. A whole-number float gives bit for bit the
    angles of the same integer position (the fraction adds an exact zero). Differentiable in ``positions``
    (through the fraction: d angle / d p = f) and, below 2**29, in ``inv_freq``.
    """
    whole, frac = split_fractional(positions)
    inv64 = inv_freq.to(torch.float64)
    if not inv_freq.requires_grad and exceeds_exact_range(whole):
        base = _exact_angles64(inv_freq, whole)
    else:
        base = whole.to(torch.float64).unsqueeze(-1) * inv64  # [..., r], exact below 2**29
    return wrap_angles(base + frac.unsqueeze(-1) * inv64)
