"""Positions and rotation angles: the one home of the position checks and of the reduction modulo 2 pi.

Every place that turns positions into angles (the functional tier, the KV-cache re-rotation, the
transformers rotary module, the N-D encodings) checks its positions with :func:`check_positions` and
reduces float64 angles with :func:`wrap_angles`, so a precision or validation decision is made once.

Legend: ``positions: [...]`` integer, ``inv_freq: [r]`` float, angles ``[..., r]``.
"""

from __future__ import annotations

import math

import torch

__all__ = ["check_positions", "position_angles", "wrap_angles"]

_TWO_PI = 2 * math.pi


def check_positions(
    positions: object,
    *,
    name: str = "positions",
    dims: tuple[int, ...] | None = None,
    allow_negative: bool = True,
) -> torch.Tensor:
    """Check that ``positions`` is an integer tensor (and, optionally, its rank and sign); return it.

    Args:
        positions: the value to check.
        name: the argument's name, used in the error messages.
        dims: accepted numbers of dimensions (e.g. ``(1, 2)`` for ``[T]`` / ``[B, T]``); ``None``: any.
        allow_negative: when False, a negative position is an error. The check reads the minimum (one host
            sync), so it is skipped while ``torch.compile`` traces.

    Raises:
        TypeError: not a tensor. ValueError: float/bool/complex dtype, wrong rank or a negative position.
    """
    if not isinstance(positions, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor of integers, got {type(positions).__name__}")
    if positions.is_floating_point() or positions.is_complex() or positions.dtype == torch.bool:
        raise ValueError(
            f"{name} must be an integer tensor (int32/int64), got {positions.dtype}; "
            "token positions are whole numbers: use torch.arange(T) or positions.long()"
        )
    if dims is not None and positions.dim() not in dims:
        shapes = " or ".join({1: "[T]", 2: "[B, T]"}.get(d, f"{d}-D") for d in dims)
        raise ValueError(f"{name} must be {shapes}, got shape {tuple(positions.shape)}")
    if (
        not allow_negative
        and positions.numel()
        and positions.device.type != "meta"
        and not torch.compiler.is_compiling()
        and int(positions.min()) < 0
    ):
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
