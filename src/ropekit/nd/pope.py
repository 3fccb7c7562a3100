"""N-D PoPE: PoPE's polar features (Gopalakrishnan et al. 2025, "Decoupling the 'What' and 'Where' with Polar
Coordinate Positional Embeddings") on the axial split of :mod:`ropekit.nd` (RoPE-ViT's axial form, Heo et al. 2024).

Legend: ``A`` axes, ``D`` head dim, ``q: [B, H, T, D]``, ``k: [B, Hk, Tk, D]``, ``positions: [T, A]`` or
``[B, T, A]`` (integer or float coordinates), ``freqs: [A, D]`` float64 (feature ``c`` turns by
``sum_a p_a freqs[a, c]``; one non-zero entry per column), ``phase_bias: [H, D]``; outputs ``[B, H, T, 2D]``
(real and imaginary part of each feature, interleaved, as in :func:`ropekit.pope.apply_pope`).

PoPE gives every feature ``c`` (not every pair) one frequency, so here the ``D`` features, not ``D/2`` pairs, are
split between the axes: axis ``a`` owns ``n_a`` features with its own ladder ``base_a^(-i / n_a)``, ``i < n_a``
(1-D PoPE's ladder :func:`ropekit.pope.pope_frequencies` over the axis' slice), placed ``"chunked"`` or
``"interleaved"`` exactly like :func:`ropekit.nd.axial_frequencies` places pairs. The score is

    a_ts = sum_c softplus(q_tc) softplus(k_sc) cos(sum_a (p_t,a - p_s,a) freqs[a, c] - delta_c),

relative on every axis. With one axis this is 1-D PoPE, bit for bit (same frequencies, same float64 angles).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from ropekit.angles import check_positions
from ropekit.nd.functional import axial_frequencies, nd_angles
from ropekit.pope import pope_features, pope_frequencies

__all__ = ["AxialPolarEmbedding", "apply_pope_nd", "pope_nd_frequencies", "split_features"]


def split_features(head_dim: int, n_axes: int) -> list[int]:
    """Equal split of the ``head_dim`` PoPE features between ``n_axes`` axes (the first axes get the remainder)."""
    for name, value in (("head_dim", head_dim), ("n_axes", n_axes)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive int, got {value!r}")
    if head_dim < n_axes:
        raise ValueError(f"head_dim {head_dim} must be >= n_axes {n_axes} (every axis owns at least one feature)")
    return [head_dim // n_axes + (1 if a < head_dim % n_axes else 0) for a in range(n_axes)]


def pope_nd_frequencies(
    features_per_axis: Sequence[int], base: float | Sequence[float] = 10_000.0, *, layout: str = "chunked"
) -> torch.Tensor:
    """``[A, D]`` float64, ``D = sum(features_per_axis)``: axis ``a``'s features carry ``base_a^(-i / n_a)``.

    Where each feature goes (``layout``: ``"chunked"`` or ``"interleaved"``) is :func:`ropekit.nd.axial_frequencies`'
    placement; the values are 1-D PoPE's ladder per axis in float64, so one axis gives ``pope_frequencies(D, base)``.
    """
    counts = [int(n) for n in features_per_axis]
    bases = [float(base)] * len(counts) if isinstance(base, (int, float)) else [float(b) for b in base]
    if len(bases) != len(counts):
        raise ValueError(f"base must be one number or one per axis ({len(counts)}), got {len(bases)} values")
    ladders = [pope_frequencies(max(n, 1), b)[:n] for n, b in zip(counts, bases, strict=True)]  # validates bases
    placement = axial_frequencies(counts, 2.0, layout=layout) != 0  # [A, D] bool; validates counts and layout
    freqs = torch.zeros(placement.shape, dtype=torch.float64)
    for a, ladder in enumerate(ladders):
        freqs[a, placement[a]] = ladder  # the axis' columns in increasing order: its ladder in order
    return freqs


def _check_nd_positions(positions: object, n_axes: int, name: str) -> torch.Tensor:
    if isinstance(positions, torch.Tensor) and (positions.dim() not in (2, 3) or positions.shape[-1] != n_axes):
        raise ValueError(
            f"{name} must be [T, {n_axes}] or [B, T, {n_axes}] coordinates (one per axis), got shape "
            f"{tuple(positions.shape)}; for an H x W grid use ropekit.nd.grid_positions(H, W)"
        )
    return check_positions(positions, name=name, allow_float=True)


def apply_pope_nd(
    q: torch.Tensor,
    k: torch.Tensor,
    freqs: torch.Tensor,
    positions: torch.Tensor,
    phase_bias: torch.Tensor | None = None,
    *,
    k_positions: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``q: [B, H, T, D]``, ``k: [B, Hk, Tk, D]`` -> ``[B, H, T, 2D]``, ``[B, Hk, Tk, 2D]`` (float32 or float64).

    ``freqs: [A, D]`` (see :func:`pope_nd_frequencies`), ``positions`` the queries' ``[T, A]`` / ``[B, T, A]``,
    ``k_positions`` the keys' (default: the same); ``phase_bias: [H, D]`` is clamped to ``[-2 pi, 0]``.
    ``q' . k'`` is the N-D PoPE score. Phases: :func:`ropekit.nd.nd_angles` (float64 products, reduced mod 2 pi).
    """
    for name, x in (("q", q), ("k", k)):
        if not isinstance(x, torch.Tensor) or x.dim() != 4 or not x.is_floating_point():
            raise ValueError(f"{name} must be a floating [B, H, T, D] tensor, got {getattr(x, 'shape', type(x))}")
    if not isinstance(freqs, torch.Tensor) or freqs.dim() != 2 or not freqs.is_floating_point():
        raise ValueError(
            f"freqs must be a float [A, D] tensor (pope_nd_frequencies), got {getattr(freqs, 'shape', freqs)}"
        )
    n_axes, D = freqs.shape
    if q.shape[-1] != D or k.shape[-1] != D:
        raise ValueError(f"q and k must have D={D} features like freqs [A, D], got {q.shape[-1]} and {k.shape[-1]}")
    _check_nd_positions(positions, n_axes, "positions")
    k_positions = positions if k_positions is None else _check_nd_positions(k_positions, n_axes, "k_positions")
    for name, p, x in (("positions", positions, q), ("k_positions", k_positions, k)):
        if p.shape[-2] != x.shape[-2]:
            raise ValueError(f"{name} has {p.shape[-2]} tokens but {'q' if x is q else 'k'} has {x.shape[-2]}")
    return pope_features(q, k, nd_angles(freqs, positions), nd_angles(freqs, k_positions), phase_bias)


class AxialPolarEmbedding(nn.Module):
    """N-D PoPE for ``n_heads`` query heads: axial frequencies ``[A, D]`` and a learned phase offset ``[H, D]``.

    Args:
        head_dim: ``D``; every feature gets a phase.
        n_heads: query heads (one phase offset per head and feature).
        n_axes: ``A`` (2 for images, 3 for video).
        features_per_axis: explicit split of the ``D`` features (default: equal, :func:`split_features`).
        base: one base or one per axis (1-D PoPE's default 10^4).
        layout: ``"chunked"`` (axis 0's features first) or ``"interleaved"`` (round-robin).
        bias_uniform_init: phase offsets uniform in ``[-2 pi, 0]`` instead of 0 (as :class:`ropekit.PolarEmbedding`).
    """

    freqs: torch.Tensor

    def __init__(
        self,
        head_dim: int,
        n_heads: int,
        n_axes: int = 2,
        *,
        features_per_axis: Sequence[int] | None = None,
        base: float | Sequence[float] = 10_000.0,
        layout: str = "chunked",
        bias_uniform_init: bool = False,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        split = list(features_per_axis) if features_per_axis is not None else split_features(head_dim, n_axes)
        if len(split) != n_axes or sum(split) != head_dim:
            raise ValueError(f"features_per_axis {split} must have {n_axes} entries summing to head_dim {head_dim}")
        if not isinstance(bias_uniform_init, bool):
            raise ValueError(f"bias_uniform_init must be True or False, got {bias_uniform_init!r}")
        self.n_axes = n_axes
        self.register_buffer("freqs", pope_nd_frequencies(split, base, layout=layout), persistent=False)  # [A, D]
        bias = torch.zeros(n_heads, head_dim)
        if bias_uniform_init:
            bias = torch.rand(n_heads, head_dim, generator=generator) * (-2 * math.pi)
        self.phase_bias = nn.Parameter(bias)

    def forward(self, q: torch.Tensor, k: torch.Tensor, positions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``[B, H, T, D]``, ``[B, Hk, T, D]`` with ``positions [T, A]`` / ``[B, T, A]`` -> ``[B, H, T, 2D]``,
        ``[B, Hk, T, 2D]`` in q's dtype."""
        qp, kp = apply_pope_nd(q, k, self.freqs, positions, self.phase_bias)
        return qp.to(q.dtype), kp.to(k.dtype)
