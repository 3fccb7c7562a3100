"""In-place rotation: the four silent failures of issue 15 (each now an error or correct), compiled in place,
and the exact overlap test behind the refusals."""

from __future__ import annotations

import random

import pytest
import torch
from kernel_helpers import assert_matches

from ropekit import apply_rotary_qk, rope_cos_sin
from ropekit.kernels import use_backend
from ropekit.kernels.overlap import has_internal_overlap, views_overlap
from ropekit.reference import apply_rotary_reference

B, T, HQ, HK, D = 2, 16, 4, 2, 32
COS, SIN = rope_cos_sin(1.0 / 10000 ** (torch.arange(D // 2) / (D // 2)), torch.arange(64))


def packed_views(qkv: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """q and k heads of a ``[B, T, Hq + 2 Hk, D]`` projection as ``[B, H, T, D]`` views."""
    return qkv[:, :, :HQ].transpose(1, 2), qkv[:, :, HQ : HQ + HK].transpose(1, 2)


def reference_packed(qkv: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
    out = qkv.clone()
    cos, sin = COS[pos][:, None], SIN[pos][:, None]
    for sl in (slice(0, HQ), slice(HQ, HQ + HK)):
        out[:, :, sl] = apply_rotary_reference(qkv[:, :, sl].transpose(1, 2), cos, sin).transpose(1, 2)
    return out


@pytest.mark.parametrize("backend", ["cpp", "eager"])
def test_inplace_bumps_the_version_counter(backend: str) -> None:
    """Failure 1: a q saved by another op for backward was overwritten silently; now autograd's check fires."""
    w = torch.randn(D, D, requires_grad=True)
    q, k = torch.randn(B, HQ, T, D), torch.randn(B, HK, T, D)
    y = (q @ w).sum()  # saves q for w's gradient
    versions = (q._version, k._version)
    with use_backend(backend):
        apply_rotary_qk(q, k, COS[:T], SIN[:T], inplace=True)
    assert q._version > versions[0] and k._version > versions[1]
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        y.backward()


def test_inplace_refuses_aliased_memory() -> None:
    """Failure 2: an expanded tensor was rotated once per alias, and (x, x) twice; both are errors now."""
    x = torch.randn(B, 1, T, D).expand(B, HQ, T, D)
    with pytest.raises(ValueError, match="share memory"):
        apply_rotary_qk(x, torch.randn(B, HK, T, D), COS[:T], SIN[:T], inplace=True)
    y = torch.randn(B, HQ, T, D)
    before = y.clone()
    with pytest.raises(ValueError, match="q and k that share memory"):
        apply_rotary_qk(y, y, COS[:T], SIN[:T], inplace=True)
    with pytest.raises(ValueError, match="q and k that share memory"):
        apply_rotary_qk(y[:, :3], y[:, 2:], COS[:T], SIN[:T], inplace=True)  # overlapping head ranges
    assert torch.equal(y, before), "a refused call writes nothing"
    out_q, out_k = apply_rotary_qk(y, y, COS[:T], SIN[:T])  # out of place, aliasing is fine
    assert torch.equal(out_q, out_k)


@pytest.mark.parametrize("backend", ["cpp", "eager"])
def test_inplace_inside_autograd(backend: str) -> None:
    """Failure 3: in place refused tensors that require grad; now its backward is the rotation by -theta."""
    base = torch.randn(B, T, HQ + 2 * HK, D, dtype=torch.float64, requires_grad=True)
    pos = torch.randint(0, 64, (B, T))
    g = torch.randn(B, T, HQ + 2 * HK, D, dtype=torch.float64)
    qkv = base * 1.0  # a non-leaf, like a projection's output
    with use_backend(backend):
        apply_rotary_qk(*packed_views(qkv), COS, SIN, positions=pos, inplace=True)
    (qkv * g).sum().backward()
    ref_base = base.detach().clone().requires_grad_()
    (reference_packed(ref_base * 1.0, pos) * g).sum().backward()
    assert_matches(qkv.detach(), reference_packed(base.detach(), pos))
    assert_matches(base.grad, ref_base.grad)

    def fn(t):
        t = t * 1.0
        with use_backend(backend):
            apply_rotary_qk(*packed_views(t), COS[:, :3].double(), SIN[:, :3].double(), positions=pos[:1, :3],
                            inplace=True)  # fmt: skip
        return t

    small = torch.randn(1, 3, HQ + 2 * HK, 8, dtype=torch.float64, requires_grad=True)  # 3 of 4 pairs rotate
    assert torch.autograd.gradcheck(fn, (small,))
    with pytest.raises(ValueError, match="leaf tensor that requires grad"):  # torch's rule, said before any write
        leaf = torch.randn(B, HQ, T, D, requires_grad=True)
        apply_rotary_qk(leaf, torch.randn(B, HK, T, D), COS[:T], SIN[:T], inplace=True)


def test_inplace_backward_keeps_shared_gradients_intact() -> None:
    """The backward never overwrites its incoming gradient: ``q + x`` hands x's AccumulateGrad the same buffer."""
    a = torch.randn(B, HQ, T, D, requires_grad=True)
    other = torch.randn(B, HQ, T, D, requires_grad=True)
    q = a * 1.0
    apply_rotary_qk(q, torch.randn(B, HK, T, D), COS[:T], SIN[:T], inplace=True)
    g = torch.randn(B, HQ, T, D)
    (q + other).backward(g)
    assert torch.equal(other.grad, g)
    assert_matches(a.grad, apply_rotary_reference(g, COS[:T], -SIN[:T]))


def _packed_step(qkv: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
    apply_rotary_qk(*packed_views(qkv), COS, SIN, positions=pos, inplace=True)
    return qkv


@pytest.mark.parametrize("dynamic", [False, True])
def test_compiled_inplace_on_packed_views(dynamic: bool) -> None:
    """Failure 4: torch.compile(dynamic=True) left wrong values in the packed buffer (max error 6.2); in place is
    now the out-of-place op plus copy_ while compiling. Inductor, the backend that miscompiled it."""
    torch._dynamo.reset()
    pos = torch.arange(T).repeat(B, 1)
    qkv = torch.randn(B, T, HQ + 2 * HK, D)
    compiled = torch.compile(_packed_step, fullgraph=True, dynamic=dynamic)
    got = compiled(qkv.clone(), pos)
    assert_matches(got, reference_packed(qkv, pos))
    if dynamic:  # a second shape through the same dynamic graph
        qkv2 = torch.randn(B, T - 3, HQ + 2 * HK, D)
        assert_matches(compiled(qkv2.clone(), pos[:, : T - 3]), reference_packed(qkv2, pos[:, : T - 3]))


def _brute(t: torch.Tensor) -> tuple[bool, set[int]]:
    addr = torch.zeros(t.shape, dtype=torch.long) + t.storage_offset()
    for d in range(t.dim()):
        shape = [1] * t.dim()
        shape[d] = -1
        addr = addr + (torch.arange(t.shape[d]) * t.stride(d)).view(shape)
    flat = addr.flatten().tolist()
    return len(set(flat)) != len(flat), set(flat)


def test_overlap_checks_are_exact() -> None:
    """Against brute force over random ``as_strided`` views of one buffer (internal overlap and pairwise)."""
    rng = random.Random(0)
    buf = torch.zeros(512)
    for _ in range(1500):
        nd = rng.randint(1, 4)

        def view(nd: int = nd) -> torch.Tensor:
            shape = [rng.randint(1, 4) for _ in range(nd)]
            return buf.as_strided(shape, [rng.randint(0, 12) for _ in range(nd)], rng.randint(0, 40))

        a, b = view(), view()
        (a_over, a_set), (_, b_set) = _brute(a), _brute(b)
        assert has_internal_overlap(a) == a_over, (a.shape, a.stride())
        assert views_overlap(a, b) == bool(a_set & b_set), (a.shape, a.stride(), b.shape, b.stride())
    qkv = torch.zeros(B, T, HQ + 2 * HK, D)
    q, k = packed_views(qkv)
    assert not has_internal_overlap(q) and not views_overlap(q, k)


def test_inplace_under_inference_mode() -> None:
    """Engines rotate under ``torch.inference_mode()``: inference tensors have no version counter to bump."""
    with torch.inference_mode():
        q, k = torch.randn(B, HQ, T, D), torch.randn(B, HK, T, D)
        want_q = apply_rotary_reference(q, COS[:T], SIN[:T])
        apply_rotary_qk(q, k, COS[:T], SIN[:T], inplace=True)
    assert_matches(q, want_q)
