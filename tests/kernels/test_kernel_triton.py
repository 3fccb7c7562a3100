"""The Triton backend against the reference (under ``TRITON_INTERPRET=1`` on CPU; see conftest.py)."""

from __future__ import annotations

import itertools

import pytest
import torch
from kernel_helpers import HAS_TRITON, POSITION_MODES, assert_matches, make_case, reference_qk

from ropekit import apply_rotary, apply_rotary_qk
from ropekit.kernels import use_backend
from ropekit.reference import apply_rotary_reference

pytestmark = [pytest.mark.triton, pytest.mark.skipif(not HAS_TRITON, reason="triton is not importable")]

DTYPES = (torch.float32, torch.bfloat16, torch.float16, torch.float64)
SHAPES = ((4, 1, 22, 11), (3, 3, 22, 4), (6, 2, 16, 8))  # (Hq, Hk, head_dim, pairs): MQA odd r, partial, GQA


def test_forward_parity_matrix() -> None:
    """dtype x position mode x pairing x in-place, cycling through GQA / partial-rotary shapes (64 launches)."""
    cases = itertools.product(DTYPES, POSITION_MODES, (False, True), (False, True))
    for i, (dtype, mode, interleaved, inplace) in enumerate(cases):
        hq, hk, d, r = SHAPES[i % len(SHAPES)]
        case = make_case(dtype, mode, Hq=hq, Hk=hk, T=5, D=d, r=r, seed=i)
        ref_q, ref_k = reference_qk(case, interleaved)
        q, k = case.q.clone(), case.k.clone()
        with use_backend("triton"):
            out_q, out_k = apply_rotary_qk(
                q, k, case.cos, case.sin, interleaved=interleaved, inplace=inplace, positions=case.positions
            )
        assert_matches(out_q, ref_q)
        assert_matches(out_k, ref_k)
        if inplace:
            assert out_q.data_ptr() == q.data_ptr()
        else:
            assert torch.equal(q, case.q)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_backward_matches_reference_autograd(dtype: torch.dtype) -> None:
    for mode, interleaved in (("table", False), ("pos2d", True), ("batch_table", True), ("pos1d", False)):
        case = make_case(dtype, mode, Hq=4, Hk=1, D=16, r=6)
        g = torch.Generator().manual_seed(3)
        gq, gk = torch.randn(case.q.shape, generator=g).to(dtype), torch.randn(case.k.shape, generator=g).to(dtype)
        q_ref, k_ref = case.q.clone().requires_grad_(), case.k.clone().requires_grad_()
        outs = [
            apply_rotary_reference(t, case.cos_full, case.sin_full, interleaved=interleaved) for t in (q_ref, k_ref)
        ]
        torch.autograd.backward(outs, (gq, gk))
        q, k = case.q.clone().requires_grad_(), case.k.clone().requires_grad_()
        with use_backend("triton"):
            oq, ok = apply_rotary_qk(q, k, case.cos, case.sin, interleaved=interleaved, positions=case.positions)
        torch.autograd.backward((oq, ok), (gq, gk))
        assert_matches(q.grad, q_ref.grad)
        assert_matches(k.grad, k_ref.grad)


def test_gradcheck_float64() -> None:
    case = make_case(torch.float64, "pos2d", B=1, Hq=2, Hk=1, T=3, D=10, r=3)
    q, k = case.q.requires_grad_(), case.k.requires_grad_()

    def fn(q, k):
        with use_backend("triton"):
            return apply_rotary_qk(q, k, case.cos, case.sin, interleaved=True, positions=case.positions)

    assert torch.autograd.gradcheck(fn, (q, k))


def test_single_tensor_and_strided_view() -> None:
    x = torch.randn(2, 7, 3, 16).transpose(1, 2)  # [B, H, T, D] view of a [B, T, H, D] tensor
    case = make_case(torch.float32, "table", T=7, D=16, r=8)
    with use_backend("triton"):
        got = apply_rotary(x, case.cos, case.sin)
    assert_matches(got, apply_rotary_reference(x, case.cos, case.sin))


def test_batch_positions_for_three_dim_input() -> None:
    """``[B, T, D]`` with ``[B, T]`` positions: B is x's first dim."""
    case = make_case(torch.float32, "pos1d", T=5, D=16, r=6)
    pos = torch.tensor([[1, 2, 3, 4, 5], [0, 0, 1, 1, 2], [7, 8, 9, 10, 11]])
    x = torch.randn(3, 5, 16)
    with use_backend("triton"):
        got = apply_rotary(x, case.cos, case.sin, positions=pos)
    assert_matches(got, apply_rotary_reference(x, case.cos[pos], case.sin[pos]))


def test_strided_tables_and_packed_thd_views() -> None:
    """vLLM's cos_sin_cache read as two column views (row stride 2r) by the Triton kernel, on packed thd views."""
    from ropekit.functional import rope_cos_sin, split_cos_sin_cache

    cos, sin = rope_cos_sin(1.0 / 100 ** (torch.arange(6) / 6), torch.arange(30))
    cache = torch.cat((cos, sin), dim=-1).to(torch.bfloat16)  # a bf16 cache: widened, as precise as the table
    c, s = split_cos_sin_cache(cache)
    qkv = torch.randn(9, (4 + 2 * 2) * 16)  # [total, (Hq + 2 Hk) * D]
    pos = torch.randint(0, 30, (9,))
    heads = qkv.view(9, 8, 16)
    want_q = apply_rotary_reference(heads[:, :4].transpose(0, 1), c[pos].float(), s[pos].float()).transpose(0, 1)
    v_before = heads[:, 6:].clone()
    with use_backend("triton"):
        apply_rotary_qk(heads[:, :4], heads[:, 4:6], c, s, positions=pos, layout="thd", inplace=True)
    assert_matches(heads[:, :4], want_q)
    assert torch.equal(heads[:, 6:], v_before)


@pytest.mark.parametrize("token_programs", [True, False])
def test_both_launch_forms_match_the_reference(token_programs: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    """Tables without a head axis run one program per token block over all heads (or, switched off, the row
    kernel); a table that varies by head always takes the row kernel. Each form matches the reference."""
    from ropekit.kernels import triton_rotary

    monkeypatch.setattr(triton_rotary, "_TOKEN_PROGRAMS", token_programs)
    for i, mode in enumerate(POSITION_MODES):
        case = make_case(torch.float32, mode, Hq=6, Hk=2, T=7, D=20, r=9, seed=40 + i)
        ref_q, ref_k = reference_qk(case, False)
        with use_backend("triton"):
            out_q, out_k = apply_rotary_qk(case.q, case.k, case.cos, case.sin, positions=case.positions)
        assert_matches(out_q, ref_q)
        assert_matches(out_k, ref_k)
    g = torch.Generator().manual_seed(7)
    q, k = torch.randn(2, 3, 5, 16, generator=g), torch.randn(2, 3, 5, 16, generator=g)
    angles = torch.randn(2, 3, 5, 8, generator=g)  # [B, H, T, r]: a different rotation per head
    cos, sin = angles.cos(), angles.sin()
    with use_backend("triton"):
        out_q, out_k = apply_rotary_qk(q, k, cos, sin, interleaved=True)
    assert_matches(out_q, apply_rotary_reference(q, cos, sin, interleaved=True))
    assert_matches(out_k, apply_rotary_reference(k, cos, sin, interleaved=True))
