"""The fused C++ ``rope_cos_sin`` pass: exact digit-split angles plus sin/cos, against an exact reference."""

from __future__ import annotations

import math
from fractions import Fraction

import pytest
import torch

from ropekit import rope_angles, rope_cos_sin, rope_frequencies
from ropekit.kernels import cpu, tablefree

pytestmark = pytest.mark.skipif(cpu.load() is None, reason="the C++ kernel is not built here")

# 2 pi to 40 digits (a fact, not the code under test): enough for positions up to 2**63 times f <= 1.
_TWO_PI = Fraction(2 * 3141592653589793238462643383279502884197, 10**39)
# Bound: today's path rounds the angle in [-pi, pi] to float32 (<= 1.2e-7 rad), then cos/sin round (<= 6e-8).
_TODAY_BOUND = 2.5e-7


def _true_cos_sin(inv_freq: torch.Tensor, positions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """cos/sin of ``(p * f) mod 2 pi`` in exact rational arithmetic (Python ints), then float64 math."""
    freqs = [Fraction(f) for f in inv_freq.tolist()]
    cos, sin = [], []
    for p in positions.tolist():
        angles = [float((p * f) % _TWO_PI) for f in freqs]
        cos.append([math.cos(a) for a in angles])
        sin.append([math.sin(a) for a in angles])
    return torch.tensor(cos, dtype=torch.float64), torch.tensor(sin, dtype=torch.float64)


def _positions(seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    edges = torch.tensor([0, 1, 2**21 - 1, 2**21, 2**29, 2**42 - 1, 2**42, 2**62, -(2**62), 2**63 - 1, -(2**63)])
    random = torch.randint(-(2**62), 2**62, (40,), generator=g)
    small = torch.randint(0, 2**21, (20,), generator=g)
    return torch.cat([edges, random, small, -small])


@pytest.mark.parametrize("head_dim", [128, 64, 10])  # r = 64, 32 and 5 (scalar tail only)
def test_fused_cos_sin_within_todays_bound_of_the_exact_angle(head_dim):
    inv, _ = rope_frequencies(None, head_dim=head_dim)
    positions = _positions(head_dim)
    got = tablefree.cos_sin(inv, positions)
    assert got is not None
    true_cos, true_sin = _true_cos_sin(inv, positions)
    err = max((got[0].double() - true_cos).abs().max().item(), (got[1].double() - true_sin).abs().max().item())
    assert err < _TODAY_BOUND
    ref_cos, ref_sin = tablefree.cos_sin_torch(inv, positions)  # today's pure-torch numbers
    ref_err = max((ref_cos.double() - true_cos).abs().max().item(), (ref_sin.double() - true_sin).abs().max().item())
    assert err <= ref_err + 6e-8  # no less precise than the path it replaces


@pytest.mark.parametrize("start", [0, 2**21 - 100, 2**24 - 4096, 2**29 - 1024, 2**29, 2**40, -(2**50)])
def test_fused_cos_sin_is_cos_sin_of_rope_angles(start):
    """The angle is rope_angles' float32 number; cos/sin of it within half an ulp (torch's within one)."""
    inv, _ = rope_frequencies(None, head_dim=128)
    positions = torch.arange(start, start + 1024)
    angles = rope_angles(inv, positions).double()
    got = tablefree.cos_sin(inv, positions)
    torch.testing.assert_close(got[0].double(), angles.cos(), atol=6e-8, rtol=0)
    torch.testing.assert_close(got[1].double(), angles.sin(), atol=6e-8, rtol=0)


def test_rope_cos_sin_runs_the_fused_pass_and_keeps_shape_and_factor():
    inv, _ = rope_frequencies(None, head_dim=64)
    positions = torch.arange(24).view(2, 12) * 1000
    cos, sin = rope_cos_sin(inv, positions, attention_factor=1.5, dtype=torch.bfloat16)
    fused = tablefree.cos_sin(inv, positions)
    assert cos.shape == (2, 12, 32) and cos.dtype == torch.bfloat16
    torch.testing.assert_close(cos, (fused[0] * 1.5).bfloat16(), atol=0, rtol=0)
    torch.testing.assert_close(sin, (fused[1] * 1.5).bfloat16(), atol=0, rtol=0)


def test_float64_frequencies_are_taken_at_their_float64_value():
    inv = torch.tensor([1.0 / 3.0, 0.1, 2.5e-5], dtype=torch.float64)  # not float32 numbers
    positions = torch.tensor([3, 1_000_003, 2**30 + 7])
    got = tablefree.cos_sin(inv, positions)
    true_cos, _ = _true_cos_sin(inv, positions)
    assert (got[0].double() - true_cos).abs().max().item() < _TODAY_BOUND
