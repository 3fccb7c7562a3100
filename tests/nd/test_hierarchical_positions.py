"""Hierarchical (sentence, token-in-sentence) positions: builder, packing round trip, reduction to 1-D RoPE."""

from __future__ import annotations

import pytest
import torch

from ropekit.nd.hierarchical import (
    HierarchicalRotaryEmbedding,
    pack_hierarchical,
    sentence_boundaries,
    sentence_positions,
    unpack_hierarchical,
)

transformers_llama = pytest.importorskip("transformers.models.llama.modeling_llama")


def _loop_positions(ends: list[bool]) -> list[tuple[int, int]]:
    out, s, w = [], 0, 0
    for e in ends:
        out.append((s, w))
        s, w = (s + 1, 0) if e else (s, w + 1)
    return out


def test_builder_matches_a_loop_and_packs_round_trip() -> None:
    ids = torch.tensor([[5, 1, 9, 1, 1, 7, 3], [1, 2, 2, 2, 9, 2, 1]])
    b = sentence_boundaries(ids, [1, 9])
    pos = sentence_positions(b)
    for row in range(2):
        assert [tuple(x) for x in pos[row].tolist()] == _loop_positions(b[row].tolist())
    torch.testing.assert_close(unpack_hierarchical(pack_hierarchical(pos)), pos)


def test_one_sentence_without_sentence_pairs_is_plain_rope() -> None:
    D, T = 16, 7
    pe = HierarchicalRotaryEmbedding(D, sentence_pairs=0)
    q, k = torch.randn(1, 2, T, D, dtype=torch.float64), torch.randn(1, 2, T, D, dtype=torch.float64)
    pos = sentence_positions(torch.zeros(T, dtype=torch.bool))
    qr, kr = pe(q, k, pos)
    inv = 1.0 / 10_000.0 ** (torch.arange(0, D, 2, dtype=torch.float64) / D)
    ang = torch.arange(T, dtype=torch.float64)[:, None] * inv
    emb = torch.cat((ang, ang), -1)
    wq, wk = transformers_llama.apply_rotary_pos_emb(q, k, emb.cos(), emb.sin(), unsqueeze_dim=0)
    torch.testing.assert_close(qr, wq, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(kr, wk, atol=1e-5, rtol=1e-5)


def test_bad_inputs_raise() -> None:
    with pytest.raises(ValueError, match="bool"):
        sentence_positions(torch.zeros(4, dtype=torch.long))
    with pytest.raises(ValueError, match="boundary_ids"):
        sentence_boundaries(torch.zeros(4, dtype=torch.long), [])
    with pytest.raises(ValueError, match="sentence_pairs"):
        HierarchicalRotaryEmbedding(8, sentence_pairs=4)
