"""Fused CPU backends ("cpp", "eager") against the reference over the parity matrix, forward and backward."""

from __future__ import annotations

import itertools

import pytest
import torch
from kernel_helpers import POSITION_MODES, assert_matches, make_case, reference_qk

from ropekit import apply_rotary, apply_rotary_qk, rope_cos_sin
from ropekit.kernels import use_backend
from ropekit.reference import apply_rotary_reference

DTYPES = (torch.float32, torch.bfloat16, torch.float16, torch.float64)
HEADS = ((3, 3), (4, 1), (6, 2))  # MHA, MQA (one KV head), GQA
ROTARY = ((22, 11), (22, 4))  # (head_dim, pairs): full with an odd pair count, and partial rotary
MATRIX = list(itertools.product(DTYPES, POSITION_MODES, HEADS, ROTARY, (False, True), (False, True)))


@pytest.mark.parametrize("backend", ["cpp", "eager"])
def test_forward_matrix(backend: str) -> None:
    """dtype x position mode x GQA x partial rotary x pairing x in-place, in one test (the cases are tiny)."""
    for i, (dtype, mode, (hq, hk), (d, r), interleaved, inplace) in enumerate(MATRIX):
        case = make_case(dtype, mode, Hq=hq, Hk=hk, D=d, r=r, seed=i)
        ref_q, ref_k = reference_qk(case, interleaved)
        q, k = case.q.clone(), case.k.clone()
        with use_backend(backend):
            out_q, out_k = apply_rotary_qk(
                q, k, case.cos, case.sin, interleaved=interleaved, inplace=inplace, positions=case.positions
            )
        assert_matches(out_q, ref_q)
        assert_matches(out_k, ref_k)
        if inplace:
            assert out_q.data_ptr() == q.data_ptr() and out_k.data_ptr() == k.data_ptr()
        else:
            assert torch.equal(q, case.q) and torch.equal(k, case.k), "out-of-place must not touch its inputs"


def test_cpp_is_bitwise_the_reference_in_fp32_and_bf16() -> None:
    """No FMA contraction and round-to-nearest-even narrowing: the compiled kernel reproduces torch's rounding."""
    for dtype, interleaved in itertools.product((torch.float32, torch.bfloat16), (False, True)):
        case = make_case(dtype, "pos2d", T=33, D=64, r=32)
        ref_q, _ = reference_qk(case, interleaved)
        with use_backend("cpp"):
            out_q, _ = apply_rotary_qk(
                case.q, case.k, case.cos, case.sin, interleaved=interleaved, positions=case.positions
            )
        assert torch.equal(out_q, ref_q)


@pytest.mark.parametrize("rank", [2, 3, 5])
def test_other_ranks_and_strided_views(rank: int) -> None:
    """``[T, D]``, ``[H, T, D]``, ``[A, B, H, T, D]`` and a ``[B, T, H, D]`` tensor seen as ``[B, H, T, D]``."""
    shape = {2: (6, 16), 3: (3, 6, 16), 5: (2, 2, 3, 6, 16)}[rank]
    x = torch.randn(shape)
    cos, sin = rope_cos_sin(1.0 / 100 ** (torch.arange(8) / 8), torch.arange(6))
    ref = apply_rotary_reference(x, cos, sin)
    with use_backend("cpp"):
        assert_matches(apply_rotary(x, cos, sin), ref)
    bthd = torch.randn(2, 6, 3, 16)  # flash-attention layout
    view = bthd.transpose(1, 2)  # [B, H, T, D], not contiguous
    ref = apply_rotary_reference(view, cos, sin)
    with use_backend("cpp"):
        assert_matches(apply_rotary(view, cos, sin), ref)
        apply_rotary_qk(view, view[:, :1].clone(), cos, sin, inplace=True)
    assert_matches(bthd.transpose(1, 2), ref)


def test_positions_match_a_gathered_table() -> None:
    """Explicit positions equal the per-token table they index (auto backend, both pairings)."""
    case = make_case(torch.float32, "pos2d")
    for interleaved in (False, True):
        got = apply_rotary(case.q, case.cos, case.sin, interleaved=interleaved, positions=case.positions)
        assert_matches(got, apply_rotary_reference(case.q, case.cos_full, case.sin_full, interleaved=interleaved))


@pytest.mark.parametrize("mode", ["table", "pos2d"])
def test_gradcheck_float64(mode: str) -> None:
    case = make_case(torch.float64, mode, B=1, Hq=2, Hk=1, T=3, D=10, r=3)
    q, k = case.q.requires_grad_(), case.k.requires_grad_()
    for interleaved in (False, True):

        def fn(q, k, interleaved=interleaved):
            with use_backend("cpp"):
                return apply_rotary_qk(q, k, case.cos, case.sin, interleaved=interleaved, positions=case.positions)

        assert torch.autograd.gradcheck(fn, (q, k))
        assert torch.autograd.gradgradcheck(fn, (q, k))


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("backend", ["cpp", "eager"])
def test_backward_matches_reference_autograd(dtype: torch.dtype, backend: str) -> None:
    """Same upstream gradient through the fused op and through autograd of the reference."""
    for mode, interleaved in itertools.product(POSITION_MODES, (False, True)):
        case = make_case(dtype, mode, Hq=4, Hk=2, D=22, r=8)
        g = torch.Generator().manual_seed(7)
        gq, gk = torch.randn(case.q.shape, generator=g).to(dtype), torch.randn(case.k.shape, generator=g).to(dtype)
        q_ref, k_ref = case.q.clone().requires_grad_(), case.k.clone().requires_grad_()
        rq, rk = (
            apply_rotary_reference(t, case.cos_full, case.sin_full, interleaved=interleaved) for t in (q_ref, k_ref)
        )
        torch.autograd.backward((rq, rk), (gq, gk))
        q, k = case.q.clone().requires_grad_(), case.k.clone().requires_grad_()
        with use_backend(backend):
            oq, ok = apply_rotary_qk(q, k, case.cos, case.sin, interleaved=interleaved, positions=case.positions)
        torch.autograd.backward((oq, ok), (gq, gk))
        assert_matches(q.grad, q_ref.grad)
        assert_matches(k.grad, k_ref.grad)


def test_backward_saves_no_activation() -> None:
    """Only the cos/sin tables (and positions) are saved for backward, never q, k or the outputs."""
    case = make_case(torch.float32, "pos2d", T=6, D=16, r=8)
    q, k = case.q.clone().requires_grad_(), case.k.clone().requires_grad_()
    saved: list[torch.Tensor] = []

    def pack(t: torch.Tensor) -> torch.Tensor:
        saved.append(t)
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t), use_backend("cpp"):
        oq, ok = apply_rotary_qk(q, k, case.cos, case.sin, positions=case.positions)
    assert saved, "the hook saw nothing: the test would not detect saved activations"
    table_ptrs = {case.cos.data_ptr(), case.sin.data_ptr(), case.positions.data_ptr()}
    for t in saved:
        assert t.numel() <= case.cos.numel(), f"saved a tensor of shape {tuple(t.shape)}: an activation"
        assert t.data_ptr() in table_ptrs or t.dtype == torch.int64
    (oq.sum() + ok.sum()).backward()
    assert q.grad is not None and k.grad is not None


def test_learned_frequencies_take_the_reference_path() -> None:
    """cos/sin that require grad get gradients (the fused op does not differentiate the tables)."""
    cos, sin = rope_cos_sin(torch.rand(4), torch.arange(5))
    cos.requires_grad_()
    x = torch.randn(2, 5, 8)
    with use_backend("cpp"):
        apply_rotary(x, cos, sin).sum().backward()
    assert cos.grad is not None and cos.grad.abs().sum() > 0


def test_torch_compile_fullgraph_forward_and_backward() -> None:
    """A model calling the op compiles with fullgraph=True (no graph break) and matches eager."""
    case = make_case(torch.float32, "pos2d", T=6, D=16, r=6)

    def model(q: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
        q, k = apply_rotary_qk(q * 2, k, case.cos, case.sin, positions=case.positions)
        return (q[:, :2] * k).sum()

    compiled = torch.compile(model, fullgraph=True, backend="aot_eager")
    q, k = case.q.clone().requires_grad_(), case.k.clone().requires_grad_()
    q2, k2 = case.q.clone().requires_grad_(), case.k.clone().requires_grad_()
    model(q, k).backward()
    compiled(q2, k2).backward()
    torch.testing.assert_close(q2.grad, q.grad)
    torch.testing.assert_close(k2.grad, k.grad)


def test_compile_inplace_fullgraph() -> None:
    case = make_case(torch.float32, "table", T=6, D=16, r=8)
    ref_q, ref_k = reference_qk(case, False)

    def step(q: torch.Tensor, k: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return apply_rotary_qk(q, k, case.cos, case.sin, inplace=True)

    q, k = case.q.clone(), case.k.clone()
    torch.compile(step, fullgraph=True, backend="aot_eager")(q, k)
    assert_matches(q, ref_q)
    assert_matches(k, ref_k)


@pytest.mark.parametrize("mode", ["table", "pos2d"])
def test_custom_ops_pass_opcheck(mode: str) -> None:
    """Schema, fake (meta) implementation, autograd registration and AOT dispatch of the ops used under compile."""
    from ropekit.kernels import ops

    case = make_case(torch.float32, mode, T=4, D=12, r=4)
    table = (case.cos, case.sin) if mode == "pos2d" else (case.cos[None, None], case.sin[None, None])
    q, k = case.q.clone().requires_grad_(), case.k.clone().requires_grad_()
    torch.library.opcheck(ops.rotary_qk, (q, k, *table, case.positions, True, False, 0, "cpp"))
    torch.library.opcheck(ops.rotary_qk, (q, k, *table, case.positions, False, True, 3, "cpp"))  # slice, inverse
    if mode == "pos2d":  # [B, T, H, D] storage seen as [B, H, T, D], and [L, r] tables with a row stride of 2r
        cache = torch.cat(table, dim=-1)
        qt = case.q.transpose(1, 2).contiguous().transpose(1, 2).requires_grad_()
        kt = case.k.transpose(1, 2).contiguous().transpose(1, 2).requires_grad_()
        r = table[0].shape[-1]
        torch.library.opcheck(
            ops.rotary_qk, (qt, kt, cache[:, :r], cache[:, r:], case.positions, False, False, 0, "cpp")
        )


@pytest.mark.parametrize("backend", ["cpp", "eager"])
def test_edge_layouts(backend: str) -> None:
    """[B, T, D] with [B, T] positions (B is x's first dim), int32 positions, empty T, 5-D x with a 5-D table."""
    cos, sin = rope_cos_sin(1.0 / 100 ** (torch.arange(6) / 6), torch.arange(20))
    pos = torch.tensor([[1, 2, 3, 4, 5], [0, 0, 1, 1, 2], [7, 8, 9, 10, 11]])
    x = torch.randn(3, 5, 16, requires_grad=True)
    x_ref = x.detach().clone().requires_grad_()
    g = torch.randn(3, 5, 16)
    with use_backend(backend):
        out = apply_rotary(x, cos, sin, positions=pos)
        out.backward(g)
        ref = apply_rotary_reference(x_ref, cos[pos], sin[pos])  # [3, 5, 6] lines up with [B, T]
        ref.backward(g)
        assert_matches(out.detach(), ref.detach())
        assert_matches(x.grad, x_ref.grad)
        p32 = torch.arange(5, dtype=torch.int32) + 3
        got = apply_rotary(x.detach(), cos, sin, positions=p32)
        assert_matches(got, apply_rotary_reference(x.detach(), cos[p32.long()], sin[p32.long()]))
        empty = torch.randn(2, 3, 0, 16)
        assert apply_rotary(empty, cos, sin, positions=torch.zeros(0, dtype=torch.long)).shape == empty.shape
        assert apply_rotary(empty, cos[:0], sin[:0]).shape == empty.shape
        x5 = torch.randn(2, 3, 4, 5, 16)
        c5, s5 = rope_cos_sin(1.0 / 100 ** (torch.arange(6) / 6), torch.arange(30).view(2, 3, 1, 5))
        assert_matches(apply_rotary(x5, c5, s5), apply_rotary_reference(x5, c5, s5))
