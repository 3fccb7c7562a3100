"""HierarchicalRotaryEmbedding (core tables + kernel) against the N-D reference, AxialRotaryEmbedding."""

from __future__ import annotations

import pytest
import torch

from ropekit.nd import AxialRotaryEmbedding
from ropekit.nd.hierarchical import (
    HierarchicalRotaryEmbedding,
    pack_hierarchical,
    sentence_positions,
)


@pytest.mark.parametrize("interleaved", [False, True])
@pytest.mark.parametrize("sentence_pairs", [0, 1, 3])
def test_matches_axial_rope_with_the_same_split(sentence_pairs: int, interleaved: bool) -> None:
    D, T = 16, 23
    g = torch.Generator().manual_seed(sentence_pairs)
    q, k = torch.randn(2, 3, T, D, generator=g), torch.randn(2, 1, T, D, generator=g)
    pos = sentence_positions(torch.rand(2, T, generator=g) < 0.2)  # [B, T, 2]
    fast = HierarchicalRotaryEmbedding(
        D, sentence_pairs=sentence_pairs, sentence_base=50.0, token_base=1000.0, interleaved=interleaved
    )
    ref = AxialRotaryEmbedding(
        D, 2, pairs_per_axis=[sentence_pairs, D // 2 - sentence_pairs], base=[50.0, 1000.0], interleaved=interleaved
    )
    for got, want in zip(fast(q, k, pos), ref(q, k, pos), strict=True):
        torch.testing.assert_close(got, want, atol=2e-5, rtol=2e-5)
    for got, want in zip(fast.rotate_packed(q, k, pack_hierarchical(pos)), fast(q, k, pos), strict=True):
        assert torch.equal(got, want)
    # positions shared by the batch ([T, 2]) broadcast like [B, T, 2]
    shared = fast(q, k, pos[0])
    torch.testing.assert_close(shared[0], fast(q, k, pos[0].expand(2, T, 2))[0], atol=0, rtol=0)


def test_bad_positions_raise() -> None:
    pe = HierarchicalRotaryEmbedding(8)
    q = k = torch.randn(1, 1, 4, 8)
    with pytest.raises(ValueError, match=r"\[T, 2\]"):
        pe(q, k, torch.arange(4))
    with pytest.raises(ValueError, match="must be >= 0"):
        pe(q, k, torch.tensor([[0, 0], [0, 1], [1, -1], [1, 0]]))
    with pytest.raises(ValueError, match="tokens"):
        pe(q, k, torch.zeros(5, 2, dtype=torch.long))
    with pytest.raises(ValueError, match="head_dim"):
        pe(torch.randn(1, 1, 4, 6), torch.randn(1, 1, 4, 6), torch.zeros(4, 2, dtype=torch.long))
    with pytest.raises(ValueError, match="token_base"):
        HierarchicalRotaryEmbedding(8, token_base=float("nan"))
