"""Hierarchical (sentence, token-in-sentence) positions on the axial N-D machinery (word/sentence-level rotation).

Legend: ``ids: [B, T]`` token ids, ``boundary: [B, T]`` bool (True where a token ends a sentence, e.g. '.'),
``positions: [..., T, 2]`` int64 coordinates ``(sentence index, token index within the sentence)``,
``packed: [..., T]`` int64 (both coordinates in one integer, for code paths that carry ``[B, T]`` positions).

A token that ends a sentence belongs to the sentence it ends; the next token starts sentence ``s + 1`` at
in-sentence index 0. The rotation is axial RoPE (Heo et al. 2024's axial form applied to text; the rotation of
:class:`ropekit.nd.AxialRotaryEmbedding`, computed on the core's tables and kernel): the first ``sentence_pairs``
pairs turn with the sentence index, the others with the in-sentence index. With one sentence and
``sentence_pairs = 0`` this is 1-D RoPE over the token axis with base ``token_base`` (the axial ladder
``base^(-i/n)`` over ``n = D/2`` pairs is RoPE's ``base^(-2i/D)``). Relative per axis: the score depends on
(sentence distance, in-sentence distance), not on the absolute sentence.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from ropekit.angles import check_positions
from ropekit.functional import apply_rotary_qk, rope_cos_sin
from ropekit.scaling import rope_frequencies

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
    ``sentence_base``), the remaining ``D/2 - sentence_pairs`` for the token axis (base ``token_base``).

    Each axis' ladder is RoPE's default frequencies for a head of twice its pairs (``base^(-i/n)``,
    :func:`ropekit.scaling.rope_frequencies`), its tables come from :func:`ropekit.functional.rope_cos_sin` (angles
    reduced exactly in float64) and the rotation is :func:`ropekit.functional.apply_rotary_qk` (the kernel tier):
    with ``sentence_pairs = 0`` the numbers are those of :class:`ropekit.RotaryEmbedding` at base ``token_base``
    for the in-sentence positions, bit for bit. :class:`ropekit.nd.AxialRotaryEmbedding` with the same split and
    bases is the reference it is tested against.

    Positions: ``[T, 2]`` / ``[B, T, 2]`` coordinates, or packed ``[T]`` / ``[B, T]`` ids
    (:func:`pack_hierarchical`; a plain ``0..T-1`` is one sentence) through :meth:`rotate_packed`.
    """

    sentence_inv_freq: torch.Tensor
    token_inv_freq: torch.Tensor

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
        if not isinstance(head_dim, int) or isinstance(head_dim, bool) or head_dim % 2 or head_dim < 2:
            raise ValueError(f"head_dim must be an even int >= 2, got {head_dim!r}")
        r = head_dim // 2
        n_s = max(1, r // 4) if sentence_pairs is None else sentence_pairs
        if not isinstance(n_s, int) or isinstance(n_s, bool) or not 0 <= n_s < r:
            raise ValueError(f"sentence_pairs must be an int in [0, {r - 1}] (the token axis keeps >= 1), got {n_s!r}")
        if not isinstance(interleaved, bool):
            raise ValueError(f"interleaved must be True or False, got {interleaved!r}")
        for name, base in (("sentence_base", sentence_base), ("token_base", token_base)):
            if isinstance(base, bool) or not isinstance(base, (int, float)) or not math.isfinite(base) or base <= 1:
                raise ValueError(f"{name} must be a finite number > 1 (a RoPE base such as 100 or 10000), got {base!r}")
        self.head_dim, self.sentence_pairs, self.interleaved = head_dim, n_s, interleaved
        self.sentence_base, self.token_base = float(sentence_base), float(token_base)
        self.register_buffer("sentence_inv_freq", _ladder(n_s, sentence_base), persistent=False)  # [n_s]
        self.register_buffer("token_inv_freq", _ladder(r - n_s, token_base), persistent=False)  # [r - n_s]

    def cos_sin(self, positions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``positions: [..., T, 2]`` integer -> ``cos, sin: [..., T, r]`` (sentence pairs first)."""
        if not isinstance(positions, torch.Tensor) or positions.dim() < 2 or positions.shape[-1] != 2:
            shape = tuple(positions.shape) if isinstance(positions, torch.Tensor) else type(positions).__name__
            raise ValueError(
                f"hierarchical positions must be [T, 2] or [B, T, 2] (sentence, within) integers, got {shape}; "
                f"build them with sentence_positions(sentence_boundaries(ids, boundary_ids))"
            )
        check_positions(positions, name="hierarchical positions", dims=(2, 3), allow_negative=False)
        cos_t, sin_t = rope_cos_sin(self.token_inv_freq, positions[..., 1])
        if not self.sentence_pairs:
            return cos_t, sin_t
        cos_s, sin_s = rope_cos_sin(self.sentence_inv_freq, positions[..., 0])
        return torch.cat((cos_s, cos_t), dim=-1), torch.cat((sin_s, sin_t), dim=-1)

    def forward(self, q: torch.Tensor, k: torch.Tensor, positions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``q: [B, Hq, T, D]``, ``k: [B, Hk, T, D]``; ``positions: [T, 2]`` / ``[B, T, 2]`` -> rotated ``q, k``."""
        if q.shape[-1] != self.head_dim or k.shape[-1] != self.head_dim:
            raise ValueError(
                f"HierarchicalRotaryEmbedding(head_dim={self.head_dim}) got q/k with head_dim "
                f"{q.shape[-1]}/{k.shape[-1]}"
            )
        cos, sin = self.cos_sin(positions)  # [T, r] or [B, T, r] (checks the positions)
        if positions.shape[-2] != q.shape[-2]:
            raise ValueError(f"positions has {positions.shape[-2]} tokens but q/k have T={q.shape[-2]}")
        if cos.dim() == 3:
            cos, sin = cos.unsqueeze(1), sin.unsqueeze(1)  # [B, 1, T, r]: broadcast over heads
        return apply_rotary_qk(q, k, cos, sin, interleaved=self.interleaved)

    def rotate_packed(
        self, q: torch.Tensor, k: torch.Tensor, packed: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """As :meth:`forward` with packed positions ``[T]`` / ``[B, T]`` (:func:`pack_hierarchical`)."""
        check_positions(packed, name="packed hierarchical positions", dims=(1, 2), allow_negative=False)
        return self(q, k, unpack_hierarchical(packed))

    def extra_repr(self) -> str:
        return (
            f"head_dim={self.head_dim}, sentence_pairs={self.sentence_pairs}, sentence_base={self.sentence_base:g}, "
            f"token_base={self.token_base:g}, interleaved={self.interleaved}"
        )


def _ladder(pairs: int, base: float) -> torch.Tensor:
    """RoPE's default ladder over ``pairs`` pairs, ``base^(-i/pairs)``: ``[pairs]`` float32 (empty for 0)."""
    if not pairs:
        return torch.zeros(0)
    inv_freq, _ = rope_frequencies({"rope_type": "default", "rope_theta": float(base)}, head_dim=2 * pairs)
    return inv_freq
