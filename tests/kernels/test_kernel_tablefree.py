"""Table-free rotation (``apply_rotary_qk_tablefree``): every backend against a float64 reference of the exact
angles, parity with the table path on every engine layout, its backward, compile, and its errors.

The reference takes rope_angles' float32 angle of each (position, pair) (:func:`ropekit.angles.exact_position_angles`,
exact for any int64 position) and rotates in float64; a path is as precise as the table path when its error
against that reference is within twice the table path's (``apply_rotary_qk`` on ``rope_cos_sin`` tables).
"""

from __future__ import annotations

import pytest
import torch
from kernel_helpers import HAS_TRITON

from ropekit import apply_rotary_qk, apply_rotary_qk_tablefree, rope_cos_sin, rope_frequencies
from ropekit.angles import exact_position_angles
from ropekit.kernels import cpu, use_backend
from ropekit.reference import apply_rotary_reference

BACKENDS = [
    "eager",
    pytest.param("cpp", marks=pytest.mark.skipif(cpu.load() is None, reason="the C++ kernel is not built here")),
    pytest.param("triton", marks=[pytest.mark.triton, pytest.mark.skipif(not HAS_TRITON, reason="no triton")]),
]


def _exact(x: torch.Tensor, positions: torch.Tensor, inv: torch.Tensor, interleaved: bool) -> torch.Tensor:
    """float64 rotation of ``x: [B, H, T, D]`` by the float32 angles of ``positions: [Bp, T]``."""
    a = exact_position_angles(inv, positions).double()[:, None]  # [Bp, 1, T, r]
    r2 = 2 * inv.numel()
    out = x.double().clone()
    out[..., :r2] = apply_rotary_reference(x[..., :r2].double(), a.cos(), a.sin(), interleaved=interleaved)
    return out


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
@pytest.mark.parametrize("interleaved", [False, True])
@pytest.mark.parametrize("start", [0, 2**29 - 3, 2**40 + 7, -(2**50)])
def test_as_precise_as_the_table_path(backend: str, dtype: torch.dtype, interleaved: bool, start: int) -> None:
    inv, _ = rope_frequencies({"partial_rotary_factor": 0.75}, head_dim=32)  # 12 pairs of 16: a pass-through tail
    g = torch.Generator().manual_seed(abs(start) % 997 + int(interleaved))
    q = torch.randn(2, 4, 9, 32, generator=g).to(dtype)
    k = torch.randn(2, 2, 9, 32, generator=g).to(dtype)
    positions = start + torch.randint(0, 5000, (2, 9), generator=g)
    with use_backend(backend):
        got_q, got_k = apply_rotary_qk_tablefree(q, k, inv, positions=positions, interleaved=interleaved)
    cos, sin = rope_cos_sin(inv, positions)  # [B, T, r]
    table_q, table_k = apply_rotary_qk(q, k, cos[:, None], sin[:, None], interleaved=interleaved)
    assert got_k is not None
    for x, got, table in ((q, got_q, table_q), (k, got_k, table_k)):
        assert got.dtype == dtype and got.shape == x.shape
        ref = _exact(x, positions, inv, interleaved)
        err, err_table = (got.double() - ref).abs().max().item(), (table.double() - ref).abs().max().item()
        floor = 2 * torch.finfo(dtype).eps * ref.abs().max().item()
        assert err <= max(2 * err_table, floor), (err, err_table)
        torch.testing.assert_close(got[..., 24:], x[..., 24:], rtol=0, atol=0)  # the tail passes through


@pytest.mark.parametrize("backend", BACKENDS)
def test_matches_the_table_path_on_every_layout(backend: str) -> None:
    inv, _ = rope_frequencies(None, head_dim=16)
    cos, sin = rope_cos_sin(inv, torch.arange(64))
    g = torch.Generator().manual_seed(1)
    tol = {"rtol": 2e-6, "atol": 2e-6}
    q, k = torch.randn(2, 7, 4, 16, generator=g), torch.randn(2, 7, 2, 16, generator=g)  # bthd
    with use_backend(backend):
        got = apply_rotary_qk_tablefree(q, k, inv, layout="bthd", seqlen_offsets=torch.tensor([3, 11]))
    want = apply_rotary_qk(q, k, cos, sin, layout="bthd", seqlen_offsets=torch.tensor([3, 11]))
    for a, b in zip(got, want, strict=True):
        torch.testing.assert_close(a, b, **tol)
    packed_q, packed_k = torch.randn(10, 4, 16, generator=g), torch.randn(10, 1, 16, generator=g)  # thd
    cu = torch.tensor([0, 3, 10])
    with use_backend(backend):
        got = apply_rotary_qk_tablefree(packed_q, packed_k, inv, layout="thd", cu_seqlens=cu, seqlen_offsets=5)
    want = apply_rotary_qk(packed_q, packed_k, cos, sin, layout="thd", cu_seqlens=cu, seqlen_offsets=5)
    for a, b in zip(got, want, strict=True):
        torch.testing.assert_close(a, b, **tol)
    x = torch.randn(3, 6, 20, generator=g)  # [H, T, D], q only, trailing slice (DeepSeek style), YaRN's factor
    with use_backend(backend):
        got_q, none = apply_rotary_qk_tablefree(x, None, inv, rotary_offset=4, inverse=True, attention_factor=1.25)
    c, s = rope_cos_sin(inv, torch.arange(6), attention_factor=1.25)
    want_q, _ = apply_rotary_qk(x, x, c, s, rotary_offset=4, inverse=True)
    assert none is None
    torch.testing.assert_close(got_q, want_q, **tol)


@pytest.mark.parametrize("backend", BACKENDS)
def test_backward_is_the_rotation_by_minus_the_angle(backend: str) -> None:
    inv, _ = rope_frequencies(None, head_dim=16)
    g = torch.Generator().manual_seed(2)
    q = torch.randn(2, 4, 5, 16, generator=g, requires_grad=True)
    k = torch.randn(2, 2, 5, 16, generator=g, requires_grad=True)
    positions = torch.arange(5)[None] + 2**35
    with use_backend(backend):
        out_q, out_k = apply_rotary_qk_tablefree(q, k, inv, positions=positions, interleaved=True)
    assert out_k is not None
    gq, gk = torch.randn_like(out_q), torch.randn_like(out_k)
    torch.autograd.backward((out_q, out_k), (gq, gk))
    want_q, want_k = apply_rotary_qk_tablefree(gq, gk, inv, positions=positions, interleaved=True, inverse=True)
    assert q.grad is not None and k.grad is not None and want_k is not None
    torch.testing.assert_close(q.grad, want_q, rtol=2e-6, atol=2e-6)
    torch.testing.assert_close(k.grad, want_k, rtol=2e-6, atol=2e-6)


def test_compiles_whole_and_keeps_the_gradient() -> None:
    inv, _ = rope_frequencies(None, head_dim=16)
    q = torch.randn(1, 2, 6, 16, requires_grad=True)
    k = torch.randn(1, 2, 6, 16, requires_grad=True)

    def f(q: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
        out_q, out_k = apply_rotary_qk_tablefree(q, k, inv, positions=torch.arange(6) + 100)
        assert out_k is not None
        return (out_q * 2).sum() + out_k.square().sum()

    compiled = torch.compile(f, backend="eager", fullgraph=True)
    got = compiled(q, k)
    got.backward()
    assert q.grad is not None
    grad_q = q.grad.clone()
    q.grad = None
    want = f(q, k)
    want.backward()
    torch.testing.assert_close(got, want)
    torch.testing.assert_close(grad_q, q.grad)


def test_bad_input_is_refused_with_the_fix() -> None:
    inv, _ = rope_frequencies(None, head_dim=16)
    q, k = torch.randn(1, 2, 4, 16), torch.randn(1, 2, 4, 16)
    with pytest.raises(ValueError, match="integer"):
        apply_rotary_qk_tablefree(q, k, inv, positions=torch.arange(4) + 0.5)
    with pytest.raises(ValueError, match="must share T, head_dim and dtype"):
        apply_rotary_qk_tablefree(q, k.double(), inv)
    with pytest.raises(ValueError, match="attention_factor"):
        apply_rotary_qk_tablefree(q, k, inv, attention_factor=0.0)
    with pytest.raises(ValueError, match="1-D float tensor"):
        apply_rotary_qk_tablefree(q, k, inv[None])
    with pytest.raises(ValueError, match="exceeds q's head_dim"):
        apply_rotary_qk_tablefree(q, k, torch.cat([inv, inv]))
    with pytest.raises(ValueError, match=r"\[T\] or \[B, T\]"):
        apply_rotary_qk_tablefree(q, k, inv, positions=torch.arange(5))
    with pytest.raises(ValueError, match="finite"):
        apply_rotary_qk_tablefree(q, k, inv * float("nan"))


@pytest.mark.parametrize("backend", BACKENDS[:2])
@pytest.mark.parametrize("pos_rows", [2, 1])
def test_many_token_tiles_match_the_reference(backend: str, pos_rows: int) -> None:
    """T = 2100 spans two 1024-token tiles of the C++ walk and a partial last one; [B, T] positions per row, and
    one [1, T] row shared by the batch (each tile's cos/sin computed once for both batch rows)."""
    inv, _ = rope_frequencies(None, head_dim=16)
    g = torch.Generator().manual_seed(3)
    q, k = torch.randn(2, 6, 2100, 16, generator=g), torch.randn(2, 1, 2100, 16, generator=g)
    positions = torch.randint(0, 10_000, (pos_rows, 2100), generator=g)
    with use_backend(backend):
        got_q, got_k = apply_rotary_qk_tablefree(q, k, inv, positions=positions)
    cos, sin = rope_cos_sin(inv, positions)
    want_q, want_k = apply_rotary_qk(q, k, cos[:, None], sin[:, None])
    assert got_k is not None
    torch.testing.assert_close(got_q, want_q, rtol=2e-6, atol=2e-6)
    torch.testing.assert_close(got_k, want_k, rtol=2e-6, atol=2e-6)
