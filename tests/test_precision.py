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


def test_exact_at_every_int64_position():
    """Angles within one float32 rounding (plus 1e-8) of the truth, from Python's exact rational arithmetic, below
    2**29 (one float64 reduction) and beyond it up to the int64 limits (the digit-split reduction)."""
    from fractions import Fraction

    inv, _ = rope_frequencies(None, head_dim=64)
    positions = torch.tensor(
        [2**29 - 1, -(2**29) + 1, 2**29, 2**40, 2**40 + 12345, 2**62, -(2**62), 2**63 - 1, -(2**63)]
    )
    got = rope_angles(inv, positions)
    two_pi = Fraction(2 * 314159265358979323846264338327950288419716939937510582097494459, 10**62)
    for i, p in enumerate(positions.tolist()):
        for j in range(inv.numel()):
            exact = Fraction(p) * Fraction(float(inv[j]))
            want = float(exact - round(exact / two_pi) * two_pi)
            assert abs(float(got[i, j]) - want) <= 1.2e-7 + 1e-8, (p, j)
    cos, sin = rope_cos_sin(inv, positions)
    torch.testing.assert_close(cos, got.cos(), rtol=0, atol=1e-7)
    torch.testing.assert_close(sin, got.sin(), rtol=0, atol=1e-7)
