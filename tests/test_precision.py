"""rope_cos_sin is accurate to 2e-6 against float64 at positions up to 2**24; the float32 way is not."""

import pytest
import torch

from ropekit import rope_angles, rope_cos_sin, rope_frequencies


def float64_truth(inv_freq, positions):
    angles = positions.to(torch.float64)[..., None] * inv_freq.to(torch.float64)
    return angles.cos(), angles.sin()


@pytest.mark.parametrize("theta", [10_000.0, 500_000.0, 1e6])
@pytest.mark.parametrize("top", [2**12, 2**16, 2**20, 2**24])
def test_accuracy_against_float64(theta, top):
    inv, _ = rope_frequencies({"rope_theta": theta}, head_dim=128)
    g = torch.Generator().manual_seed(top)
    positions = torch.cat((torch.randint(0, top + 1, (2000,), generator=g), torch.tensor([top, top - 1])))
    cos, sin = rope_cos_sin(inv, positions)
    ref_cos, ref_sin = float64_truth(inv, positions)
    assert (cos.double() - ref_cos).abs().max() <= 2e-6
    assert (sin.double() - ref_sin).abs().max() <= 2e-6


@pytest.mark.parametrize(("position", "at_least"), [(2**20, 1e-2), (2**23, 1e-1)])
def test_naive_float32_is_far_off(position, at_least):
    """The usual float32 ``position * inv_freq`` (transformers, most libraries): the error this module avoids."""
    inv, _ = rope_frequencies(None, head_dim=128)
    positions = torch.arange(position - 512, position + 1)
    naive = (positions.float()[:, None] * inv[None]).cos()
    ref, _ = float64_truth(inv, positions)
    assert (naive.double() - ref).abs().max() > at_least
    ours, _ = rope_cos_sin(inv, positions)
    assert (ours.double() - ref).abs().max() <= 2e-6


def test_shapes_dtypes_and_attention_factor():
    inv, _ = rope_frequencies(None, head_dim=64)
    positions = torch.randint(0, 5000, (3, 7), dtype=torch.int32)
    cos, sin = rope_cos_sin(inv, positions, attention_factor=1.25, dtype=torch.bfloat16)
    assert cos.shape == sin.shape == (3, 7, 32) and cos.dtype == torch.bfloat16
    ref_cos, _ = rope_cos_sin(inv, positions.long())
    torch.testing.assert_close(cos.float(), (ref_cos * 1.25).bfloat16().float(), rtol=0, atol=0)


def test_angles_are_reduced():
    inv, _ = rope_frequencies(None, head_dim=64)
    a = rope_angles(inv, torch.tensor([0, 10**6, -(10**6)]))
    assert a.abs().max() <= torch.pi + 1e-6 and a.dtype == torch.float32


def test_chunked_path_equals_simple_path():
    """The chunked fast path (no grad) and the differentiable path agree to float32 rounding, any shape
    (the reduction's multiply-subtract may round differently: a few ulp)."""
    inv, _ = rope_frequencies(None, head_dim=96)
    positions = torch.randint(0, 2**24, (3, 1777))  # 5331 rows: several chunks and a ragged tail
    fast = rope_cos_sin(inv, positions)
    slow = rope_cos_sin(inv.clone().requires_grad_(), positions)
    for a, b in zip(fast, slow, strict=True):
        assert a.shape == (3, 1777, 48)
        torch.testing.assert_close(a, b.detach(), rtol=0, atol=3e-7)


def test_learned_frequencies_get_gradients():
    inv = rope_frequencies(None, head_dim=16)[0].clone().requires_grad_()
    cos, sin = rope_cos_sin(inv, torch.arange(5))
    (cos.sum() + sin.sum()).backward()
    positions = torch.arange(5.0)[:, None]  # d/df [cos(m f) + sin(m f)] = m (cos - sin)
    expected = (positions * (cos.detach() - sin.detach())).sum(0)
    torch.testing.assert_close(inv.grad, expected, rtol=1e-5, atol=1e-5)


def test_exact_up_to_2_pow_29_and_refused_beyond():
    """The angle of the largest accepted position is exact to float32 rounding (truth from Python's exact rational
    arithmetic); 2**29 and beyond (where the float64 product rounds) raise instead of drifting silently."""
    from fractions import Fraction

    inv, _ = rope_frequencies(None, head_dim=16)
    top = 2**29 - 1
    got = rope_angles(inv, torch.tensor([top, -top]))
    two_pi = Fraction(2 * 314159265358979323846264338327950288419716939937510, 10**50)
    for j in range(inv.numel()):
        exact = Fraction(top) * Fraction(float(inv[j]))
        turns = round(exact / two_pi)
        want = float(exact - turns * two_pi)
        assert abs(float(got[0, j]) - want) <= 4e-7, j
        assert abs(float(got[1, j]) + want) <= 4e-7, j
    for bad in (2**29, 2**40, 2**62, -(2**29)):
        with pytest.raises(ValueError, match=r"exact only for \|position\| < 2\*\*29"):
            rope_angles(inv, torch.tensor([0, bad]))
        with pytest.raises(ValueError, match="2\\*\\*29"):
            rope_cos_sin(inv, torch.tensor([bad]))
