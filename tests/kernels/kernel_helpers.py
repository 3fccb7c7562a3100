"""Case builders and tolerances shared by the kernel tests.

Legend: ``q: [B, Hq, T, D]``, ``k: [B, Hk, T, D]``, ``r = rotary_dim / 2``, tables ``[L, r]``.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass

import torch

from ropekit import rope_cos_sin
from ropekit.reference import apply_rotary_reference

HAS_TRITON = importlib.util.find_spec("triton") is not None
POSITION_MODES = ("table", "batch_table", "pos1d", "pos2d")


def ulp_tolerance(dtype: torch.dtype, ref: torch.Tensor) -> float:
    """Absolute tolerance from the reference's own rounding.

    Both sides round one float32 (float64 for float64 inputs) value to ``dtype`` once; the value may differ by a
    few compute-type roundings (association, rounding mode), so they differ by at most one unit in the last place
    of ``dtype`` at the largest magnitude, plus a few compute-type epsilons.
    """
    scale = max(float(ref.abs().max()) if ref.numel() else 1.0, 1.0)
    compute_eps = torch.finfo(torch.float64 if dtype == torch.float64 else torch.float32).eps
    return (torch.finfo(dtype).eps + 8 * compute_eps) * scale


@dataclass
class Case:
    q: torch.Tensor
    k: torch.Tensor
    cos: torch.Tensor  # what the op is given: [..., T, r] or a table [L, r]
    sin: torch.Tensor
    positions: torch.Tensor | None
    cos_full: torch.Tensor  # the equivalent per-token table for the reference, broadcasting over q and k
    sin_full: torch.Tensor


def make_case(
    dtype: torch.dtype,
    mode: str,
    *,
    B: int = 2,
    Hq: int = 4,
    Hk: int = 1,
    T: int = 5,
    D: int = 22,
    r: int = 11,
    seed: int = 0,
) -> Case:
    """Random q, k and cos/sin in one of :data:`POSITION_MODES` (odd sizes by default)."""
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(B, Hq, T, D, generator=g).to(dtype)
    k = torch.randn(B, Hk, T, D, generator=g).to(dtype)
    inv_freq = 1.0 / 10000 ** (torch.arange(r, dtype=torch.float32) / r)
    positions = None
    if mode == "table":  # shared [T, r]
        cos, sin = rope_cos_sin(inv_freq, torch.arange(T))
        cos_full, sin_full = cos, sin
    elif mode == "batch_table":  # per-batch [B, 1, T, r], e.g. left padding
        pos = torch.stack([torch.arange(T) + 3 * b for b in range(B)])  # [B, T]
        cos, sin = rope_cos_sin(inv_freq, pos)
        cos, sin = cos[:, None], sin[:, None]  # [B, 1, T, r]
        cos_full, sin_full = cos, sin
    else:
        L = T + 9
        cos, sin = rope_cos_sin(inv_freq, torch.arange(L))  # tables [L, r]
        if mode == "pos1d":  # KV-cache offset
            positions = torch.arange(T) + 7
            cos_full, sin_full = cos[positions], sin[positions]  # [T, r]
        else:  # packed sequences restarting at 0, different per batch row
            positions = torch.stack([(torch.arange(T) * (b + 1)) % (T + 2) for b in range(B)])  # [B, T]
            cos_full, sin_full = cos[positions][:, None], sin[positions][:, None]  # [B, 1, T, r]
    return Case(q, k, cos, sin, positions, cos_full, sin_full)


def reference_qk(case: Case, interleaved: bool) -> tuple[torch.Tensor, torch.Tensor]:
    return tuple(
        apply_rotary_reference(t, case.cos_full, case.sin_full, interleaved=interleaved) for t in (case.q, case.k)
    )  # type: ignore[return-value]


def assert_matches(got: torch.Tensor, ref: torch.Tensor) -> None:
    assert got.dtype == ref.dtype and got.shape == ref.shape
    tol = ulp_tolerance(ref.dtype, ref)
    err = float((got.double() - ref.double()).abs().max()) if ref.numel() else 0.0
    assert err <= tol, f"max abs error {err:.3g} > tolerance {tol:.3g} ({ref.dtype}, shape {tuple(ref.shape)})"
