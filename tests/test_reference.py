"""The three textbook forms agree, and the rotation's theorems hold (Su et al. 2021, RoFormer)."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from ropekit import (
    apply_rotary,
    apply_rotary_complex,
    apply_rotary_matrix,
    apply_rotary_reference,
    rope_cos_sin,
    rope_frequencies,
    rotate_half,
    rotation_matrix,
)
from ropekit.reference import pair_indices


def tables(head_dim, positions, partial=1.0, theta=10_000.0):
    inv, _ = rope_frequencies({"rope_theta": theta, "partial_rotary_factor": partial}, head_dim=head_dim)
    return rope_cos_sin(inv, positions)


shapes = st.tuples(st.integers(1, 3), st.integers(1, 4), st.integers(1, 9), st.sampled_from([2, 4, 6, 8, 16, 34]))


@settings(max_examples=40, deadline=None)
@given(shape=shapes, interleaved=st.booleans(), partial=st.sampled_from([1.0, 0.5, 0.25]), seed=st.integers(0, 99))
def test_three_forms_agree(shape, interleaved, partial, seed):
    B, H, T, D = shape
    if int(D * partial) % 2 or int(D * partial) < 2:
        partial = 1.0
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(B, H, T, D, dtype=torch.float64, generator=g)
    cos, sin = tables(D, torch.randint(0, 10_000, (T,), generator=g), partial)
    cheap = apply_rotary_reference(x, cos, sin, interleaved=interleaved)
    torch.testing.assert_close(apply_rotary_complex(x, cos, sin, interleaved=interleaved), cheap, rtol=0, atol=1e-12)
    torch.testing.assert_close(apply_rotary_matrix(x, cos, sin, interleaved=interleaved), cheap, rtol=0, atol=1e-12)
    r = cos.shape[-1]
    torch.testing.assert_close(cheap[..., 2 * r :], x[..., 2 * r :], rtol=0, atol=0)  # pass-through untouched


def test_half_layout_is_hf_rotate_half_formula():
    x = torch.randn(2, 3, 5, 16, dtype=torch.float64)
    cos, sin = tables(16, torch.arange(5))
    full_cos, full_sin = torch.cat((cos, cos), -1).double(), torch.cat((sin, sin), -1).double()
    expected = x * full_cos + rotate_half(x) * full_sin  # transformers' apply_rotary_pos_emb
    torch.testing.assert_close(apply_rotary(x, cos, sin), expected, rtol=0, atol=1e-12)


def test_interleaved_layout_is_gptj_formula():
    x = torch.randn(4, 7, 8, dtype=torch.float64)
    cos, sin = tables(8, torch.arange(7))
    rot_every_two = torch.stack((-x[..., 1::2], x[..., 0::2]), -1).flatten(-2)  # GPT-J's rotate_every_two
    c, s = cos.repeat_interleave(2, -1).double(), sin.repeat_interleave(2, -1).double()
    torch.testing.assert_close(apply_rotary(x, cos, sin, interleaved=True), x * c + rot_every_two * s)


@pytest.mark.parametrize("interleaved", [False, True])
@pytest.mark.parametrize("partial", [1.0, 0.5])
def test_relativity(interleaved, partial):
    """<R_m q, R_n k> = <q, R_{n-m} k>, and shifting both positions changes nothing."""
    g = torch.Generator().manual_seed(0)
    D = 32
    q, k = torch.randn(2, D, dtype=torch.float64, generator=g)
    pos = torch.tensor([5, 17, 1000, 123_456, 2**20 + 3])
    cos, sin = tables(D, pos, partial)
    rq = apply_rotary(q.expand(len(pos), D), cos, sin, interleaved=interleaved)
    rk = apply_rotary(k.expand(len(pos), D), cos, sin, interleaved=interleaved)
    scores = rq @ rk.T  # [m, n]
    rel_cos, rel_sin = tables(D, pos[None, :] - pos[:, None], partial)  # [m, n, r]
    expected = apply_rotary(k.expand(len(pos), len(pos), D), rel_cos, rel_sin, interleaved=interleaved) @ q
    torch.testing.assert_close(scores, expected, rtol=0, atol=2e-5)
    shifted_cos, shifted_sin = tables(D, pos + 777, partial)
    rq2 = apply_rotary(q.expand(len(pos), D), shifted_cos, shifted_sin, interleaved=interleaved)
    rk2 = apply_rotary(k.expand(len(pos), D), shifted_cos, shifted_sin, interleaved=interleaved)
    torch.testing.assert_close(rq2 @ rk2.T, scores, rtol=0, atol=2e-5)


@pytest.mark.parametrize("interleaved", [False, True])
def test_orthogonal_and_inverse(interleaved):
    cos, sin = tables(64, torch.arange(0, 10**6, 997))
    R = rotation_matrix(cos, sin, 64, interleaved=interleaved)  # [T, D, D]
    eye = torch.eye(64, dtype=torch.float64).expand_as(R)
    # cos/sin are float32: cos^2 + sin^2 = 1 to float32 rounding
    torch.testing.assert_close(R.transpose(-1, -2) @ R, eye, rtol=0, atol=5e-7)
    x = torch.randn(len(cos), 64, dtype=torch.float64)
    y = apply_rotary(x, cos, sin, interleaved=interleaved)
    torch.testing.assert_close(apply_rotary(y, cos, -sin, interleaved=interleaved), x, rtol=0, atol=1e-6)


def test_backward_is_rotation_by_minus_angle():
    x = torch.randn(3, 11, 16, dtype=torch.float64, requires_grad=True)
    cos, sin = tables(16, torch.arange(11))
    g = torch.randn(3, 11, 16, dtype=torch.float64)
    (grad,) = torch.autograd.grad(apply_rotary(x, cos, sin), x, g)
    torch.testing.assert_close(grad, apply_rotary(g, cos, -sin), rtol=0, atol=1e-12)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_precision_computed_in_float32(dtype):
    x = torch.randn(2, 4, 33, 64).to(dtype)
    cos, sin = tables(64, torch.arange(33))
    out = apply_rotary(x, cos, sin)
    assert out.dtype == dtype
    expected = apply_rotary(x.float(), cos, sin).to(dtype)  # one rounding, at the end
    torch.testing.assert_close(out, expected, rtol=0, atol=0)


def test_pair_indices_cover_each_feature_once():
    for interleaved in (False, True):
        a, b = pair_indices(10, interleaved=interleaved)
        assert sorted(torch.cat((a, b)).tolist()) == list(range(10))
