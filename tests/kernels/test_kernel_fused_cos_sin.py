"""The C++ ``rope_cos_sin`` pass (``ropekit.kernels.cos_sin``) against exact references and today's torch path.

The C++ loop forms ``rope_angles``' float32 angles by the same float64 operations, so the angles must be equal bit
for bit to the pure-torch ``rope_angles`` (and the tables to torch's cos/sin of them). Against the exact truth the
bound is today's: the angle within one float32 rounding (half an ulp at |a| <= pi: 1.2e-7) plus 1e-8 rad
(``ropekit.angles``), cos/sin move by at most that, and torch's float32 cos/sin add about one ulp (6e-8): 2e-7.
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
TRUTH_BOUND = 2e-7


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


def _edge_and_random_positions(seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    edges = torch.tensor(
        [0, 1, -1, 2**21 - 1, 2**21, 2**29 - 1, 2**29, -(2**29), 2**42 - 1, 2**42, 2**62, -(2**62), 2**63 - 1, -(2**63)]
    )
    random = torch.randint(-(2**62), 2**62, (40,), generator=g)
    small = torch.randint(0, 2**21, (20,), generator=g)
    return torch.cat([edges, random, small, -small])


def _max_err(got: tuple[torch.Tensor, torch.Tensor], ref: tuple[torch.Tensor, torch.Tensor]) -> float:
    return max((g.double() - r.double()).abs().max().item() for g, r in zip(got, ref, strict=True))


@pytest.mark.parametrize("head_dim", [128, 64, 10])  # r = 64, 32 (vector loop) and 5 (vector + scalar tail)
def test_within_todays_bound_of_the_exact_truth(head_dim: int) -> None:
    inv, _ = rope_frequencies(None, head_dim=head_dim)
    positions = _edge_and_random_positions(head_dim)
    got = fused.cos_sin(inv, positions)
    assert got is not None
    assert _max_err(got, _true_cos_sin(inv, positions)) < TRUTH_BOUND


@pytest.mark.parametrize("start", [0, -4096, 2**21 - 100, 2**24 - 4096, 2**29 - 1024, 2**29, 2**40, -(2**50), 2**62])
@pytest.mark.parametrize("freq_dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("head_dim", [128, 10])
def test_angles_are_rope_angles_bit_for_bit(start: int, freq_dtype: torch.dtype, head_dim: int) -> None:
    """Both reductions (the float64 product, the digit split) and the tensor-wide choice between them."""
    inv, _ = rope_frequencies(None, head_dim=head_dim)
    inv = inv.to(freq_dtype)
    if freq_dtype == torch.float64:  # not float32 numbers: as given below 2**29, rounded to float32 beyond
        inv = inv * (1 + 1e-12)
    positions = torch.arange(start, start + 1024)
    got = fused.angles(inv, positions)
    assert got is not None
    assert torch.equal(got, rope_angles(inv, positions))
    cos, sin = fused.cos_sin(inv, positions)  # type: ignore[misc]
    assert torch.equal(cos, torch.cos(got)) and torch.equal(sin, torch.sin(got))


def test_rope_cos_sin_is_cos_sin_of_rope_angles_and_keeps_factor_dtype_and_shape() -> None:
    inv, _ = rope_frequencies(None, head_dim=64)
    positions = torch.arange(24).view(2, 12) * 100_000_000  # crosses 2**29: the digit split for all
    cos, sin = rope_cos_sin(inv, positions, attention_factor=1.5, dtype=torch.bfloat16)
    angles = rope_angles(inv, positions)
    assert cos.shape == (2, 12, 32) and cos.dtype == torch.bfloat16
    assert torch.equal(cos, (torch.cos(angles) * 1.5).bfloat16())
    assert torch.equal(sin, (torch.sin(angles) * 1.5).bfloat16())


@pytest.mark.parametrize("start", [0, 2**29 - 2048, 2**45])
def test_rope_cos_sin_close_to_todays_torch_path(start: int) -> None:
    """Today's chunked builder reduces in place (``sub_(alpha=)``) and may round an angle one float32 ulp
    (2**-22 = 2.4e-7 at |a| > 2) away from ``rope_angles``; both are within TRUTH_BOUND of the truth."""
    inv, _ = rope_frequencies(None, head_dim=128)
    positions = torch.arange(start, start + 4096).view(2, 2048)
    got = rope_cos_sin(inv, positions)
    with use_backend("eager"):  # the torch paths of rope_cos_sin, as before the C++ pass
        today = rope_cos_sin(inv, positions)
    assert got[0].shape == today[0].shape == (2, 2048, 64)
    assert _max_err(got, today) <= 2 * TRUTH_BOUND


def test_constants_follow_in_place_changes() -> None:
    inv, _ = rope_frequencies(None, head_dim=16)
    inv = inv.clone()
    positions = torch.arange(3000, 3100)
    before = fused.angles(inv, positions)
    inv.mul_(0.5)  # same tensor, new values: the cached constants must not be reused
    after = fused.angles(inv, positions)
    assert before is not None and after is not None
    assert torch.equal(after, rope_angles(inv, positions)) and not torch.equal(after, before)


def test_strided_int32_and_empty_positions() -> None:
    inv, _ = rope_frequencies(None, head_dim=64)
    strided = torch.arange(0, 4000, 7)[::3]  # non-contiguous int64
    want = rope_angles(inv, strided.contiguous())
    for positions in (strided, strided.to(torch.int32)):
        got = fused.angles(inv, positions)
        assert got is not None and torch.equal(got, want)
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
    monkeypatch.setattr(cpu, "load", lambda **_: None)  # no C++ build
    assert fused.cos_sin(inv, positions) is None
    for a, b in zip(rope_cos_sin(inv, positions), today, strict=True):
        assert torch.equal(a, b)


def test_the_kernel_refuses_bad_shapes() -> None:
    module = cpu.load()
    assert module is not None
    cst = fused.constants(rope_frequencies(None, head_dim=8)[0])
    with pytest.raises(RuntimeError, match=r"positions must be \[N\] int64"):
        module.rope_angles32(torch.zeros(2, 2, dtype=torch.int64), cst)
    with pytest.raises(RuntimeError, match=r"constants must be \[4, r\]"):
        module.rope_angles32(torch.zeros(3, dtype=torch.int64), cst[:3])
