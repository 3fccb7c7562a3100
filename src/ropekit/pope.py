"""PoPE: polar coordinate position embeddings (Gopalakrishnan et al. 2025, "Decoupling the 'What' and 'Where' with
Polar Coordinate Positional Embeddings").

Legend: ``x, q, k: [B, H, T, D]``, ``positions: [T]`` or ``[B, T]`` integers, ``inv_freq: [D]`` (one frequency per
feature, not per pair), ``phase_bias: [H, D]``; outputs ``[B, H, T, 2D]`` (real and imaginary part of each feature,
interleaved ``(re_0, im_0, re_1, im_1, ...)``).

The formula (the paper's; the same in lucidrains/PoPE-pytorch, ``PoPE_pytorch/pope.py``): each feature ``c``
of a query or key becomes a complex number whose magnitude is the content, ``mu = softplus(x_c) >= 0`` ("what"),
and whose phase is the position, ``t * theta_c`` ("where"), with ``theta_c = base^(-c/D)`` for ``c < D``; keys get a
learned per-head phase offset ``delta_c`` clamped to ``[-2 pi, 0]``. The score is the real part of the Hermitian
product:

    a_ts = sum_c mu_q,tc mu_k,sc cos((t - s) theta_c - delta_c),

so it depends on positions only through ``t - s`` (relative) and, at ``t = s`` with ``delta = 0``, it is the
content term ``softplus(q) . softplus(k)`` alone. The real form used here: ``q -> (mu cos(phi), mu sin(phi))``,
``k -> (mu cos(phi'), mu sin(phi'))``, and the dot product of the ``2D``-vectors is ``a_ts``. ropekit applies
``delta`` to the query's phase with the opposite sign (the same ``a_ts``), so one offset per query head also serves
grouped-query keys. Pure torch; no fast path (it is its own reference; the tests check it against the complex form).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ropekit.angles import check_positions, position_angles

__all__ = ["PolarEmbedding", "apply_pope", "pope_features", "pope_frequencies"]


def pope_frequencies(head_dim: int, base: float = 10_000.0) -> torch.Tensor:
    """``[D]`` float64: ``base^(-c / D)`` for every feature ``c < D`` (D frequencies, not D/2 as in RoPE)."""
    if not isinstance(head_dim, int) or isinstance(head_dim, bool) or head_dim < 1:
        raise ValueError(f"head_dim must be a positive int, got {head_dim!r}")
    if isinstance(base, bool) or not isinstance(base, (int, float)) or not (math.isfinite(base) and base > 1):
        raise ValueError(f"PoPE base must be a finite number > 1, got {base!r}")
    return float(base) ** (-torch.arange(head_dim, dtype=torch.float64) / head_dim)


def _polar(mag: torch.Tensor, phase: torch.Tensor) -> torch.Tensor:
    """``[..., D]`` magnitudes and phases -> ``[..., 2D]`` interleaved real/imaginary parts."""
    return torch.stack((mag * phase.cos(), mag * phase.sin()), dim=-1).flatten(-2)


def apply_pope(
    q: torch.Tensor,
    k: torch.Tensor,
    inv_freq: torch.Tensor,
    positions: torch.Tensor,
    phase_bias: torch.Tensor | None = None,
    *,
    k_positions: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``q: [B, H, T, D]``, ``k: [B, Hk, Tk, D]`` -> ``[B, H, T, 2D]``, ``[B, Hk, Tk, 2D]`` (float32 or float64).

    ``positions`` are the queries' (``[T]`` / ``[B, T]``); ``k_positions`` the keys' (default: the same).
    ``phase_bias: [H, D]`` is clamped to ``[-2 pi, 0]``. ``q' . k'`` is the PoPE score ``a_ts``.
    Phases are ropekit's float32 angle tables (:func:`ropekit.angles.position_angles`, within one float32 rounding
    of the exact angle) also for float64 inputs, as for RoPE's cos/sin tables.
    """
    for name, x in (("q", q), ("k", k)):
        if not isinstance(x, torch.Tensor) or x.dim() != 4 or not x.is_floating_point():
            raise ValueError(f"{name} must be a floating [B, H, T, D] tensor, got {getattr(x, 'shape', type(x))}")
    D = q.shape[-1]
    if k.shape[-1] != D or inv_freq.shape != (D,):
        raise ValueError(f"q, k and inv_freq must share D={D}: k {tuple(k.shape)}, inv_freq {tuple(inv_freq.shape)}")
    check_positions(positions, name="positions", dims=(1, 2))
    k_positions = positions if k_positions is None else check_positions(k_positions, name="k_positions", dims=(1, 2))
    phase_q = position_angles(inv_freq, positions)  # [T, D] or [B, T, D] float32
    phase_k = position_angles(inv_freq, k_positions)
    return pope_features(q, k, phase_q, phase_k, phase_bias)


def pope_features(
    q: torch.Tensor,
    k: torch.Tensor,
    phase_q: torch.Tensor,
    phase_k: torch.Tensor,
    phase_bias: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """PoPE's polar features from the phases: ``q: [B, H, T, D]``, ``k: [B, Hk, Tk, D]``, ``phase_q: [T, D]`` or
    ``[B, T, D]``, ``phase_k: [Tk, D]`` or ``[B, Tk, D]`` -> ``[B, H, T, 2D]``, ``[B, Hk, Tk, 2D]``.

    The one home of the magnitude (``softplus``), the clamped phase offset and the real/imaginary interleave,
    shared by :func:`apply_pope` (phases ``t * theta_c``) and :func:`ropekit.nd.apply_pope_nd` (phases
    ``sum_a p_a theta_ac``). ``phase_bias: [H, D]`` is clamped to ``[-2 pi, 0]`` and subtracted from the query's
    phase. float64 inputs give float64 features, anything else float32.
    """
    D = q.shape[-1]
    for name, phase in (("phase_q", phase_q), ("phase_k", phase_k)):
        if phase.dim() not in (2, 3) or phase.shape[-1] != D:
            raise ValueError(f"{name} must be [T, {D}] or [B, T, {D}], got {tuple(phase.shape)}")
    dtype = torch.float64 if q.dtype == torch.float64 else torch.float32
    phase_q, phase_k = phase_q.to(dtype), phase_k.to(dtype)
    if phase_q.dim() == 3:
        phase_q = phase_q.unsqueeze(1)  # [B, 1, T, D]
    if phase_k.dim() == 3:
        phase_k = phase_k.unsqueeze(1)
    if phase_bias is not None:
        if phase_bias.shape != (q.shape[1], D):
            raise ValueError(f"phase_bias must be [H={q.shape[1]}, D={D}], got {tuple(phase_bias.shape)}")
        delta = phase_bias.clamp(-2 * math.pi, 0.0).to(dtype)[:, None, :]  # [H, 1, D]
        phase_q = phase_q - delta  # cos(t th - (s th + delta)) = cos((t th - delta) - s th)
    return _polar(F.softplus(q.to(dtype)), phase_q), _polar(F.softplus(k.to(dtype)), phase_k)


class PolarEmbedding(nn.Module):
    """PoPE for ``n_heads`` query heads: frequencies ``[D]`` and a learned phase offset ``[H, D]`` (init 0, or
    uniform in ``[-2 pi, 0]`` with ``bias_uniform_init``, the two inits of PoPE-pytorch)."""

    inv_freq: torch.Tensor

    def __init__(
        self,
        head_dim: int,
        n_heads: int,
        *,
        base: float = 10_000.0,
        bias_uniform_init: bool = False,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        if not isinstance(bias_uniform_init, bool):
            raise ValueError(f"bias_uniform_init must be True or False, got {bias_uniform_init!r}")
        self.register_buffer("inv_freq", pope_frequencies(head_dim, base), persistent=False)
        bias = torch.zeros(n_heads, head_dim)
        if bias_uniform_init:
            bias = torch.rand(n_heads, head_dim, generator=generator) * (-2 * math.pi)
        self.phase_bias = nn.Parameter(bias)

    def forward(self, q: torch.Tensor, k: torch.Tensor, positions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``[B, H, T, D]``, ``[B, Hk, T, D]`` -> ``[B, H, T, 2D]``, ``[B, Hk, T, 2D]`` in q's dtype."""
        qp, kp = apply_pope(q, k, self.inv_freq, positions, self.phase_bias)
        return qp.to(q.dtype), kp.to(k.dtype)
