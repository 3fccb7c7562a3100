"""The table-free rotation (kernels/tablefree.rotate): C++ against its pure-torch form, and its backward."""

from __future__ import annotations

import pytest
import torch

from ropekit import rope_frequencies
from ropekit.kernels import cpu, tablefree

pytestmark = pytest.mark.skipif(cpu.load() is None, reason="the C++ kernel is not built here")


@pytest.mark.parametrize("interleaved", [False, True])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("start", [0, 2**29, 2**40])
def test_cpp_matches_torch_form(interleaved, dtype, start):
    inv, _ = rope_frequencies(None, head_dim=64)
    g = torch.Generator().manual_seed(start % 1000 + int(interleaved))
    q = torch.randn(2, 8, 33, 64, generator=g).to(dtype)
    k = torch.randn(2, 2, 33, 64, generator=g).to(dtype)
    positions = start + torch.arange(33)[None] * 7
    kw = dict(interleaved=interleaved, conj=False, offset=0)
    got = tablefree.rotate(q, k, positions, inv, backend="cpp", **kw)
    ref = tablefree.rotate(q, k, positions, inv, backend="reference", **kw)
    tol = 1e-6 if dtype == torch.float32 else 1e-2
    for a, b in zip(got, ref, strict=True):
        assert a is not None and b is not None
        torch.testing.assert_close(a.float(), b.float(), atol=tol, rtol=tol)


def test_backward_is_rotation_by_minus_the_angle():
    inv, _ = rope_frequencies(None, head_dim=32)
    q = torch.randn(1, 4, 9, 32, requires_grad=True)
    k = torch.randn(1, 4, 9, 32, requires_grad=True)
    positions = torch.arange(9)[None] + 2**35
    qo, ko = tablefree.rotate(q, k, positions, inv, interleaved=False, conj=False, offset=0, backend="cpp")
    assert ko is not None
    gq, gk = torch.randn_like(qo), torch.randn_like(ko)
    (qo * gq).sum().backward(retain_graph=True)
    (ko * gk).sum().backward()
    want_q, want_k = tablefree.rotate(gq, gk, positions, inv, interleaved=False, conj=True, offset=0,
                                      backend="reference")
    assert want_k is not None and q.grad is not None and k.grad is not None
    torch.testing.assert_close(q.grad, want_q, atol=1e-6, rtol=1e-6)
    torch.testing.assert_close(k.grad, want_k, atol=1e-6, rtol=1e-6)
