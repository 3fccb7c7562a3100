"""Hierarchical (sentence, token-in-sentence) positions on the axial N-D machinery (word/sentence-level rotation).

Legend: ``ids: [B, T]`` token ids, ``boundary: [B, T]`` bool (True where a token ends a sentence, e.g. '.'),
``positions: [..., T, 2]`` int64 coordinates ``(sentence index, token index within the sentence)``,
``packed: [..., T]`` int64 (both coordinates in one integer, for code paths that carry ``[B, T]`` positions).

A token that ends a sentence belongs to the sentence it ends; the next token starts sentence ``s + 1`` at
in-sentence index 0. The rotation is axial RoPE (:class:`ropekit.nd.AxialRotaryEmbedding`, Heo et al. 2024's
axial form applied to text): the first ``sentence_pairs`` pairs turn with the sentence index, the others with the
in-sentence index. With one sentence and ``sentence_pairs = 0`` this is 1-D RoPE over the token axis with base
``token_base`` (the axial ladder ``base^(-i/n)`` over ``n = D/2`` pairs is RoPE's ``base^(-2i/D)``). Relative per
axis: the score depends on (sentence distance, in-sentence distance), not on the absolute sentence.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from ropekit.angles import check_positions
from ropekit.nd.modules import AxialRotaryEmbedding

__all__ = [
    "PACK_STRIDE",
    "HierarchicalRotaryEmbedding",
    "pack_hierarchical",
    "sentence_boundaries",
    "sentence_positions",
    "unpack_hierarchical",
]

# Packed id = sentence * PACK_STRIDE + token-in-sentence: sentences up to 2**20 tokens, 2**43 sentences.
PACK_STRIDE = 1 << 20


def sentence_boundaries(ids: torch.Tensor, boundary_ids: Sequence[int]) -> torch.Tensor:
    """``[B, T]`` (or ``[T]``) bool: True where ``ids`` is one of ``boundary_ids`` (e.g. the ids of '.', '!', '?')."""
    check_positions(ids, name="ids", dims=(1, 2))
    if not len(boundary_ids):
        raise ValueError("boundary_ids must name at least one token id (e.g. the id of '.')")
    return torch.isin(ids, torch.tensor(list(boundary_ids), dtype=ids.dtype, device=ids.device))


def sentence_positions(boundary: torch.Tensor) -> torch.Tensor:
    """``boundary: [..., T]`` bool -> ``[..., T, 2]`` int64 ``(sentence index, index within the sentence)``."""
    if not isinstance(boundary, torch.Tensor) or boundary.dtype != torch.bool or boundary.dim() < 1:
        raise ValueError(
            f"boundary must be a bool [..., T] mask (True where a token ends a sentence), got "
            f"{getattr(boundary, 'dtype', type(boundary).__name__)}; build it with sentence_boundaries(ids, ...)"
        )
    ends = boundary.long()
    sentence = ends.cumsum(-1) - ends  # the ending token stays in its sentence
    T = boundary.shape[-1]
    idx = torch.arange(T, device=boundary.device).expand_as(ends)
    # first index of each token's sentence: 1 + the last boundary strictly before it (cummax of boundary indices)
    prev_end = torch.where(boundary, idx, torch.full_like(idx, -1))
    prev_end = torch.cat((torch.full_like(prev_end[..., :1], -1), prev_end[..., :-1]), dim=-1).cummax(-1).values
    within = idx - (prev_end + 1)
    return torch.stack((sentence, within), dim=-1)


def pack_hierarchical(positions: torch.Tensor) -> torch.Tensor:
    """``[..., T, 2]`` -> ``[..., T]`` int64 ``sentence * PACK_STRIDE + within`` (``within < PACK_STRIDE``)."""
    if positions.shape[-1] != 2 or positions.is_floating_point():
        raise ValueError(f"positions must be integer [..., T, 2] (sentence, within), got {tuple(positions.shape)}")
    if positions.numel() and (int(positions.min()) < 0 or int(positions[..., 1].max()) >= PACK_STRIDE):
        raise ValueError(f"hierarchical coordinates must be >= 0 with within-sentence index < {PACK_STRIDE}")
    return positions[..., 0].long() * PACK_STRIDE + positions[..., 1].long()


def unpack_hierarchical(packed: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`pack_hierarchical`: ``[..., T]`` -> ``[..., T, 2]`` int64."""
    check_positions(packed, name="packed positions", allow_negative=False)
    return torch.stack((packed // PACK_STRIDE, packed % PACK_STRIDE), dim=-1)


class HierarchicalRotaryEmbedding(nn.Module):
    """Axial RoPE over (sentence, token-in-sentence): ``sentence_pairs`` pairs for the sentence axis (base
    ``sentence_base``), the remaining ``D/2 - sentence_pairs`` for the token axis (base ``token_base``)."""

    def __init__(
        self,
        head_dim: int,
        *,
        sentence_pairs: int | None = None,
        sentence_base: float = 100.0,
        token_base: float = 10_000.0,
        interleaved: bool = False,
    ) -> None:
        super().__init__()
        if head_dim % 2 or head_dim < 2:
            raise ValueError(f"head_dim must be even and >= 2, got {head_dim}")
        r = head_dim // 2
        n_s = max(1, r // 4) if sentence_pairs is None else sentence_pairs
        if not isinstance(n_s, int) or isinstance(n_s, bool) or not 0 <= n_s < r:
            raise ValueError(f"sentence_pairs must be an int in [0, {r - 1}] (the token axis keeps >= 1), got {n_s!r}")
        self.sentence_pairs = n_s
        self.axial = AxialRotaryEmbedding(
            head_dim, 2, pairs_per_axis=[n_s, r - n_s], base=[sentence_base, token_base], interleaved=interleaved
        )

    def forward(self, q: torch.Tensor, k: torch.Tensor, positions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``q, k: [B, H, T, D]``; ``positions: [T, 2]`` / ``[B, T, 2]`` -> rotated ``q, k``."""
        return self.axial(q, k, positions)
