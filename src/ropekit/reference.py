"""The math of RoPE in one short file: the permanent pure-torch reference and oracle of every test.

Three textbook forms of the same rotation (RoFormer, Su et al. 2021, eqs. 13-15):

* ``apply_rotary_matrix``: multiply by the block-diagonal matrix ``R_m`` of 2x2 rotations;
* ``apply_rotary_complex``: multiply the pair ``x_a + i x_b`` by ``e^{i m theta}``;
* ``apply_rotary_reference``: the cheap form ``x * cos + rot(x) * sin``.

Two pairings ("layouts") exist in the wild; which features form the pair ``(a, b)`` of pair ``j``:

* interleaved (RoFormer, GPT-J, Meta's original Llama): ``(x[2j], x[2j+1])``;
* half / NeoX (Hugging Face Llama, GPT-NeoX, Qwen, Mistral): ``(x[j], x[j + r])`` with ``r = rotary_dim/2``.

Legend: ``x: [..., T, D]`` (``D = head_dim``), ``cos, sin: [..., T, r]`` with ``r = rotary_dim / 2``,
broadcast over the leading dimensions of ``x``; features ``2r .. D-1`` pass through unchanged.
"""

from __future__ import annotations

import torch

__all__ = [
    "apply_rotary_complex",
    "apply_rotary_matrix",
    "apply_rotary_reference",
    "pair_indices",
    "rotate_half",
    "rotation_matrix",
]


def pair_indices(rotary_dim: int, *, interleaved: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Feature indices ``(a, b)`` of each rotary pair, each ``[rotary_dim/2]`` int64."""
    r = rotary_dim // 2
    j = torch.arange(r)
    return (2 * j, 2 * j + 1) if interleaved else (j, j + r)


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    """``cat(-x2, x1)`` over the last dimension (half pairing): ``[..., 2r] -> [..., 2r]``."""
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat((-x2, x1), dim=-1)


def _compute_dtype(x: torch.Tensor) -> torch.dtype:
    # bf16/fp16 are widened once: products and sums of a rotation in half precision lose 1-2 bits.
    return torch.float32 if x.dtype in (torch.bfloat16, torch.float16) else x.dtype


def apply_rotary_reference(
    x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, *, interleaved: bool = False
) -> torch.Tensor:
    """Rotate the first ``2 * cos.shape[-1]`` features of ``x``; the cheap form, no validation.

    ``x: [..., T, D]``, ``cos, sin: [..., T, r]`` -> ``[..., T, D]`` in ``x.dtype`` (computed in float32
    for bf16/fp16 inputs, in x's dtype otherwise).
    """
    r = cos.shape[-1]
    dtype = _compute_dtype(x)
    rot = x[..., : 2 * r].to(dtype)  # [..., T, 2r]
    cos, sin = cos.to(dtype), sin.to(dtype)
    if interleaved:
        a, b = rot[..., 0::2], rot[..., 1::2]  # [..., T, r] each
        out = torch.stack((a * cos - b * sin, b * cos + a * sin), dim=-1).flatten(-2)  # [..., T, 2r]
    else:
        a, b = rot[..., :r], rot[..., r:]  # [..., T, r] each
        out = torch.cat((a * cos - b * sin, b * cos + a * sin), dim=-1)  # [..., T, 2r]
    out = out.to(x.dtype)
    if 2 * r == x.shape[-1]:
        return out
    return torch.cat((out, x[..., 2 * r :]), dim=-1)  # [..., T, D]


def apply_rotary_complex(
    x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, *, interleaved: bool = False
) -> torch.Tensor:
    """The complex form: pair ``j`` as ``x_a + i x_b`` times ``cos + i sin`` (computed in float64)."""
    r = cos.shape[-1]
    a_idx, b_idx = pair_indices(2 * r, interleaved=interleaved)
    x64 = x.to(torch.float64)
    z = torch.complex(x64[..., a_idx], x64[..., b_idx])  # [..., T, r]
    z = z * torch.complex(cos.to(torch.float64), sin.to(torch.float64))
    out = x64.clone()
    out[..., a_idx] = z.real
    out[..., b_idx] = z.imag
    return out.to(x.dtype)


def rotation_matrix(cos: torch.Tensor, sin: torch.Tensor, head_dim: int, *, interleaved: bool = False) -> torch.Tensor:
    """The block-diagonal rotation ``R`` (in the chosen pairing) as a dense ``[..., D, D]`` float64 matrix.

    ``R[a, a] = R[b, b] = cos``, ``R[a, b] = -sin``, ``R[b, a] = sin`` for each pair ``(a, b)``, identity on
    the pass-through features. ``cos, sin: [..., r]`` -> ``[..., D, D]``.
    """
    r = cos.shape[-1]
    a_idx, b_idx = pair_indices(2 * r, interleaved=interleaved)
    eye = torch.eye(head_dim, dtype=torch.float64)
    R = eye.expand(*cos.shape[:-1], head_dim, head_dim).clone()  # [..., D, D]
    c, s = cos.to(torch.float64), sin.to(torch.float64)
    R[..., a_idx, a_idx] = c
    R[..., b_idx, b_idx] = c
    R[..., a_idx, b_idx] = -s
    R[..., b_idx, a_idx] = s
    return R


def apply_rotary_matrix(
    x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, *, interleaved: bool = False
) -> torch.Tensor:
    """The matrix form ``R_m x`` (float64 matmul, result in ``x.dtype``)."""
    R = rotation_matrix(cos, sin, x.shape[-1], interleaved=interleaved)  # [..., T, D, D]
    return (R @ x.to(torch.float64).unsqueeze(-1)).squeeze(-1).to(x.dtype)
