"""RotaryEmbedding and SinusoidalPositionalEncoding: equal to the functional tier, tables never stale."""

import math

import pytest
import torch

from ropekit import (
    RotaryEmbedding,
    SinusoidalPositionalEncoding,
    apply_rotary_qk,
    rope_cos_sin,
    rope_frequencies,
    sinusoidal_table,
)

YARN = {"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 64}


def qk(B=2, Hq=4, Hk=2, T=10, D=32, dtype=torch.float32):
    g = torch.Generator().manual_seed(T)
    return torch.randn(B, Hq, T, D, generator=g).to(dtype), torch.randn(B, Hk, T, D, generator=g).to(dtype)


def expected(params, q, k, positions, *, interleaved=False, seq_len=None, max_pos=None):
    inv, af = rope_frequencies(params, head_dim=q.shape[-1], max_position_embeddings=max_pos, seq_len=seq_len)
    cos, sin = rope_cos_sin(inv, positions, attention_factor=af)
    if positions.dim() == 2:
        cos, sin = cos[:, None], sin[:, None]
    return apply_rotary_qk(q, k, cos, sin, interleaved=interleaved)


@pytest.mark.parametrize("params", [None, YARN, {"rope_type": "linear", "factor": 2.0, "partial_rotary_factor": 0.5}])
@pytest.mark.parametrize("interleaved", [False, True])
def test_matches_functional_for_every_position_form(params, interleaved):
    rope = RotaryEmbedding(32, params, interleaved=interleaved, max_position_embeddings=64)
    q, k = qk()
    for positions, pos_tensor in (
        (None, torch.arange(10)),
        (7, torch.arange(7, 17)),
        (torch.arange(3, 13), torch.arange(3, 13)),
        (torch.tensor([[0, 1, 2, 0, 1, 2, 3, 4, 5, 6], [5, 6, 7, 8, 9, 10, 11, 12, 13, 14]]), None),
    ):
        pos_tensor = positions if pos_tensor is None else pos_tensor
        got = rope(q, k, positions)
        want = expected(params, q, k, pos_tensor, interleaved=interleaved, max_pos=64)
        for a, b in zip(got, want, strict=True):
            torch.testing.assert_close(a, b, rtol=0, atol=1e-6)


def test_explicit_positions_equal_default_positions():
    rope = RotaryEmbedding(32, YARN, max_position_embeddings=64)
    q, k = qk()
    a, b = rope(q, k), rope(q, k, torch.arange(10))
    torch.testing.assert_close(a, b, rtol=0, atol=1e-6)


def test_table_grows_past_initial_length():
    rope = RotaryEmbedding(32, max_position_embeddings=16)
    q, k = qk(T=4)
    got = rope(q, k, 1000)  # past the table: extends, never IndexError
    assert rope.cos_table.shape[0] >= 1004
    want = expected(None, q, k, torch.arange(1000, 1004))
    torch.testing.assert_close(got, want, rtol=0, atol=1e-6)


def test_dynamic_state_follows_length():
    params = {"rope_type": "dynamic", "factor": 4.0}
    rope = RotaryEmbedding(32, params, max_position_embeddings=16)
    base_inv = rope.inv_freq.clone()
    q, k = qk(T=40)
    got = rope(q, k)  # length 40 > 16: the base grows
    assert rope.inv_freq[-1] < base_inv[-1]
    torch.testing.assert_close(got, expected(params, q, k, torch.arange(40), seq_len=40, max_pos=16), rtol=0, atol=1e-6)
    q2, k2 = qk(T=8)
    rope(q2, k2)  # back below the original length: default frequencies again
    torch.testing.assert_close(rope.inv_freq, base_inv, rtol=0, atol=0)


def test_longrope_switches_factor_sets():
    short, long = [1.0] * 16, [4.0] * 16
    params = {
        "rope_type": "longrope",
        "short_factor": short,
        "long_factor": long,
        "original_max_position_embeddings": 32,
    }
    rope = RotaryEmbedding(32, params, max_position_embeddings=128)
    q, k = qk(T=8)
    rope(q, k)
    short_inv = rope.inv_freq.clone()
    rope(q, k, 30)  # last position 37 > 32: long factors
    torch.testing.assert_close(rope.inv_freq, short_inv / 4)
    assert rope.attention_factor == pytest.approx(math.sqrt(1 + math.log(4) / math.log(32)))


def test_tables_stay_float32_after_module_cast():
    rope = RotaryEmbedding(32, max_position_embeddings=64).to(torch.bfloat16)
    q, k = qk(dtype=torch.bfloat16)
    got = rope(q, k, 50_000)
    assert rope.cos_table.dtype == torch.float32 and got[0].dtype == torch.bfloat16
    want = expected(None, q, k, torch.arange(50_000, 50_010))
    torch.testing.assert_close(got, want, rtol=0, atol=0)


def test_meta_device_then_materialise():
    with torch.device("meta"):
        rope = RotaryEmbedding(32, YARN, max_position_embeddings=64)
        q_meta, k_meta = torch.empty(1, 2, 5, 32), torch.empty(1, 2, 5, 32)
        out = rope(q_meta, k_meta)
    assert out[0].is_meta and out[0].shape == (1, 2, 5, 32)
    rope = rope.to_empty(device="cpu")  # buffers hold garbage now; the module must notice and rebuild
    q, k = qk(T=5)
    torch.testing.assert_close(rope(q, k), expected(YARN, q, k, torch.arange(5), max_pos=64), rtol=0, atol=1e-6)


def test_compiles_without_graph_breaks():
    rope = RotaryEmbedding(32, YARN, max_position_embeddings=64)
    q, k = qk(T=12)
    compiled = torch.compile(rope, fullgraph=True, backend="eager")
    for a, b in zip(compiled(q, k, 3), rope(q, k, 3), strict=True):
        torch.testing.assert_close(a, b)


def test_state_dict_holds_no_tables():
    assert RotaryEmbedding(32).state_dict() == {}


def test_sinusoidal_is_vaswani():
    pe = sinusoidal_table(torch.arange(50), 16)
    pos, i = torch.arange(50.0, dtype=torch.float64)[:, None], torch.arange(8, dtype=torch.float64)
    angle = pos / 10_000 ** (2 * i / 16)
    torch.testing.assert_close(pe[:, 0::2].double(), angle.sin(), rtol=0, atol=1e-6)
    torch.testing.assert_close(pe[:, 1::2].double(), angle.cos(), rtol=0, atol=1e-6)
    x = torch.zeros(2, 50, 16)
    torch.testing.assert_close(SinusoidalPositionalEncoding(16)(x), pe.expand(2, 50, 16))
    torch.testing.assert_close(SinusoidalPositionalEncoding(16)(x[:, :10], 40), pe[40:].expand(2, 10, 16))


def test_tutorial_snippet_is_not_vaswani():
    """A common tutorial `positional_encoding` bug: it multiplies positions by 2i/d instead of dividing by 10000^(2i/d),
    strides i by 2 over d/2 and concatenates sin/cos: a [1, L, d/2] table, not Vaswani's [L, d]."""
    length, d = 64, 16
    positions = torch.arange(0, length, dtype=torch.float).unsqueeze(-1)
    rates = 2 * torch.arange(0, d // 2, 2) / d  # as written in the seed
    seed = torch.cat([torch.sin(positions * rates), torch.cos(positions * rates)], dim=-1)
    assert seed.shape == (length, d // 2)  # the seed's comment claims [1, 512, 1024] for d = 512
    ours = sinusoidal_table(torch.arange(length), d)
    assert ours.shape == (length, d)
    assert (ours[:, : d // 2] - seed).abs().max() > 0.5


def test_far_offsets_need_no_table_of_that_length():
    """An offset of 2**45 would need a 256 TiB table: rows come from the positions instead, same numbers."""
    from ropekit.modules import MAX_TABLE_ROWS

    rope = RotaryEmbedding(16)
    q = k = torch.randn(1, 2, 3, 16)
    far = 2**45
    cos, sin = rope.cos_sin(3, far)
    ref_cos, ref_sin = rope.cos_sin(3, torch.arange(far, far + 3))
    assert torch.equal(cos, ref_cos) and torch.equal(sin, ref_sin)
    assert rope.cos_table.shape[0] <= MAX_TABLE_ROWS
    rope(q, k, far)  # no allocation error
    with pytest.raises(TypeError, match="bool"):
        rope.cos_sin(3, True)


def test_derived_yarn_factor_below_one_is_refused():
    with pytest.raises(ValueError, match="derived as max_position_embeddings"):
        rope_frequencies({"rope_type": "yarn", "original_max_position_embeddings": 64}, head_dim=16,
                         max_position_embeddings=32)
