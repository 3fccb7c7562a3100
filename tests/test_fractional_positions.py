"""Fractional (float32/float64) positions in rope_angles / rope_cos_sin: exact integer part, float64 fraction."""

from fractions import Fraction

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from ropekit import apply_rotary, rope_angles, rope_cos_sin, rope_frequencies

# 2 pi to 60 digits, written here independently of ropekit.angles (the oracle must not share the code under test).
_TWO_PI = Fraction("6.28318530717958647692528676655900576839433879875021164194989")


def true_angles(inv_freq: torch.Tensor, positions: list[float]) -> torch.Tensor:
    """``p * f`` mod 2 pi in [-pi, pi] in exact rational arithmetic, for the float numbers given: ``[N, r]``."""
    rows = []
    for p in positions:
        row = []
        for f in inv_freq.tolist():
            a = (Fraction(p) * Fraction(f)) % _TWO_PI
            row.append(float(a - _TWO_PI if a > _TWO_PI / 2 else a))
        rows.append(row)
    return torch.tensor(rows, dtype=torch.float64)


def angle_error(got: torch.Tensor, want: torch.Tensor) -> float:
    d = (got.double() - want).abs()
    return float(torch.minimum(d, 2 * torch.pi - d).max())  # +pi and -pi are the same angle


INV, _ = rope_frequencies(None, head_dim=64)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("start", [0, -4096, 2**20, 2**29 - 8, 2**40, -(2**50)])
def test_whole_number_floats_are_bit_identical_to_ints(dtype, start):
    ints = torch.arange(start, start + 16, dtype=torch.int64)
    if dtype == torch.float32 and abs(start) >= 2**24:
        ints = ints[ints % 2**8 == 0] if abs(start) > 2**32 else ints  # float32 holds these exactly
        ints = torch.tensor([int(v) for v in ints.to(torch.float32).to(torch.int64)])
    floats = ints.to(dtype)
    assert torch.equal(floats.to(torch.int64), ints)
    assert torch.equal(rope_angles(INV, floats), rope_angles(INV, ints))
    for a, b in zip(rope_cos_sin(INV, floats), rope_cos_sin(INV, ints), strict=True):
        assert torch.equal(a, b)


def test_whole_number_floats_bit_identical_on_a_long_range():
    """Many chunks of the table builder: the fractional branch of every chunk adds exact zeros."""
    ints = torch.arange(0, 70_000)
    for a, b in zip(rope_cos_sin(INV, ints.double()), rope_cos_sin(INV, ints), strict=True):
        assert torch.equal(a, b)


@pytest.mark.parametrize(
    "positions",
    [
        [0.5, 0.25, 1.75, 1000.125, 4095.9],
        [-0.5, -1.25, -3000.75],
        [2**29 + 0.5, 2**33 + 0.375, 2**40 + 0.25],
        [-(2**45) - 0.5, 2**52 - 0.5],
    ],
)
def test_precision_against_exact_rationals(positions):
    """Within one float32 rounding (about 2.4e-7 rad at pi) plus 1e-8 of the exact angle of the given float."""
    p = torch.tensor(positions, dtype=torch.float64)
    want = true_angles(INV, positions)
    assert angle_error(rope_angles(INV, p), want) <= 2.5e-7
    cos, sin = rope_cos_sin(INV, p)
    assert float((cos.double() - want.cos()).abs().max()) <= 3e-7
    assert float((sin.double() - want.sin()).abs().max()) <= 3e-7


def test_float64_product_is_what_the_split_avoids():
    """Plain float64 ``p * f`` at 2**40 + 0.25 rounds the product: the split is needed there (so the test can fail)."""
    p = torch.tensor([2**40 + 0.25], dtype=torch.float64)
    naive = torch.remainder(p[:, None] * INV.double() + torch.pi, 2 * torch.pi) - torch.pi
    want = true_angles(INV, p.tolist())
    assert angle_error(naive, want) > 1e-5
    assert angle_error(rope_angles(INV, p), want) <= 2.5e-7


def test_float32_positions_are_taken_as_given():
    p32 = torch.tensor([0.1, 1234.567, 98765.4], dtype=torch.float32)
    want = true_angles(INV, p32.tolist())  # the float32 numbers, exactly
    assert angle_error(rope_angles(INV, p32), want) <= 2.5e-7
    assert torch.equal(rope_angles(INV, p32), rope_angles(INV, p32.double()))


def test_chunked_and_simple_paths_agree():
    g = torch.Generator().manual_seed(0)
    p = torch.rand(5000, generator=g, dtype=torch.float64) * 1e6 - 1e5
    cos, sin = rope_cos_sin(INV, p)  # chunked builder
    angles = rope_angles(INV, p)
    torch.testing.assert_close(cos, angles.cos(), rtol=0, atol=2.4e-7)  # two float32 ulps at 1
    torch.testing.assert_close(sin, angles.sin(), rtol=0, atol=2.4e-7)


@settings(max_examples=40, deadline=None)
@given(
    st.lists(st.floats(0, 5000, allow_nan=False), min_size=2, max_size=6),
    st.floats(-3000, 3000, allow_nan=False),
)
def test_relativity_with_fractional_shifts(positions, shift):
    """q(p_i + s) . k(p_j + s) == q(p_i) . k(p_j): scores depend on p_i - p_j only, fractional s included."""
    g = torch.Generator().manual_seed(len(positions))
    q = torch.randn(1, 1, len(positions), 64, generator=g, dtype=torch.float64)
    k = torch.randn(1, 1, len(positions), 64, generator=g, dtype=torch.float64)
    p = torch.tensor(positions, dtype=torch.float64)

    def scores(pos):
        cos, sin = rope_cos_sin(INV, pos, dtype=torch.float64)
        return apply_rotary(q, cos, sin) @ apply_rotary(k, cos, sin).transpose(-1, -2)

    torch.testing.assert_close(scores(p + shift), scores(p), rtol=0, atol=5e-5)
    # and a fractional position is not rounded: p + 0.5 gives other scores than p (unless all equal)
    if len({round(x, 3) for x in positions}) > 1:
        assert not torch.allclose(scores(p + torch.arange(len(positions)) * 0.5), scores(p), atol=1e-3)


def test_gradient_with_respect_to_positions():
    """d sin(p f) / d p = f cos(p f): content-dependent (learned) positions can be trained through the tables."""
    p = torch.tensor([0.3, 17.25, 4000.5], dtype=torch.float64, requires_grad=True)
    cos, sin = rope_cos_sin(INV, p)
    sin.sum().backward()
    want = (cos.double() * INV.double()).sum(-1)
    torch.testing.assert_close(p.grad, want, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize(
    ("positions", "match"),
    [
        (torch.tensor([0.0, float("nan")]), "finite"),
        (torch.tensor([float("inf")]), "finite"),
        (torch.tensor([2.0**63]), "int64 range"),
        (torch.arange(4.0).half(), "float32/float64"),
        (torch.arange(4.0).bfloat16(), "float32/float64"),
    ],
)
def test_bad_float_positions_are_refused(positions, match):
    with pytest.raises(ValueError, match=match):
        rope_cos_sin(INV, positions)
    with pytest.raises(ValueError, match=match):
        rope_angles(INV, positions)


def test_table_positions_refuse_floats_and_say_how():
    cos, sin = rope_cos_sin(INV, torch.arange(8))
    x = torch.randn(1, 2, 4, 64)
    with pytest.raises(ValueError, match=r"index table rows.*rope_cos_sin"):
        apply_rotary(x, cos, sin, positions=torch.tensor([0.0, 1.5, 2.0, 3.0]))
    # the documented way: tables for the fractional positions, applied without positions=
    p = torch.tensor([0.0, 1.5, 2.0, 3.0])
    cf, sf = rope_cos_sin(INV, p)
    out = apply_rotary(x, cf, sf)
    ref = apply_rotary(x, cos, sin, positions=torch.tensor([0, 1, 2, 3]))
    torch.testing.assert_close(out[..., [0, 2, 3], :], ref[..., [0, 2, 3], :])
    assert not torch.allclose(out[..., 1, :], ref[..., 1, :])
