"""Axial RoPE and the frequency builders: one axis is 1-D RoPE, explicit pair splits, per-axis bases, errors."""

from __future__ import annotations

import pytest
import torch

from ropekit import apply_rotary, rope_cos_sin
from ropekit.nd import (
    AxialRotaryEmbedding,
    apply_rotary_nd,
    axial_frequencies,
    frequencies_from_pair_axes,
    grid_positions,
    mixed_frequencies,
    nd_cos_sin,
)


@pytest.mark.parametrize("interleaved", [False, True])
def test_one_axis_equals_1d_rope(interleaved: bool) -> None:
    D, base = 16, 10000.0
    freqs = axial_frequencies([D // 2], base)  # [1, r]
    inv_freq = (1.0 / base ** (torch.arange(0, D, 2, dtype=torch.float64) / D)).float()
    torch.testing.assert_close(freqs[0], inv_freq, atol=0, rtol=0)
    pos = torch.tensor([0, 1, 5, 300, 70_000])
    cos, sin = nd_cos_sin(freqs, pos[:, None])
    cos1, sin1 = rope_cos_sin(inv_freq, pos)
    torch.testing.assert_close(cos, cos1, atol=0, rtol=0)
    torch.testing.assert_close(sin, sin1, atol=0, rtol=0)
    x = torch.randn(2, 3, 5, D)
    torch.testing.assert_close(
        apply_rotary_nd(x, freqs, pos[:, None], interleaved=interleaved),
        apply_rotary(x, cos1, sin1, interleaved=interleaved),
        atol=1e-6,
        rtol=0,
    )
    module = AxialRotaryEmbedding(D, 1, base=base, interleaved=interleaved)
    q, _ = module(x, x, pos[:, None])
    torch.testing.assert_close(q, apply_rotary(x, cos1, sin1, interleaved=interleaved), atol=1e-6, rtol=0)


def test_axial_split_bases_and_layouts() -> None:
    F = axial_frequencies([3, 1], [100.0, 10.0])
    assert F.shape == (2, 4)
    torch.testing.assert_close(F[0, :3], torch.tensor([1.0, 100 ** (-1 / 3), 100 ** (-2 / 3)]))
    assert F[1].tolist() == [0.0, 0.0, 0.0, 1.0] and F[0, 3] == 0
    inter = axial_frequencies([2, 2, 1], 100.0, layout="interleaved")
    assert (inter != 0).int().argmax(0).tolist() == [0, 1, 2, 0, 1]
    # a 2-D axial rotation of a grid token only depends on its own row for row pairs and column for column pairs
    x = torch.randn(6, 8)
    pos = grid_positions(2, 3)
    y = apply_rotary_nd(x, axial_frequencies([2, 2]), pos)
    y_rows = apply_rotary_nd(x, axial_frequencies([2, 2]), torch.stack([pos[:, 0], torch.zeros(6)], -1))
    pairs_rows = [0, 1, 4, 5]  # half pairing, r = 4: pairs 0, 1 (features 0, 1 and 4, 5) follow the row
    torch.testing.assert_close(y[:, pairs_rows], y_rows[:, pairs_rows])


def test_grid_positions_and_m_rope_frequencies() -> None:
    assert grid_positions(2, 3).tolist() == [[0, 0], [0, 1], [0, 2], [1, 0], [1, 1], [1, 2]]
    assert grid_positions(1, 2, offset=[5, 1]).tolist() == [[5, 1], [5, 2]]
    F = frequencies_from_pair_axes(torch.tensor([1.0, 0.5, 0.25]), torch.tensor([2, 0, 2]), 3)
    assert F.tolist() == [[0, 0.5, 0], [0, 0, 0], [1.0, 0, 0.25]]
    M = mixed_frequencies(3, [2, 2], 10.0, generator=torch.Generator().manual_seed(0))  # [H, A, r]
    # each head's frequency vectors are the axial ones turned by one rotation: magnitudes are kept
    torch.testing.assert_close(M.norm(dim=1), axial_frequencies([2, 2], 10.0).norm(dim=0).expand(3, 4))


def test_errors_name_the_problem() -> None:
    x = torch.randn(4, 8)
    with pytest.raises(ValueError, match="same A"):
        apply_rotary_nd(x, axial_frequencies([2, 2]), torch.zeros(4, 3))
    with pytest.raises(ValueError, match="head_dim 8 < 2\\*6"):
        apply_rotary_nd(x, axial_frequencies([3, 3]), torch.zeros(4, 2))
    with pytest.raises(ValueError, match="P must be"):
        apply_rotary_nd(x, axial_frequencies([2, 2]), torch.zeros(4, 2), P=torch.eye(4))
    with pytest.raises(ValueError, match="do not broadcast"):
        apply_rotary_nd(x, axial_frequencies([2, 2]), torch.zeros(5, 2))
    with pytest.raises(ValueError, match="> 1"):
        axial_frequencies([2, 2], 1.0)
    with pytest.raises(ValueError, match="layout"):
        axial_frequencies([2, 2], layout="zigzag")
    with pytest.raises(ValueError, match="one per axis"):
        axial_frequencies([2, 2], [100.0])
    with pytest.raises(ValueError, match="grid_positions"):
        AxialRotaryEmbedding(8)(x[None, None], x[None, None], torch.zeros(4))
