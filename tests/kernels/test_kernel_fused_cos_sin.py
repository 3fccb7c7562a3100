"""The fused C++ ``rope_cos_sin`` pass (``ropekit.kernels.cos_sin``) against exact references and today's torch path.

Tolerances, from the documented errors (``ropekit.angles``, ``rotary_cpu.cpp``):
- the float32 angle is within one float32 rounding (half an ulp at |a| <= pi: 2**-22 / 2 = 1.2e-7) plus 1e-8 rad
  of the true ``p * f mod 2 pi``; cos/sin move by at most that much, and rounding the result to float32 adds half
  an ulp below 1 (2**-25 = 3.0e-8) plus the polynomial's 2.7e-9: 1.7e-7 against the exact truth;
- against float64 cos/sin of that same float32 angle only the last two remain: 2**-25 + 3e-9;
- against today's torch path: both are within 1.7e-7 of the truth, so within 3.4e-7 of each other. They can
  differ by a whole float32 ulp of the angle (2**-22 = 2.4e-7 at |a| > 2), not only by the cos/sin roundings:
  today's chunked table builder reduces with an in-place ``sub_(alpha=)`` whose float64 result can differ from
  ``rope_angles``' by a rounding, which sometimes flips the float32 narrowing (seen at positions near 2**20).
"""

from __future__ import annotations

import math
from fractions import Fraction

import pytest
import torch

from ropekit import rope_angles, rope_cos_sin, rope_frequencies
from ropekit.kernels import cos_sin as fused
from ropekit.kernels import cpu, use_backend

pytestmark = pytest.mark.skipif(cpu.load() is None, reason="the C++ kernel is not built here")

# 2 pi to 40 digits (a fact, independent of the code under test): enough for |p| <= 2**63 and f <= 1.
_TWO_PI = Fraction(2 * 3141592653589793238462643383279502884197, 10**39)
TRUTH_BOUND = 1.7e-7
SAME_ANGLE_BOUND = 2.0**-25 + 3e-9
TODAY_BOUND = 2 * TRUTH_BOUND


def _true_cos_sin(inv_freq: torch.Tensor, positions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """cos/sin of ``(p * f) mod 2 pi`` with f the float32 frequency, in exact rational arithmetic then float64."""
    freqs = [Fraction(f) for f in inv_freq.to(torch.float32).tolist()]
    cos, sin = [], []
    for p in positions.reshape(-1).tolist():
        angles = [float((p * f) % _TWO_PI) for f in freqs]
        cos.append([math.cos(a) for a in angles])
        sin.append([math.sin(a) for a in angles])
    shape = (*positions.shape, len(freqs))
    return torch.tensor(cos, dtype=torch.float64).view(shape), torch.tensor(sin, dtype=torch.float64).view(shape)


def _positions(seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    edges = torch.tensor(
        [0, 1, -1, 2**21 - 1, 2**21, 2**29 - 1, 2**29, -(2**29), 2**42 - 1, 2**42, 2**62, -(2**62), 2**63 - 1, -(2**63)]
    )
    random = torch.randint(-(2**62), 2**62, (40,), generator=g)
    small = torch.randint(0, 2**21, (20,), generator=g)
    return torch.cat([edges, random, small, -small])


def test_small_positions_alone_and_among_large_ones() -> None:
    """Both reductions in the kernel: |p| < 2**29 alone (the float64 product) and with 2**40 present (the split)."""
    inv, _ = rope_frequencies(None, head_dim=64)
    small = torch.arange(2**29 - 512, 2**29)
    alone = fused.cos_sin(inv, small)
    mixed = fused.cos_sin(inv, torch.cat([small, torch.tensor([2**40])]))
    assert alone is not None and mixed is not None
    truth = _true_cos_sin(inv, small)
    for got in (alone, (mixed[0][:-1], mixed[1][:-1])):
        assert _max_err(got, truth) < TRUTH_BOUND


def _max_err(got: tuple[torch.Tensor, torch.Tensor], ref: tuple[torch.Tensor, torch.Tensor]) -> float:
    return max((g.double() - r.double()).abs().max().item() for g, r in zip(got, ref, strict=True))


@pytest.mark.parametrize("head_dim", [128, 64, 10])  # r = 64, 32 (vector loop) and 5 (vector + scalar tail)
def test_fused_is_within_the_documented_bound_of_the_exact_truth(head_dim: int) -> None:
    inv, _ = rope_frequencies(None, head_dim=head_dim)
    positions = _positions(head_dim)
    got = fused.cos_sin(inv, positions)
    assert got is not None
    truth = _true_cos_sin(inv, positions)
    err = _max_err(got, truth)
    assert err < TRUTH_BOUND
    today = fused.cos_sin_torch(inv, positions)  # the pure-torch reference
    assert err <= _max_err(today, truth) + 3.1e-8  # no less precise than the path it replaces, to a rounding


@pytest.mark.parametrize("start", [0, 2**21 - 100, 2**24 - 4096, 2**29 - 1024, 2**29, 2**40, -(2**50), 2**62])
@pytest.mark.parametrize("freq_dtype", [torch.float32, torch.float64])
def test_fused_is_cos_sin_of_rope_angles_float32_angle(start: int, freq_dtype: torch.dtype) -> None:
    inv, _ = rope_frequencies(None, head_dim=128)
    inv = inv.to(freq_dtype)
    if freq_dtype == torch.float64:  # not float32 numbers: as given below 2**29, rounded to float32 beyond
        inv = inv * (1 + 1e-12)
    positions = torch.arange(start, start + 1024)
    angles = rope_angles(inv, positions).double()
    got = fused.cos_sin(inv, positions)
    assert got is not None
    torch.testing.assert_close(got[0].double(), angles.cos(), atol=SAME_ANGLE_BOUND, rtol=0)
    torch.testing.assert_close(got[1].double(), angles.sin(), atol=SAME_ANGLE_BOUND, rtol=0)


@pytest.mark.parametrize("start", [0, 2**20, 2**29 - 2048, 2**45, -(2**62)])
def test_rope_cos_sin_matches_todays_torch_path(start: int) -> None:
    inv, _ = rope_frequencies(None, head_dim=128)
    positions = torch.arange(start, start + 4096).view(2, 2048)
    got = rope_cos_sin(inv, positions)
    with use_backend("eager"):  # the torch paths of rope_cos_sin, as before the C++ pass
        today = rope_cos_sin(inv, positions)
    assert got[0].shape == today[0].shape == (2, 2048, 64)
    assert _max_err(got, today) < TODAY_BOUND
    assert not all(torch.equal(a, b) for a, b in zip(got, today, strict=True))  # the C++ pass did run


def test_rope_cos_sin_uses_the_fused_pass_with_factor_and_dtype() -> None:
    inv, _ = rope_frequencies(None, head_dim=64)
    positions = torch.arange(24).view(2, 12) * 1000
    cos, sin = rope_cos_sin(inv, positions, attention_factor=1.5, dtype=torch.bfloat16)
    ref = fused.cos_sin(inv, positions)
    assert ref is not None
    assert cos.shape == (2, 12, 32) and cos.dtype == torch.bfloat16
    assert torch.equal(cos, (ref[0] * 1.5).bfloat16()) and torch.equal(sin, (ref[1] * 1.5).bfloat16())


def test_strided_int32_and_empty_positions() -> None:
    inv, _ = rope_frequencies(None, head_dim=64)
    base = torch.arange(0, 4000, 7)
    strided = base[::3]  # non-contiguous int64
    got = fused.cos_sin(inv, strided)
    want = fused.cos_sin(inv, strided.contiguous())
    assert got is not None and want is not None
    assert all(torch.equal(a, b) for a, b in zip(got, want, strict=True))
    got32 = fused.cos_sin(inv, strided.to(torch.int32))
    assert got32 is not None and all(torch.equal(a, b) for a, b in zip(got32, want, strict=True))
    empty = fused.cos_sin(inv, torch.zeros(0, 5, dtype=torch.int64))
    assert empty is not None and empty[0].shape == (0, 5, 32)


def test_whole_number_floats_take_the_fused_pass_fractions_do_not() -> None:
    inv, _ = rope_frequencies(None, head_dim=64)
    ints = torch.arange(0, 3000, 3)
    for a, b in zip(rope_cos_sin(inv, ints.double()), rope_cos_sin(inv, ints), strict=True):
        assert torch.equal(a, b)
    frac = ints.double() + 0.5
    with use_backend("eager"):
        torch_frac = rope_cos_sin(inv, frac)
    for a, b in zip(rope_cos_sin(inv, frac), torch_frac, strict=True):
        assert torch.equal(a, b)


def test_fallbacks_are_the_torch_path(monkeypatch: pytest.MonkeyPatch) -> None:
    inv, _ = rope_frequencies(None, head_dim=64)
    positions = torch.arange(2048)
    with use_backend("eager"):
        today = rope_cos_sin(inv, positions)
    learned = inv.clone().requires_grad_(True)  # autograd needed: the torch path, with a graph
    cos, _ = rope_cos_sin(learned, positions)
    assert cos.grad_fn is not None
    assert fused.cos_sin(inv.half(), positions) is None  # fp16 frequencies: not the kernel's contract
    monkeypatch.setattr(cpu, "load", lambda: None)  # no C++ build
    assert fused.cos_sin(inv, positions) is None
    for a, b in zip(rope_cos_sin(inv, positions), today, strict=True):
        assert torch.equal(a, b)


def test_the_kernel_refuses_bad_shapes() -> None:
    module = cpu.load()
    assert module is not None
    cst = fused.constants(rope_frequencies(None, head_dim=8)[0])
    with pytest.raises(RuntimeError, match=r"positions must be \[N\] int64"):
        module.rope_cos_sin(torch.zeros(2, 2, dtype=torch.int64), cst, False)
    with pytest.raises(RuntimeError, match=r"constants must be \[4, r\]"):
        module.rope_cos_sin(torch.zeros(3, dtype=torch.int64), cst[:3], False)
