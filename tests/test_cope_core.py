"""CoPE core ops (Golovneva et al. 2024): all-one gates give i - j + 1, causality, interpolation, gradients."""

from __future__ import annotations

import pytest
import torch

from ropekit.cope import causal_visibility, cope_gates, cope_logits, cope_positions, cope_scores


def test_all_one_gates_give_token_count_relative_positions() -> None:
    T = 6
    vis = causal_visibility(T, T, 0)
    gates = torch.ones(1, 1, T, T) * vis
    p = cope_positions(gates)[0, 0]
    i, j = torch.arange(T)[:, None], torch.arange(T)[None]
    want = torch.where(j <= i, (i - j + 1).float(), torch.zeros(()))
    torch.testing.assert_close(p, want)


def test_future_keys_get_zero_gate_and_do_not_change_past_positions() -> None:
    g = torch.Generator().manual_seed(0)
    q, k = torch.randn(1, 2, 5, 4, generator=g), torch.randn(1, 2, 5, 4, generator=g)
    vis = causal_visibility(5, 5, 0)
    gates = cope_gates(q, k, vis)
    assert (gates[..., ~vis] == 0).all()
    k2 = k.clone()
    k2[..., 4, :] += 10.0  # change only the last key
    p1, p2 = cope_positions(gates), cope_positions(cope_gates(q, k2, vis))
    torch.testing.assert_close(p1[..., :4, :], p2[..., :4, :])  # queries 0..3 cannot see key 4


def test_interpolated_logits_match_direct_interpolation_and_grad_flows() -> None:
    g = torch.Generator().manual_seed(1)
    q = torch.randn(1, 1, 4, 3, generator=g, dtype=torch.float64)
    k = torch.randn(1, 1, 4, 3, generator=g, dtype=torch.float64, requires_grad=True)
    emb = torch.randn(3, 3, generator=g, dtype=torch.float64)
    gates = cope_gates(q, k, causal_visibility(4, 4, 0))
    pos = cope_positions(gates)
    out = cope_logits(q, pos, emb)
    p = pos.detach().clamp(max=2)[0, 0]
    want = torch.empty(4, 4, dtype=torch.float64)
    for a in range(4):
        for b in range(4):
            lo, hi = int(p[a, b].floor()), int(p[a, b].ceil())
            w = p[a, b] - lo
            e = emb[:, lo] * (1 - w) + emb[:, hi] * w
            want[a, b] = q[0, 0, a] @ e
    torch.testing.assert_close(out[0, 0].detach(), want)
    out.sum().backward()
    assert k.grad is not None and k.grad.abs().sum() > 0


def test_bad_shapes_raise() -> None:
    with pytest.raises(ValueError, match="must be"):
        cope_gates(torch.randn(1, 1, 2, 4), torch.randn(1, 1, 2, 3), causal_visibility(2, 2, 0))
    with pytest.raises(ValueError, match="pos_emb"):
        cope_logits(torch.randn(1, 1, 2, 4), torch.zeros(1, 1, 2, 2), torch.randn(3, 5))


def test_the_query_counts_itself_and_positions_match_a_loop() -> None:
    """Golovneva et al. 2024, section 3: ``p_ij = sum_{t=j..i} g_it``, so ``p_ii = g_ii`` (not 0)."""
    g = torch.Generator().manual_seed(2)
    q, k = torch.randn(1, 1, 5, 4, generator=g), torch.randn(1, 1, 5, 4, generator=g)
    gates = cope_gates(q, k, causal_visibility(5, 5, 0))
    p = cope_positions(gates)[0, 0]
    torch.testing.assert_close(p.diagonal(), gates[0, 0].diagonal())
    for i in range(5):
        for j in range(i + 1):
            want = sum(float(torch.sigmoid(q[0, 0, i] @ k[0, 0, t] / 2.0)) for t in range(j, i + 1))
            assert abs(float(p[i, j]) - want) < 1e-5


def test_cope_scores_reject_a_mask_of_the_wrong_shape() -> None:
    q = torch.randn(1, 1, 3, 4)
    with pytest.raises(ValueError, match="visible must be a bool mask"):
        cope_scores(q, q, torch.ones(3, 2, dtype=torch.bool), torch.zeros(4, 5))
    with pytest.raises(ValueError, match="visible must be a bool mask"):
        cope_scores(q, q, torch.ones(3, 3), torch.zeros(4, 5))
