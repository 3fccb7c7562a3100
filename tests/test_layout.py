"""convert_qk_layout: weights trained for one pairing, converted, give the same attention with the other."""

import pytest
import torch

from ropekit import apply_rotary, convert_qk_layout, layout_permutation, rope_cos_sin, rope_frequencies


def attention_scores(x, wq, wk, bq, bk, n_q, n_kv, head_dim, cos, sin, interleaved):
    T = x.shape[0]
    q = (x @ wq.T + bq).view(T, n_q, head_dim).transpose(0, 1)  # [Hq, T, D]
    k = (x @ wk.T + bk).view(T, n_kv, head_dim).transpose(0, 1)  # [Hk, T, D]
    q, k = apply_rotary(q, cos, sin, interleaved=interleaved), apply_rotary(k, cos, sin, interleaved=interleaved)
    k = k.repeat_interleave(n_q // n_kv, dim=0)  # GQA
    return q @ k.transpose(-1, -2)  # [Hq, T, T]


@pytest.mark.parametrize("source", ["interleaved", "half"])
@pytest.mark.parametrize(("n_q", "n_kv"), [(4, 4), (4, 1), (6, 2)])
@pytest.mark.parametrize("partial", [1.0, 0.5])
def test_converted_weights_give_same_scores(source, n_q, n_kv, partial):
    g = torch.Generator().manual_seed(0)
    head_dim, hidden, T = 16, 32, 11
    rotary_dim = int(head_dim * partial)
    wq = torch.randn(n_q * head_dim, hidden, dtype=torch.float64, generator=g)
    wk = torch.randn(n_kv * head_dim, hidden, dtype=torch.float64, generator=g)
    bq = torch.randn(n_q * head_dim, dtype=torch.float64, generator=g)
    bk = torch.randn(n_kv * head_dim, dtype=torch.float64, generator=g)
    x = torch.randn(T, hidden, dtype=torch.float64, generator=g)
    inv, _ = rope_frequencies({"partial_rotary_factor": partial}, head_dim=head_dim)
    cos, sin = rope_cos_sin(inv, torch.arange(T))
    target = "half" if source == "interleaved" else "interleaved"

    def conv(w, n):
        return convert_qk_layout(w, n, head_dim, to=target, rotary_dim=rotary_dim)

    before = attention_scores(x, wq, wk, bq, bk, n_q, n_kv, head_dim, cos, sin, source == "interleaved")
    after = attention_scores(
        x,
        conv(wq, n_q),
        conv(wk, n_kv),
        conv(bq, n_q),
        conv(bk, n_kv),
        n_q,
        n_kv,
        head_dim,
        cos,
        sin,
        target == "interleaved",
    )
    torch.testing.assert_close(after, before, rtol=0, atol=1e-10)
    # and without conversion the scores differ: the test can fail
    wrong = attention_scores(x, wq, wk, bq, bk, n_q, n_kv, head_dim, cos, sin, target == "interleaved")
    assert (wrong - before).abs().max() > 1e-3


def test_round_trip_and_known_permutation():
    w = torch.arange(2 * 8).float()[:, None]
    there = convert_qk_layout(w, 2, 8, to="half")
    assert there[:8, 0].tolist() == [0, 2, 4, 6, 1, 3, 5, 7]
    torch.testing.assert_close(convert_qk_layout(there, 2, 8, to="interleaved"), w)
    assert layout_permutation(8, to="half", rotary_dim=4).tolist() == [0, 2, 1, 3, 4, 5, 6, 7]
