"""ropekit.cache: rerotate and evict move cached keys exactly; RotaryEmbedding position edge cases."""

import pytest
import torch

from ropekit import RotaryEmbedding
from ropekit.cache import evict, rerotate, sink_window_keep

ROPES = [
    dict(head_dim=16),
    dict(head_dim=16, interleaved=True),
    dict(head_dim=16, rope_parameters={"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 8}),
    dict(head_dim=16, rope_parameters={"rope_type": "default", "partial_rotary_factor": 0.5}),
    dict(head_dim=16, rope_parameters={"rope_type": "dynamic", "factor": 2.0}, max_position_embeddings=16),
    dict(
        head_dim=16,
        rope_parameters={
            "rope_type": "longrope",
            "short_factor": [1.0 + 0.1 * i for i in range(8)],
            "long_factor": [1.0 + i for i in range(8)],
            "original_max_position_embeddings": 8,
        },
        max_position_embeddings=32,
    ),
]


def _fresh(rope, k, positions, seq_len):
    cos, sin = rope.cos_sin(k.shape[-2], positions, seq_len=seq_len)
    from ropekit import apply_rotary

    return apply_rotary(k, cos, sin, interleaved=rope.interleaved)


@pytest.mark.parametrize("kwargs", ROPES, ids=lambda kw: str(kw.get("rope_parameters", kw))[:40])
def test_rerotate_equals_rotating_from_scratch(kwargs):
    rope = RotaryEmbedding(**kwargs)
    k = torch.randn(2, 3, 10, 16, dtype=torch.float64).float()
    src, dst = torch.arange(5, 15), torch.tensor([0, 1, 2, 3, 20, 21, 22, 23, 24, 1000])
    cached = _fresh(rope, k, src, 12)  # rotated in the state of length 12
    moved = rerotate(cached, src, dst, rope, from_seq_len=12, to_seq_len=30)  # new positions, new state
    assert (moved - _fresh(rope, k, dst, 30)).abs().max() < 1e-5
    back = rerotate(moved, dst, src, rope, from_seq_len=30, to_seq_len=12)
    assert (back - cached).abs().max() < 1e-5


def test_rerotate_needs_lengths_for_length_dependent_types_and_checks_positions():
    rope = RotaryEmbedding(**ROPES[4])
    k = torch.randn(1, 1, 4, 16)
    with pytest.raises(ValueError, match="from_seq_len"):
        rerotate(k, 0, 2, rope)
    with pytest.raises(ValueError, match="integer"):
        rerotate(k, torch.arange(4.0), 0, RotaryEmbedding(16))
    with pytest.raises(ValueError, match="T=4"):
        rerotate(k, torch.arange(3), 0, RotaryEmbedding(16))


def test_streaming_sink_eviction_matches_fresh_attention():
    """Keep 2 sink tokens and the last 4 of 12; after eviction, scores equal those of a fresh pass at 0..5."""
    rope = RotaryEmbedding(16)
    k_raw, v = torch.randn(1, 2, 12, 16), torch.randn(1, 2, 12, 16)
    k_cached = _fresh(rope, k_raw, torch.arange(12), None)
    keep = sink_window_keep(12, n_sink=2, window=4)
    assert keep.tolist() == [0, 1, 8, 9, 10, 11]
    k_new, v_new = evict(k_cached, v, keep, rope)
    assert torch.equal(v_new, v[:, :, keep])
    assert (k_new - _fresh(rope, k_raw[:, :, keep], torch.arange(6), None)).abs().max() < 1e-5
    assert sink_window_keep(5, n_sink=2, window=4).tolist() == list(range(5))


def test_rotary_embedding_position_edge_cases():
    """Packed sequences restart positions, left padding, positions past the table, bad positions raise."""
    from ropekit import apply_rotary

    rope = RotaryEmbedding(16, max_position_embeddings=8)  # initial table of 8 rows
    q, k = torch.randn(1, 2, 9, 16), torch.randn(1, 2, 9, 16)
    packed = torch.cat((torch.arange(4), torch.arange(5)))[None]  # [1, 9]: two documents
    pq, pk = rope(q, k, packed)
    a = rope(q[:, :, :4], k[:, :, :4])
    b = rope(q[:, :, 4:], k[:, :, 4:])
    assert torch.allclose(pq, torch.cat((a[0], b[0]), 2), atol=1e-6)
    assert torch.allclose(pk, torch.cat((a[1], b[1]), 2), atol=1e-6)
    far_q, _ = rope(q, k, 10_000)  # offset far past the table: it grows, no IndexError
    cos, sin = rope.cos_sin(9, torch.arange(10_000, 10_009))
    assert torch.allclose(far_q, apply_rotary(q, cos, sin), atol=1e-6)
    for bad, match in ((torch.arange(9.0), "integer"), (torch.arange(9) - 3, ">= 0")):
        with pytest.raises(ValueError, match=match):
            rope(q, k, bad)
    with pytest.raises(ValueError, match=">= 0"):
        rope(q, k, -1)
