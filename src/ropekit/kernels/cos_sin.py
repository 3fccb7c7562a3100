"""The C++ ``rope_cos_sin`` pass: ``rope_angles``' float32 angles in one loop, then torch's float32 cos/sin.

Legend: ``positions: [...]`` integer (CPU), ``inv_freq: [r]`` float32/float64 (CPU); outputs ``[*positions.shape, r]``
float32; ``cst: [4, r]`` float64, the kernel's constants (:func:`constants`).

The angle of each (position, pair) is the float32 number :func:`ropekit.functional.rope_angles` forms, bit for
bit, by the same float64 operations: ``p * f`` reduced once when every ``|p| < 2**29``
(:func:`ropekit.angles.position_angles`), otherwise the digit split of :func:`ropekit.angles.exact_position_angles`
for all positions (exact at any int64). One C++ loop replaces torch's six float64 passes over ``[N, r]``; cosine
and sine are then torch's own float32 ``cos``/``sin`` of those angles, so the tables are bit-identical to
``cos(rope_angles(...))`` and ``sin(rope_angles(...))``: the precision contract of ``rope_angles`` plus torch's
cos/sin. See ``rotary_cpu.cpp`` ("rope_angles' float32 angles in one pass") and ``docs/kernels.md``.

The pure-torch form (:func:`cos_sin_torch`) is the reference and the fallback: it runs when the C++ build is
unavailable, for other devices, with ``use_backend("eager")``/``("reference")``/``("triton")``, and whenever
autograd is needed (the caller, :func:`ropekit.functional.rope_cos_sin`, decides that).
"""

from __future__ import annotations

import weakref

import torch

from ropekit.angles import exact_angle_constants, exact_position_angles, exceeds_exact_range, position_angles
from ropekit.kernels import cpu
from ropekit.kernels.backend import current_backend

__all__ = ["angles", "constants", "cos_sin", "cos_sin_torch", "fused_available"]

_INTS = (torch.int8, torch.uint8, torch.int16, torch.int32, torch.int64)


_CONSTANTS: dict[int, tuple[weakref.ref[torch.Tensor], int, torch.Tensor]] = {}  # id -> (tensor, version, cst)


def constants(inv_freq: torch.Tensor) -> torch.Tensor:
    """``[4, r]`` float64 CPU: the three digit constants of :func:`exact_angle_constants`, then ``f`` itself.

    Row 3 keeps each frequency at the float64 value given (the product below ``2**29`` uses it, as
    :func:`position_angles` does); the digit rows use it rounded to float32 (as :func:`exact_position_angles`).
    Cached per live frequency tensor and its version counter (an in-place change recomputes; the lookup costs
    microseconds where reading the values back costs about 0.1 ms), at most 64 entries. Read-only.
    """
    key = id(inv_freq)
    hit = _CONSTANTS.get(key)
    if hit is not None and hit[0]() is inv_freq and hit[1] == inv_freq._version:
        return hit[2]
    f = inv_freq.detach().to("cpu", torch.float64).reshape(1, -1)
    cst = torch.cat([exact_angle_constants(inv_freq), f])
    if len(_CONSTANTS) >= 64:
        _CONSTANTS.clear()
    _CONSTANTS[key] = (weakref.ref(inv_freq), inv_freq._version, cst)
    return cst


def cos_sin_torch(inv_freq: torch.Tensor, positions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Reference: ``rope_angles``' float32 angles then torch cos/sin, each ``[*positions.shape, r]`` float32."""
    if exceeds_exact_range(positions):
        angles = exact_position_angles(inv_freq, positions)
    else:
        angles = position_angles(inv_freq, positions)
    return torch.cos(angles), torch.sin(angles)


def fused_available(inv_freq: torch.Tensor, positions: torch.Tensor) -> bool:
    """Whether :func:`cos_sin` runs the C++ pass for these inputs (CPU integers, float32/64 frequencies, backend)."""
    return (
        positions.device.type == "cpu"
        and inv_freq.device.type == "cpu"
        and positions.dtype in _INTS
        and inv_freq.dtype in (torch.float32, torch.float64)
        and current_backend().value in ("auto", "cpp")
        and cpu.load(warn=False) is not None  # no build: the torch path's same numbers; the rotary ops warn
    )


@torch.no_grad()
def angles(inv_freq: torch.Tensor, positions: torch.Tensor) -> torch.Tensor | None:
    """``rope_angles(inv_freq, positions)`` ``[*positions.shape, r]`` from the C++ loop, bit for bit; None when it
    cannot run (:func:`fused_available`). No validation, no autograd."""
    if not fused_available(inv_freq, positions):
        return None
    module = cpu.load(warn=False)
    assert module is not None  # fused_available loaded it
    flat = positions.reshape(-1).to(torch.int64)  # [N]; a view for contiguous int64 positions
    out: torch.Tensor = module.rope_angles32(flat, constants(inv_freq))  # [N, r]; the reduction as rope_angles
    return out.view(*positions.shape, inv_freq.numel())


@torch.no_grad()
def cos_sin(inv_freq: torch.Tensor, positions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor] | None:
    """cos, sin ``[*positions.shape, r]`` float32 of the C++ angles; None when it cannot run.

    No validation (the caller checks positions and frequencies) and no autograd.
    """
    a = angles(inv_freq, positions)
    return None if a is None else (torch.cos(a), torch.sin(a))
