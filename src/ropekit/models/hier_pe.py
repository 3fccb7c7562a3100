"""The ``hierarchical`` position encoding: (sentence, token-in-sentence) RoPE in the models' rotate hook.

Legend: ``ids: [B, T]`` token ids, ``q: [B, Hq, T, D]``, ``k: [B, Hk, T, D]``, ``packed: [T]`` / ``[B, T]`` int64
positions ``sentence * PACK_STRIDE + within`` (:func:`ropekit.nd.hierarchical.pack_hierarchical`).

The models carry one integer per token as their positions, so the two coordinates travel packed: the caller
builds them from the token ids with :func:`packed_sentence_positions` and passes them to the model's forward
(``model(ids, lengths, positions=packed)``); the encoding unpacks them and rotates with
:class:`ropekit.nd.hierarchical.HierarchicalRotaryEmbedding`. Positions below ``PACK_STRIDE`` (the default
``0..T-1``, an int offset while decoding with a KV cache) are one sentence: with ``sentence_pairs=0`` the kind is
``pe="rope"`` at ``rope_theta`` bit for bit, and so are restarting in-sentence positions against ``pe="rope"``
given those positions.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from ropekit.angles import check_positions
from ropekit.models.positions import Dims, PositionEncoding, positions_tensor, register_position_encoding
from ropekit.nd.hierarchical import (
    HierarchicalRotaryEmbedding,
    pack_hierarchical,
    sentence_boundaries,
    sentence_positions,
)

__all__ = ["Hierarchical", "packed_sentence_positions"]


def packed_sentence_positions(ids: torch.Tensor, boundary_ids: Sequence[int]) -> torch.Tensor:
    """``ids: [B, T]`` (or ``[T]``) -> packed positions of the same shape for ``pe="hierarchical"``: a token in
    ``boundary_ids`` (e.g. the ids of '.', '!', '?') ends its sentence, the next token starts the next one."""
    return pack_hierarchical(sentence_positions(sentence_boundaries(ids, boundary_ids)))


@register_position_encoding("hierarchical")
class Hierarchical(PositionEncoding):
    """Hierarchical RoPE (:mod:`ropekit.nd.hierarchical`): ``sentence_pairs`` rotary pairs turn with the sentence
    index (base ``sentence_base``), the others with the index within the sentence (base ``rope_theta``).

    ``sentence_pairs`` defaults to a quarter of the pairs (at least one); ``0`` is 1-D RoPE over the in-sentence
    index. Positions: packed ``[T]`` / ``[B, T]`` from :func:`packed_sentence_positions`, or an int offset (one
    sentence)."""

    def __init__(
        self,
        dims: Dims,
        sentence_pairs: int | None = None,
        sentence_base: float = 100.0,
        rope_theta: float = 10_000.0,
        interleaved: bool = False,
    ) -> None:
        super().__init__()
        self.rotary = HierarchicalRotaryEmbedding(
            dims.head_dim,
            sentence_pairs=sentence_pairs,
            sentence_base=sentence_base,
            token_base=rope_theta,
            interleaved=interleaved,
        )

    def rotate(
        self, q: torch.Tensor, k: torch.Tensor, positions: torch.Tensor | int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        if isinstance(positions, bool) or not isinstance(positions, (int, torch.Tensor)):
            raise TypeError(
                f"hierarchical positions must be an int offset or packed int64 [T] / [B, T] positions, got "
                f"{type(positions).__name__}; build them with packed_sentence_positions(ids, boundary_ids)"
            )
        if isinstance(positions, torch.Tensor) and (positions.dim() not in (1, 2) or positions.is_floating_point()):
            raise ValueError(
                f"hierarchical positions must be packed integers [T] / [B, T] (one per token), got "
                f"{positions.dtype} {tuple(positions.shape)}; pack (sentence, within) coordinates with "
                f"ropekit.nd.hierarchical.pack_hierarchical or build them with packed_sentence_positions(ids, ...)"
            )
        pos = check_positions(
            positions_tensor(positions, q.shape[-2], q.device), name="hierarchical positions", allow_negative=False
        )
        return self.rotary.rotate_packed(q, k, pos)
