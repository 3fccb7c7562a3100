"""N-D PoPE (ropekit.nd.pope): one axis is 1-D PoPE exactly; the score is relative on every axis; each axis
owns its slice of the features; shapes and bad input."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from ropekit.nd import (
    AxialPolarEmbedding,
    apply_pope_nd,
    axial_frequencies,
    grid_positions,
    pope_nd_frequencies,
    split_features,
)
from ropekit.pope import PolarEmbedding, apply_pope, pope_frequencies

B, H, HK, T, D = 2, 4, 2, 12, 16


def _qk(seed: int = 0, dtype: torch.dtype = torch.float32) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(B, H, T, D, generator=g, dtype=dtype), torch.randn(B, HK, T, D, generator=g, dtype=dtype)


def _scores(qp: torch.Tensor, kp: torch.Tensor) -> torch.Tensor:
    """``[B, H, T, T]`` with grouped keys repeated over their query heads."""
    return qp @ kp.repeat_interleave(qp.shape[1] // kp.shape[1], dim=1).transpose(-1, -2)


def test_one_axis_frequencies_are_pope_ladder() -> None:
    assert torch.equal(pope_nd_frequencies([D], 500.0)[0], pope_frequencies(D, 500.0))


@pytest.mark.parametrize("batched", [False, True])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_one_axis_equals_1d_pope_exactly(batched: bool, dtype: torch.dtype) -> None:
    q, k = _qk(1, dtype)
    positions = torch.arange(T) * 37 + 5 if not batched else torch.stack([torch.arange(T), torch.arange(T) * 3 + 100])
    bias = torch.rand(H, D, generator=torch.Generator().manual_seed(2)) * -7.0  # some beyond -2 pi: clamped
    want = apply_pope(q, k, pope_frequencies(D), positions, bias)
    got = apply_pope_nd(q, k, pope_nd_frequencies([D]), positions.unsqueeze(-1), bias)
    assert torch.equal(got[0], want[0]) and torch.equal(got[1], want[1])


def test_module_one_axis_equals_polar_embedding() -> None:
    q, k = _qk(3)
    one_d = PolarEmbedding(D, H, bias_uniform_init=True, generator=torch.Generator().manual_seed(4))
    nd = AxialPolarEmbedding(D, H, n_axes=1, bias_uniform_init=True, generator=torch.Generator().manual_seed(4))
    positions = torch.arange(T)
    for a, b in zip(one_d(q, k, positions), nd(q, k, positions[:, None]), strict=True):
        assert torch.equal(a, b)


def _complex_scores(q, k, freqs, pq, pk, bias) -> torch.Tensor:
    """The N-D PoPE score written out in float64: ``sum_c mu_q mu_k cos((p_t - p_s) . freqs[:, c] - delta_c)``."""
    mu_q = torch.nn.functional.softplus(q.double())  # [B, H, T, D]
    mu_k = torch.nn.functional.softplus(k.double()).repeat_interleave(H // HK, dim=1)
    dphase = (pq.double()[:, None, :] - pk.double()[None, :, :]) @ freqs.double()  # [T, S, D]
    delta = bias.double().clamp(-2 * math.pi, 0)[:, None, None, :]  # [H, 1, 1, D]
    return torch.einsum("bhtc,bhsc,htsc->bhts", mu_q, mu_k, torch.cos(dphase[None] - delta))


@pytest.mark.parametrize("layout", ["chunked", "interleaved"])
def test_matches_complex_form_on_a_grid(layout: str) -> None:
    q, k = _qk(5)
    freqs = pope_nd_frequencies([6, 6, 4], [100.0, 1000.0, 50.0], layout=layout)
    pos = grid_positions(2, 3, 2)  # [12, 3]
    bias = -torch.rand(H, D, generator=torch.Generator().manual_seed(6)) * 3.0
    qp, kp = apply_pope_nd(q, k, freqs, pos, bias)
    torch.testing.assert_close(
        _scores(qp, kp).double(), _complex_scores(q, k, freqs, pos, pos, bias), atol=2e-5, rtol=1e-5
    )


@settings(max_examples=25, deadline=None)
@given(axis=st.integers(0, 2), shift=st.integers(-5000, 5000), frac=st.booleans())
def test_relative_on_every_axis(axis: int, shift: int, frac: bool) -> None:
    q, k = _qk(7)
    freqs = pope_nd_frequencies(split_features(D, 3))
    bias = -torch.rand(H, D, generator=torch.Generator().manual_seed(8)) * 6.0
    pos = torch.randint(0, 64, (T, 3), generator=torch.Generator().manual_seed(9)).double()
    moved = pos.clone()
    moved[:, axis] += shift + (0.25 if frac else 0.0)
    before = _scores(*apply_pope_nd(q, k, freqs, pos, bias))
    after = _scores(*apply_pope_nd(q, k, freqs, moved, bias))
    torch.testing.assert_close(after, before, atol=1e-4, rtol=1e-4)


def test_scores_do_depend_on_each_axis() -> None:  # the relativity test above can fail
    q, k = _qk(10)
    freqs = pope_nd_frequencies(split_features(D, 2))
    pos = grid_positions(3, 4)
    for axis in (0, 1):
        moved = pos.clone()
        moved[0, axis] += 1  # one token moves along one axis
        assert not torch.allclose(
            _scores(*apply_pope_nd(q, k, freqs, moved)), _scores(*apply_pope_nd(q, k, freqs, pos))
        )


def test_each_axis_owns_its_features() -> None:
    q, k = _qk(11)
    counts = [10, 6]
    freqs = pope_nd_frequencies(counts, layout="chunked")
    owner = torch.tensor([0] * 10 + [1] * 6)
    assert torch.equal((freqs != 0).long().argmax(0), owner) and torch.equal((freqs != 0).sum(0), torch.ones(D).long())
    assert torch.equal(freqs != 0, axial_frequencies(counts, layout="chunked") != 0)  # the axial placement
    pos = grid_positions(3, 4)
    moved = pos.clone()
    moved[:, 1] += 3.0
    qa, _ = apply_pope_nd(q, k, freqs, pos)
    qb, _ = apply_pope_nd(q, k, freqs, moved)
    feats = qa.unflatten(-1, (D, 2)), qb.unflatten(-1, (D, 2))  # [..., D, (re, im)]
    assert torch.equal(feats[0][..., :10, :], feats[1][..., :10, :])  # axis 0's features ignore axis 1
    assert not torch.allclose(feats[0][..., 10:, :], feats[1][..., 10:, :])


def test_shapes_grouped_keys_and_key_positions() -> None:
    q, k = _qk(12)
    layer = AxialPolarEmbedding(D, H, n_axes=2)
    pos = torch.stack([grid_positions(3, 4), grid_positions(3, 4) + 2])  # [B, T, 2]
    qp, kp = layer(q, k, pos)
    assert qp.shape == (B, H, T, 2 * D) and kp.shape == (B, HK, T, 2 * D) and qp.dtype == q.dtype
    k_short = k[:, :, :5]
    qp2, kp2 = apply_pope_nd(q, k_short, layer.freqs, pos, k_positions=pos[:, :5])
    assert kp2.shape == (B, HK, 5, 2 * D)
    torch.testing.assert_close(kp2, kp[:, :, :5])
    torch.testing.assert_close(qp2, qp.detach())  # the module's offsets start at 0
    loss = _scores(*layer(q, k, pos)).sum()
    loss.backward()
    assert layer.phase_bias.grad is not None and layer.phase_bias.grad.abs().sum() > 0


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda q, k, f: apply_pope_nd(q, k, f, torch.zeros(T, 3)), r"\[T, 2\] or \[B, T, 2\]"),
        (lambda q, k, f: apply_pope_nd(q, k, f, torch.zeros(T)), r"\[T, 2\] or \[B, T, 2\]"),
        (lambda q, k, f: apply_pope_nd(q, k, f, torch.zeros(T, 2, dtype=torch.bool)), "integer tensor"),
        (lambda q, k, f: apply_pope_nd(q, k, f, torch.full((T, 2), math.nan)), "finite"),
        (lambda q, k, f: apply_pope_nd(q, k, f, torch.zeros(T + 1, 2)), "tokens"),
        (lambda q, k, f: apply_pope_nd(q, k, f[:, :8], torch.zeros(T, 2)), "D=8"),
        (lambda q, k, f: apply_pope_nd(q[0], k, f, torch.zeros(T, 2)), r"\[B, H, T, D\]"),
        (lambda q, k, f: apply_pope_nd(q, k, f, torch.zeros(T, 2), torch.zeros(H, D + 1)), "phase_bias"),
        (lambda q, k, f: apply_pope_nd(q, k, f.long(), torch.zeros(T, 2)), "float"),
        (lambda q, k, f: pope_nd_frequencies([8, 8], [100.0]), "one per axis"),
        (lambda q, k, f: pope_nd_frequencies([8, 8], 1.0), "> 1"),
        (lambda q, k, f: pope_nd_frequencies([8, 8], layout="spiral"), "layout"),
        (lambda q, k, f: pope_nd_frequencies([0, 0]), "positive sum"),
        (lambda q, k, f: AxialPolarEmbedding(D, H, 2, features_per_axis=[8, 4]), "summing to head_dim"),
        (lambda q, k, f: split_features(2, 3), "at least one feature"),
    ],
)
def test_bad_input(call, match: str) -> None:
    q, k = _qk(13)
    with pytest.raises(ValueError, match=match):
        call(q, k, pope_nd_frequencies([8, 8]))
