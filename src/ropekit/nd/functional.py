"""Functional tier of N-D RoPE: frequency builders and validated application functions.

Legend: ``A`` position axes, ``H`` heads, ``D`` head dim, ``r`` rotary pairs (``2r <= D``), ``T`` tokens.
``positions: [..., T, A]`` (integer or float coordinates), ``freqs: [..., A, r]`` (pair ``j`` turns by
``sum_k p_k freqs[k, j]``), ``x: [..., T, D]``, ``P: [D, D]`` orthogonal, ``generators: [A, D, D]``.

The math lives in :mod:`ropekit.nd.reference`; this module builds frequency matrices and checks inputs.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch

from ropekit.angles import wrap_angles
from ropekit.nd.reference import apply_token_matrices, apply_toral, dense_rotation

__all__ = [
    "apply_liere",
    "apply_rotary_nd",
    "axial_frequencies",
    "frequencies_from_pair_axes",
    "grid_positions",
    "liere_rotation",
    "mixed_frequencies",
    "nd_angles",
    "nd_cos_sin",
    "relativity_defect",
]

_LAYOUTS = ("chunked", "interleaved")


def _as_per_axis(value: float | Sequence[float], n_axes: int, name: str) -> list[float]:
    values = [float(value)] * n_axes if isinstance(value, (int, float)) else [float(v) for v in value]
    if len(values) != n_axes:
        raise ValueError(f"{name} must be one number or one per axis ({n_axes}), got {len(values)} values")
    if any(not (math.isfinite(v) and v > 1) for v in values):
        raise ValueError(f"{name} must be finite and > 1 (RoPE-ViT used 100 for images), got {values}")
    return values


def axial_frequencies(
    pairs_per_axis: Sequence[int], base: float | Sequence[float] = 100.0, *, layout: str = "chunked"
) -> torch.Tensor:
    """Axial RoPE frequency matrix ``[A, r]`` (float32), ``r = sum(pairs_per_axis)``: each pair follows one axis.

    Axis ``a`` owns ``n_a = pairs_per_axis[a]`` pairs with its own ladder ``base_a^(-i / n_a)``, ``i < n_a``
    (RoPE-ViT, Heo et al. 2024: head dim D split as D/4 pairs for x and D/4 for y, base 100).
    ``layout="chunked"`` gives axis 0 the first ``n_0`` pairs, then axis 1, ...; ``"interleaved"`` deals the
    pairs out round-robin (axis of pair j is the j-th entry of the round-robin over axes that still have pairs).
    """
    if layout not in _LAYOUTS:
        raise ValueError(f"layout must be one of {_LAYOUTS}, got {layout!r}")
    counts = [int(n) for n in pairs_per_axis]
    if not counts or any(n < 0 for n in counts) or sum(counts) == 0:
        raise ValueError(f"pairs_per_axis must be non-negative counts with a positive sum, got {list(pairs_per_axis)}")
    bases = _as_per_axis(base, len(counts), "base")
    if layout == "chunked":
        order = [a for a, n in enumerate(counts) for _ in range(n)]
    else:
        left, order = list(counts), []
        while any(left):
            for a in range(len(counts)):
                if left[a]:
                    order.append(a)
                    left[a] -= 1
    freqs = torch.zeros(len(counts), len(order), dtype=torch.float64)  # [A, r]
    seen = [0] * len(counts)
    for j, a in enumerate(order):
        freqs[a, j] = bases[a] ** (-seen[a] / counts[a])
        seen[a] += 1
    return freqs.to(torch.float32)


def frequencies_from_pair_axes(inv_freq: torch.Tensor, pair_axes: torch.Tensor, n_axes: int) -> torch.Tensor:
    """``[A, r]`` matrix with ``inv_freq[j]`` in row ``pair_axes[j]`` (one shared 1-D ladder, pairs dealt to axes).

    This is M-RoPE's form (Qwen2-VL / Qwen3-VL): the text model's usual ``inv_freq: [r]`` and a map of pair -> axis.
    """
    if inv_freq.dim() != 1 or pair_axes.shape != inv_freq.shape:
        raise ValueError(
            f"inv_freq and pair_axes must both be [r], got {tuple(inv_freq.shape)} and {tuple(pair_axes.shape)}"
        )
    if pair_axes.numel() and (int(pair_axes.min()) < 0 or int(pair_axes.max()) >= n_axes):
        raise ValueError(
            f"pair_axes must be in [0, {n_axes - 1}], got range [{int(pair_axes.min())}, {int(pair_axes.max())}]"
        )
    freqs = torch.zeros(n_axes, inv_freq.numel(), dtype=inv_freq.dtype)  # [A, r]
    freqs[pair_axes, torch.arange(inv_freq.numel())] = inv_freq
    return freqs


def mixed_frequencies(
    n_heads: int, pairs_per_axis: Sequence[int], base: float = 10.0, *, generator: torch.Generator | None = None
) -> torch.Tensor:
    """RoPE-Mixed initial frequencies ``[H, A, r]``: the chunked axial matrix turned by a random rotation per head.

    Heo et al. 2024 initialise each head's 2-D frequency vectors as magnitudes ``base^(-i / n)`` along a random
    direction ``phi`` for the first half of the pairs and ``phi + pi/2`` for the second (base 10 for Mixed); for
    ``A = 2`` a random rotation of the axial matrix is exactly that. For ``A > 2`` a random orthogonal matrix.
    """
    axial = axial_frequencies(pairs_per_axis, base, layout="chunked").double()  # [A, r]
    n_axes = axial.shape[0]
    gauss = torch.randn(n_heads, n_axes, n_axes, generator=generator, dtype=torch.float64)  # [H, A, A]
    Q, R = torch.linalg.qr(gauss)
    Q = Q * torch.sign(torch.diagonal(R, dim1=-2, dim2=-1)).unsqueeze(-2)  # Haar-distributed orthogonal
    return (Q @ axial).to(torch.float32)  # [H, A, r]


def grid_positions(*sizes: int, offset: float | Sequence[float] = 0.0, step: float = 1.0) -> torch.Tensor:
    """Coordinates of every cell of a grid in row-major order (the order of ``x.flatten``): ``[prod(sizes), A]``.

    ``grid_positions(2, 3)`` is ``[[0,0],[0,1],[0,2],[1,0],[1,1],[1,2]]`` (row, column); ``offset`` (one value or
    one per axis) is added to every coordinate and ``step`` scales them. Float32.
    """
    if not sizes or any(int(s) < 1 for s in sizes):
        raise ValueError(f"grid sizes must be positive integers, got {sizes}")
    offsets = [float(offset)] * len(sizes) if isinstance(offset, (int, float)) else [float(o) for o in offset]
    if len(offsets) != len(sizes):
        raise ValueError(f"offset must be one number or one per axis ({len(sizes)}), got {len(offsets)}")
    axes = [torch.arange(int(s), dtype=torch.float32) * step + o for s, o in zip(sizes, offsets, strict=True)]
    mesh = torch.meshgrid(*axes, indexing="ij")  # A tensors of shape sizes
    return torch.stack(mesh, dim=-1).reshape(-1, len(sizes))  # [prod(sizes), A]


def nd_angles(freqs: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
    """Angles ``(positions @ freqs)`` reduced to ``[-pi, pi]``, float32: ``[..., T, r]``.

    ``positions: [..., T, A]``, ``freqs: [..., A, r]``; leading dims broadcast as in ``torch.matmul``.
    Precision: products and sums in float64 (exact for integer positions < 2**29 times float32 frequencies when
    only one axis is non-zero per pair), reduced modulo 2 pi in float64, then narrowed, as in
    :func:`ropekit.rope_angles`. Differentiable in ``freqs`` (the reduction subtracts a constant multiple of 2 pi).
    """
    return wrap_angles(positions.to(torch.float64) @ freqs.to(torch.float64))  # [..., T, r]


def _check_positions_freqs(positions: torch.Tensor, freqs: torch.Tensor) -> None:
    for label, t in (("positions", positions), ("freqs", freqs)):
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"{label} must be a torch.Tensor, got {type(t).__name__}")
    if positions.dim() < 2 or positions.dtype == torch.bool or positions.is_complex():
        raise ValueError(
            f"positions must be a real [..., T, A] tensor (one coordinate per axis), got "
            f"{positions.dtype} of shape {tuple(positions.shape)}; for a 2-D grid use grid_positions(H, W)"
        )
    if freqs.dim() < 2 or not freqs.is_floating_point():
        raise ValueError(f"freqs must be a float [..., A, r] tensor, got {freqs.dtype} of shape {tuple(freqs.shape)}")
    if positions.shape[-1] != freqs.shape[-2]:
        raise ValueError(
            f"positions have {positions.shape[-1]} axes (last dim) but freqs have {freqs.shape[-2]} "
            f"(second-to-last dim); positions must be [..., T, A] and freqs [..., A, r] with the same A"
        )


def nd_cos_sin(freqs: torch.Tensor, positions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``cos, sin`` of the N-D angles, each ``[..., T, r]`` float32 (leading dims broadcast like matmul)."""
    _check_positions_freqs(positions, freqs)
    angles = nd_angles(freqs, positions)
    return torch.cos(angles), torch.sin(angles)


def _check_x(x: torch.Tensor) -> None:
    """``x`` must be a floating tensor ``[..., T, D]`` (an integer tensor would be rotated and truncated)."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"x must be a torch.Tensor [..., T, D], got {type(x).__name__}")
    if not x.is_floating_point() or x.dim() < 2:
        raise ValueError(f"x must be a floating-point [..., T, D] tensor, got {x.dtype} of shape {tuple(x.shape)}")


def apply_rotary_nd(
    x: torch.Tensor,
    freqs: torch.Tensor,
    positions: torch.Tensor,
    *,
    P: torch.Tensor | None = None,
    interleaved: bool = False,
) -> torch.Tensor:
    """Toral N-D RoPE ``P B(p) P^T x``: axial, mixed and M-RoPE (``P = None``) or STRING-style (``P`` orthogonal).

    Args:
        x: ``[..., T, D]``, e.g. ``[B, H, T, D]``.
        freqs: ``[..., A, r]`` with ``2r <= D`` (per-head ``[H, A, r]`` broadcasts against ``[B, H, T, D]``).
        positions: ``[..., T, A]``, e.g. ``[T, A]`` shared by the batch or ``[B, 1, T, A]`` per sample.
        P: optional orthogonal ``[D, D]`` change of basis (e.g. :func:`ropekit.nd.cayley`); ``None`` = identity.
        interleaved: pairs ``(x[2j], x[2j+1])`` instead of ``(x[j], x[j+r])``.

    Returns:
        ``[..., T, D]`` in x's dtype; relative: ``<f(q, p), f(k, p')>`` depends only on ``p' - p``.
    """
    _check_x(x)
    if not isinstance(interleaved, bool):
        raise ValueError(f"interleaved must be True or False, got {interleaved!r} ({type(interleaved).__name__})")
    _check_positions_freqs(positions, freqs)
    r, D = freqs.shape[-1], x.shape[-1]
    if 2 * r > D:
        raise ValueError(f"freqs have {r} pairs but x has head_dim {D} < 2*{r}; use at most head_dim/2 pairs")
    if P is not None and P.shape != (D, D):
        raise ValueError(f"P must be [D, D] = [{D}, {D}] (a change of basis of the head), got {tuple(P.shape)}")
    angles = nd_angles(freqs, positions)  # [..., T, r]
    try:
        torch.broadcast_shapes(x.shape[:-1], angles.shape[:-1])
    except RuntimeError as exc:
        raise ValueError(
            f"angles of shape {tuple(angles.shape)} (from positions {tuple(positions.shape)} and freqs "
            f"{tuple(freqs.shape)}) do not broadcast over x {tuple(x.shape)}; T must line up with "
            "x's second-to-last dim (positions [B, 1, T, A] for per-sample positions)"
        ) from exc
    return apply_toral(x, angles, P, interleaved=interleaved)


def apply_liere(x: torch.Tensor, generators: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
    """LieRE: ``exp(sum_k p_k G_k) x`` with dense generators, NOT relative unless they commute.

    ``x: [..., T, D]``, ``generators: [A, D, D]`` (made skew-symmetric here: ``(G - G^T) / 2``),
    ``positions: [..., T, A]``. One ``D x D`` matrix exponential per distinct token position.
    """
    _check_x(x)
    if generators.dim() != 3 or generators.shape[-1] != generators.shape[-2] or generators.shape[-1] != x.shape[-1]:
        raise ValueError(f"generators must be [A, D, D] with D = head_dim {x.shape[-1]}, got {tuple(generators.shape)}")
    return apply_token_matrices(x, liere_rotation(generators, positions))


def liere_rotation(generators: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
    """LieRE's per-token rotations ``exp(sum_k p_k (G_k - G_k^T) / 2)``: ``[..., T, D, D]``.

    ``generators: [A, D, D]``, ``positions: [..., T, A]``. Compute once and apply to q and k with
    :func:`ropekit.nd.reference.apply_token_matrices`.
    """
    if generators.dim() != 3 or generators.shape[-1] != generators.shape[-2]:
        raise ValueError(f"generators must be [A, D, D], got {tuple(generators.shape)}")
    if positions.shape[-1] != generators.shape[0]:
        raise ValueError(f"positions have {positions.shape[-1]} axes but there are {generators.shape[0]} generators")
    skew = 0.5 * (generators - generators.transpose(-1, -2))
    return dense_rotation(skew, positions)


def relativity_defect(
    encode: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    q: torch.Tensor,
    k: torch.Tensor,
    positions: torch.Tensor,
    shift: torch.Tensor,
) -> float:
    """Largest change of the scores ``<f(q_i, p_i), f(k_j, p_j)>`` when every position moves by ``shift``.

    ``encode(x [T, D], positions [T, A]) -> [T, D]``; ``q, k: [T, D]``, ``positions: [T, A]``, ``shift: [A]``.
    Returns ``max |S(p + s) - S(p)| / max |S(p)|`` over all pairs: ~1e-7 for relative encodings (float32),
    order 1 for absolute ones.
    """
    with torch.no_grad():
        before = encode(q, positions) @ encode(k, positions).T  # [T, T]
        after = encode(q, positions + shift) @ encode(k, positions + shift).T  # [T, T]
    return float((after - before).abs().max() / before.abs().max().clamp_min(1e-30))
