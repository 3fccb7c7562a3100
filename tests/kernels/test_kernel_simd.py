"""The compiled kernel's vector rows (AVX-512 or AVX2) and its streaming-store path, against the reference.

The parity matrix in ``test_kernel_parity.py`` uses odd, short rows (11 and 4 pairs) that mostly run the scalar
tails; here rows are long enough for full vector steps (16 pairs half-paired, 8 interleaved), with and without a
tail and pass-through features, and the raw op is also called with ``stream_min_bytes=0`` so the
non-temporal-store variant (used for outputs larger than the last-level cache) runs on small tensors.
"""

from __future__ import annotations

import itertools

import pytest
import torch
from kernel_helpers import assert_matches, make_case, reference_qk

from ropekit import apply_rotary_qk
from ropekit.kernels import cpu, ops, use_backend
from ropekit.reference import apply_rotary_reference

# (head_dim, pairs): unrolled 32 and 64 pairs, a vector step plus a scalar tail with pass-through, 48 pairs
ROWS = ((64, 32), (128, 64), (80, 20), (96, 48), (56, 24))


def _module():
    module = cpu.load()
    if module is None:
        pytest.skip(f"compiled kernel unavailable: {cpu.load_error()}")
    return module


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
def test_vector_rows_are_bitwise_the_reference(dtype: torch.dtype) -> None:
    """Forward, in place and out of place, both pairings, tables and positions, GQA: equal to the reference."""
    for i, ((d, r), interleaved, inplace, mode) in enumerate(
        itertools.product(ROWS, (False, True), (False, True), ("table", "pos2d"))
    ):
        case = make_case(dtype, mode, Hq=4, Hk=1, T=9, D=d, r=r, seed=i)
        ref_q, ref_k = reference_qk(case, interleaved)
        q, k = case.q.clone(), case.k.clone()
        with use_backend("cpp"):
            out_q, out_k = apply_rotary_qk(
                q, k, case.cos, case.sin, interleaved=interleaved, inplace=inplace, positions=case.positions
            )
        assert torch.equal(out_q, ref_q) and torch.equal(out_k, ref_k), (d, r, interleaved, inplace, mode)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
def test_vector_rows_backward(dtype: torch.dtype) -> None:
    """The backward (rotation by minus the angle) on long rows, against autograd of the reference."""
    for (d, r), interleaved in itertools.product(ROWS, (False, True)):
        case = make_case(dtype, "pos2d", Hq=2, Hk=1, T=7, D=d, r=r)
        g = torch.Generator().manual_seed(3)
        gq, gk = torch.randn(case.q.shape, generator=g).to(dtype), torch.randn(case.k.shape, generator=g).to(dtype)
        q_ref, k_ref = case.q.clone().requires_grad_(), case.k.clone().requires_grad_()
        refs = [
            apply_rotary_reference(t, case.cos_full, case.sin_full, interleaved=interleaved) for t in (q_ref, k_ref)
        ]
        torch.autograd.backward(refs, (gq, gk))
        q, k = case.q.clone().requires_grad_(), case.k.clone().requires_grad_()
        with use_backend("cpp"):
            outs = apply_rotary_qk(q, k, case.cos, case.sin, interleaved=interleaved, positions=case.positions)
        torch.autograd.backward(outs, (gq, gk))
        assert_matches(q.grad, q_ref.grad)
        assert_matches(k.grad, k_ref.grad)


def _build_can_stream() -> bool:
    """The AVX2 rows and the AVX-512 rows (AVX512F/BW/VL) implement streaming stores; the plain build ignores them."""
    flags = cpu._cpu_signature().split()
    return "avx2" in flags or {"avx512f", "avx512bw", "avx512vl"} <= set(flags)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
def test_streaming_stores_match_the_reference(dtype: torch.dtype) -> None:
    """``stream_min_bytes=0`` forces non-temporal stores on aligned out-of-place outputs, forward and backward."""
    module = _module()
    for (d, r), interleaved, conj, mode in itertools.product(ROWS, (False, True), (False, True), ("table", "pos2d")):
        case = make_case(dtype, mode, Hq=3, Hk=1, T=6, D=d, r=r)
        sin_full = -case.sin_full if conj else case.sin_full
        ref_q, ref_k = (
            apply_rotary_reference(t, case.cos_full, sin_full, interleaved=interleaved) for t in (case.q, case.k)
        )
        args = (case.cos, case.sin, case.positions, interleaved, conj)
        q_out, k_out = torch.empty_like(case.q), torch.empty_like(case.k)
        streamed = module.rotary_qk(case.q, case.k, q_out, k_out, *args, 0)
        elem = case.q.element_size()
        aligned = (interleaved or r * elem % 32 == 0) and d * elem % 32 == 0
        assert streamed == (aligned and _build_can_stream()), (d, r, interleaved, streamed)
        assert torch.equal(q_out, ref_q) and torch.equal(k_out, ref_k), (d, r, interleaved, conj, mode, streamed)
        q_in, k_in = case.q.clone(), case.k.clone()
        assert not module.rotary_qk(q_in, k_in, q_in, k_in, *args, 0), "in place never streams"
        assert torch.equal(q_in, ref_q) and torch.equal(k_in, ref_k)
        assert not module.rotary_qk(case.q, case.k, q_out, k_out, *args, -1), "-1 turns streaming off"
        assert not module.rotary_qk(case.q, case.k, q_out, k_out, *args, 1 << 40), "below the size threshold"


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
def test_head_groups_match_the_reference(dtype: torch.dtype) -> None:
    """The grouped walk over ``[B, H, T, D]`` storage (four heads token by token, units of 1024 tokens): head
    counts that leave a partial group, a key side of one head (walked alone), more than one unit of tokens, per-batch
    tables and positions, both pairings, forward and conjugate, streaming and regular stores: equal to the reference."""
    module = _module()
    shapes = ((3, 1, 1), (5, 2, 7), (9, 6, 1030), (4, 1, 1025))  # (Hq, Hk, T)
    for i, ((hq, hk, t), interleaved, conj, mode) in enumerate(
        itertools.product(shapes, (False, True), (False, True), ("table", "batch_table", "pos2d"))
    ):
        case = make_case(dtype, mode, Hq=hq, Hk=hk, T=t, D=64, r=32, seed=i)
        sin_full = -case.sin_full if conj else case.sin_full
        ref_q, ref_k = (
            apply_rotary_reference(x, case.cos_full, sin_full, interleaved=interleaved) for x in (case.q, case.k)
        )
        for stream in (0, -1):
            q_out, k_out = torch.empty_like(case.q), torch.empty_like(case.k)
            args = (case.cos, case.sin, case.positions, interleaved, conj, stream)
            module.rotary_qk(case.q, case.k, q_out, k_out, *args)
            assert torch.equal(q_out, ref_q) and torch.equal(k_out, ref_k), (hq, hk, t, interleaved, conj, mode)



def _split_packed(buf: torch.Tensor, hq: int, hk: int) -> tuple[torch.Tensor, torch.Tensor]:
    """q and k heads of a packed ``[B, T, Hq + Hk + Hv, D]`` buffer as ``[B, H, T, D]`` views."""
    return buf[:, :, :hq].transpose(1, 2), buf[:, :, hq : hq + hk].transpose(1, 2)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
def test_token_major_walk_matches_the_reference(dtype: torch.dtype) -> None:
    """``[B, T, H, D]`` storage on both sides (the token-by-token walk, q's heads then k's): q and k as views of one
    packed ``[B, T, Hq + Hk + Hv, D]`` projection and as separate buffers, out of place (streaming and regular
    stores) and in place (v untouched); shared tables, per-head tables and positions; head counts that leave a
    partial group of four; both pairings, forward and conjugate: equal to the reference bit for bit."""
    module = _module()
    g = torch.Generator().manual_seed(0)
    B, T = 2, 7
    combos = itertools.product(
        ROWS[:3], ((5, 2, 0), (4, 4, 4)), (False, True), (False, True), ("table", "per_head", "pos2d")
    )
    for i, ((d, r), (hq, hk, hv), interleaved, conj, mode) in enumerate(combos):
        if mode == "per_head" and hk != hq:
            continue  # a per-head table [H, T, r] serves q and k of the same head count
        case = make_case(dtype, "table" if mode == "per_head" else mode, B=B, Hq=hq, Hk=hk, T=T, D=d, r=r, seed=i)
        cos, sin, cos_full, sin_full = case.cos, case.sin, case.cos_full, case.sin_full
        if mode == "per_head":
            cos = cos_full = torch.randn(hq, T, r, generator=g)
            sin = sin_full = torch.randn(hq, T, r, generator=g)
        sin_ref = -sin_full if conj else sin_full
        packed = torch.randn(B, T, hq + hk + hv, d, generator=g).to(dtype)

        q, k = _split_packed(packed, hq, hk)
        ref_q, ref_k = (apply_rotary_reference(x, cos_full, sin_ref, interleaved=interleaved) for x in (q, k))
        args = (cos, sin, case.positions, interleaved, conj)
        separate = [x.transpose(1, 2).contiguous().transpose(1, 2) for x in (q, k)]
        for name, (qx, kx) in (("packed", (q, k)), ("separate", separate)):
            for stream in (0, -1):
                q_out, k_out = torch.empty_like(qx), torch.empty_like(kx)
                module.rotary_qk(qx, kx, q_out, k_out, *args, stream)
                assert torch.equal(q_out, ref_q) and torch.equal(k_out, ref_k), (d, r, name, interleaved, conj, mode)
        buf = packed.clone()
        qi, ki = _split_packed(buf, hq, hk)
        module.rotary_qk(qi, ki, qi, ki, *args, -1)
        assert torch.equal(qi, ref_q) and torch.equal(ki, ref_k), (d, r, "packed in place", interleaved, conj, mode)
        assert torch.equal(buf[:, :, hq + hk :], packed[:, :, hq + hk :]), "v heads untouched"
        buf = packed.clone()
        qi, _ = _split_packed(buf, hq, hk)
        module.rotary_qk(qi, ops.no_rows(qi), qi, ops.no_rows(qi), *args, -1)  # q alone, as apply_rotary calls it
        assert torch.equal(qi, ref_q) and torch.equal(buf[:, :, hq:], packed[:, :, hq:]), (d, r, "q alone")
        qs, ks = (x.clone() for x in separate)  # clone keeps the [B, T, H, D] storage
        assert qs.stride() == separate[0].stride()
        module.rotary_qk(qs, ks, qs, ks, *args, -1)
        assert torch.equal(qs, ref_q) and torch.equal(ks, ref_k), (d, r, "separate in place", interleaved, conj, mode)
