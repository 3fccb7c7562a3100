"""Converting q/k projection weights between the two rotary pairings.

A model trained with one pairing runs with the other only after permuting the rows of ``W_q`` and ``W_k``
(and their biases) within each head. Hugging Face's Llama conversion script applies the
interleaved -> half permutation to Meta's checkpoints; this is that permutation and its inverse.

Legend: ``weight: [n_heads * head_dim, ...]`` (rows are output features: a Linear weight ``[out, in]`` or a
bias ``[out]``), ``r = rotary_dim / 2``.
"""

from __future__ import annotations

from typing import Literal

import torch

__all__ = ["convert_qk_layout", "layout_permutation"]

Layout = Literal["half", "interleaved"]


def layout_permutation(head_dim: int, *, to: Layout, rotary_dim: int | None = None) -> torch.Tensor:
    """Row order ``perm`` of one head such that ``new = old[perm]``: ``[head_dim]`` int64.

    ``to="half"``: new row ``j`` (< r) is old ``2j``, new ``r + j`` is old ``2j + 1``.
    ``to="interleaved"``: the inverse. Rows from ``rotary_dim`` on pass through.
    """
    rotary_dim = head_dim if rotary_dim is None else rotary_dim
    if to not in ("half", "interleaved"):
        raise ValueError(f"to must be 'half' or 'interleaved', got {to!r}")
    if rotary_dim % 2 or not 2 <= rotary_dim <= head_dim:
        raise ValueError(f"rotary_dim must be even and in [2, head_dim={head_dim}], got {rotary_dim}")
    r = rotary_dim // 2
    j = torch.arange(r)
    to_half = torch.cat((2 * j, 2 * j + 1))  # [2r]: interleaved index of each half-layout row
    perm = to_half if to == "half" else torch.argsort(to_half)
    return torch.cat((perm, torch.arange(rotary_dim, head_dim)))


def convert_qk_layout(
    weight: torch.Tensor,
    n_heads: int,
    head_dim: int,
    *,
    to: Layout,
    rotary_dim: int | None = None,
) -> torch.Tensor:
    """Permute the rows of a q or k projection weight (or bias) to the other pairing, head by head.

    ``weight: [n_heads * head_dim, ...]`` -> same shape. Apply it to W_q with the query head count and to
    W_k with the key/value head count (GQA), and to their biases if any.
    """
    if weight.dim() < 1 or weight.shape[0] != n_heads * head_dim:
        raise ValueError(
            f"weight must have n_heads * head_dim = {n_heads} * {head_dim} = {n_heads * head_dim} rows, "
            f"got shape {tuple(weight.shape)}; pass the key/value head count for W_k under GQA"
        )
    perm = layout_permutation(head_dim, to=to, rotary_dim=rotary_dim).to(weight.device)
    heads = weight.reshape(n_heads, head_dim, *weight.shape[1:])  # [H, D, ...]
    return heads.index_select(1, perm).reshape(weight.shape)  # [H * D, ...]
