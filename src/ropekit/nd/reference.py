"""The math of N-dimensional RoPE in one short file: the pure-torch oracle of every ``ropekit.nd`` test.

Every position-dependent rotation here has the form ``R(p) = exp(sum_k p_k G_k)`` with skew-symmetric
generators ``G_k`` (Ostmeier et al. 2024, LieRE; Schenck et al. 2025, STRING; Liu & Zhou 2025, "Rethinking RoPE").

* Toral family (relative): ``G_k = P J_k P^T`` where every ``J_k`` is block-diagonal in the same 2x2 pairs,
  ``J_k = blockdiag(F[k, j] * [[0, -1], [1, 0]])``; the ``J_k`` commute, so do the ``G_k``, and
  ``R(p) = P B(p) P^T`` with ``B(p)`` the block rotation by angles ``(p @ F)_j``. Axial RoPE, RoPE-Mixed and
  M-RoPE are the special case ``P = I``; they differ only in the frequency matrix ``F: [A, r]``.
  Relativity: ``<R(p) q, R(p') k> = <q, R(p' - p) k>`` because ``R(p)^T R(p') = R(p' - p)`` for commuting G.
* Dense family (LieRE): ``G_k`` arbitrary skew-symmetric; ``exp`` of a sum of non-commuting matrices is not a
  product of exponentials, so the score depends on absolute positions.

Legend: ``A`` number of position axes (2 for images, 3 for video / (t, h, w)), ``D`` head dim, ``r`` rotary pairs
(``2r <= D``; features ``2r..D-1`` pass through), ``T`` tokens.
``positions: [..., T, A]`` (float or integer), ``freqs: [..., A, r]``, ``angles, cos, sin: [..., T, r]``,
``x: [..., T, D]``, ``P: [D, D]`` orthogonal, ``generators: [A, D, D]`` skew-symmetric.
"""

from __future__ import annotations

import torch

from ropekit.reference import apply_rotary_reference, pair_indices

__all__ = [
    "apply_dense_lie",
    "apply_token_matrices",
    "apply_toral",
    "block_generators",
    "cayley",
    "dense_rotation",
]


def _compute_dtype(x: torch.Tensor) -> torch.dtype:
    return torch.float32 if x.dtype in (torch.bfloat16, torch.float16) else x.dtype


def apply_toral(
    x: torch.Tensor, angles: torch.Tensor, P: torch.Tensor | None = None, *, interleaved: bool = False
) -> torch.Tensor:
    """``P B(angles) P^T x`` per token: the fast form of the toral (commuting) family.

    ``x: [..., T, D]``, ``angles: [..., T, r]``, ``P: [D, D]`` or ``None`` (identity: plain axial / mixed RoPE).
    Row-vector convention: ``x @ P`` is ``P^T x`` for each token. Cost: two ``D x D`` matmuls per token plus the
    cheap rotation, instead of a ``D x D`` matrix exponential per token.
    """
    cos, sin = torch.cos(angles), torch.sin(angles)
    if P is None:
        return apply_rotary_reference(x, cos, sin, interleaved=interleaved)
    # bf16/fp16 are widened once: a D-term dot product in half precision loses several bits per basis change.
    dtype = _compute_dtype(x)
    Pc = P.to(dtype)
    z = x.to(dtype) @ Pc  # [..., T, D]: P^T x
    z = apply_rotary_reference(z, cos, sin, interleaved=interleaved)  # [..., T, D]: B(p) P^T x
    return (z @ Pc.transpose(-1, -2)).to(x.dtype)  # [..., T, D]: P B(p) P^T x


def block_generators(freqs: torch.Tensor, head_dim: int, *, interleaved: bool = False) -> torch.Tensor:
    """Dense generators ``J_k`` of the block rotation, float64 ``[..., A, D, D]``, from ``freqs: [..., A, r]``.

    ``J_k[b, a] = F[k, j]``, ``J_k[a, b] = -F[k, j]`` for pair ``j = (a, b)`` in the chosen pairing, so that
    ``exp(sum_k p_k J_k)`` rotates pair ``j`` by ``sum_k p_k F[k, j]`` exactly as :func:`apply_toral` does.
    """
    r = freqs.shape[-1]
    a_idx, b_idx = pair_indices(2 * r, interleaved=interleaved)
    J = torch.zeros(*freqs.shape[:-1], head_dim, head_dim, dtype=torch.float64)  # [..., A, D, D]
    f = freqs.detach().to(torch.float64)
    J[..., b_idx, a_idx] = f
    J[..., a_idx, b_idx] = -f
    return J


def cayley(S: torch.Tensor) -> torch.Tensor:
    """Cayley transform ``P = (I - S)(I + S)^{-1}`` of a skew-symmetric ``S: [..., D, D]``: orthogonal ``[..., D, D]``.

    ``I + S`` is invertible for every skew-symmetric S (its eigenvalues are ``1 + i*lambda``). STRING
    (Schenck et al. 2025) parameterises the learnable basis change this way. Differentiable in S.
    """
    eye = torch.eye(S.shape[-1], dtype=S.dtype, device=S.device)
    # solve gives (I + S)^{-1} (I - S); both factors are functions of S, so they commute and this equals P.
    return torch.linalg.solve(eye + S, eye - S)


def dense_rotation(generators: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
    """``exp(sum_k p_k G_k)`` by ``torch.linalg.matrix_exp``: ``[..., T, D, D]`` in the generators' dtype.

    ``generators: [A, D, D]`` (skew-symmetric for a rotation), ``positions: [..., T, A]``.
    """
    gen_sum = torch.einsum("...a,aij->...ij", positions.to(generators.dtype), generators)  # [..., T, D, D]
    return torch.linalg.matrix_exp(gen_sum)


def apply_dense_lie(x: torch.Tensor, generators: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
    """``R(p_t) x_t`` with ``R = exp(sum_k p_k G_k)`` (LieRE): ``x: [..., T, D]`` -> ``[..., T, D]``.

    Generic and slow (one matrix exponential per token); for commuting generators use :func:`apply_toral`.
    """
    R = dense_rotation(generators, positions)  # [..., T, D, D]
    return apply_token_matrices(x, R)


def apply_token_matrices(x: torch.Tensor, R: torch.Tensor) -> torch.Tensor:
    """``y_t = R_t x_t`` for every token: ``x: [..., T, D]``, ``R: [T, D, D]`` or ``[..., T, D, D]`` -> ``[..., T, D]``.

    With ``R: [T, D, D]`` (positions shared by the batch) this is one batched matmul over T, not a tiny matmul
    per (batch, head, token).
    """
    dtype = _compute_dtype(x)  # bf16/fp16 widened once, as in the 1-D reference
    xc, Rc = x.to(dtype), R.to(dtype)
    if R.dim() == 3:
        return torch.einsum("...td,ted->...te", xc, Rc).to(x.dtype)
    return (Rc @ xc.unsqueeze(-1)).squeeze(-1).to(x.dtype)
