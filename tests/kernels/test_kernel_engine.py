"""Engine-grade rotary: layouts, varlen, offsets, slices, packed views and in place, against the reference.

The matrix (layout x positions mode x pairing x partial/sliced rotary x GQA x packed views x in place x dtype x
backend, forward and backward with the same upstream gradient) is sampled with a fixed seed: the full product
is tens of thousands of cases. The oracle is :func:`ropekit.reference.apply_rotary_reference` on the
``[B, H, T, D]`` view with explicit per-token table rows; tolerances come from the reference's own rounding
(``kernel_helpers.ulp_tolerance``).
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import pytest
import torch
from kernel_helpers import HAS_TRITON, assert_matches

from ropekit import apply_rotary, apply_rotary_qk, rope_cos_sin
from ropekit.kernels import use_backend
from ropekit.reference import apply_rotary_reference

LAYOUTS = ("bhtd", "bthd", "tbhd", "thd")
MODES = {"bhtd": ("none", "int", "tensor", "positions"), "thd": ("none", "cu_int", "cu_tensor", "positions")}
DTYPES = (torch.float32, torch.bfloat16, torch.float16, torch.float64)
HEADS = ((4, 4), (4, 2), (3, 1))


@dataclass
class Spec:
    layout: str
    mode: str
    interleaved: bool
    rot: str  # full | partial | slice
    heads: tuple[int, int]
    packed: bool
    inplace: bool
    dtype: torch.dtype
    grad: bool
    seed: int


def sample_specs(n: int, seed: int) -> list[Spec]:
    rng = random.Random(seed)
    specs = []
    for i in range(n):
        layout = LAYOUTS[i % 4]  # every layout equally often
        modes = MODES["thd" if layout == "thd" else "bhtd"]
        specs.append(
            Spec(
                layout,
                modes[(i // 4) % 4],  # and every positions mode of each layout
                rng.random() < 0.5,
                rng.choice(("full", "partial", "slice")),
                rng.choice(HEADS),
                rng.random() < 0.5,
                rng.random() < 0.5,
                rng.choice(DTYPES),
                rng.random() < 0.5,
                i,
            )
        )
    return specs


B, T, L = 2, 7, 20
SEQLENS = (3, 0, 6, 2)  # thd: one empty sequence
N = sum(SEQLENS)


def shapes(spec: Spec) -> tuple[int, int]:
    """(head_dim, pairs) of the case."""
    return {"full": (16, 8), "partial": (22, 7), "slice": (24, 6)}[spec.rot]


def make_buffers(spec: Spec, D: int):
    """Leaf tensors holding q and k, and a function returning the (q, k) views in the layout."""
    hq, hk = spec.heads
    g = torch.Generator().manual_seed(spec.seed)

    def rand(*shape):
        return torch.randn(*shape, generator=g).to(spec.dtype)

    lay = spec.layout
    if spec.packed:  # one fused projection output holding q, k and v heads
        H = hq + 2 * hk
        full = {"bhtd": (B, H, T, D), "bthd": (B, T, H, D), "tbhd": (T, B, H, D), "thd": (N, H * D)}[lay]
        buf = rand(*full)
        hdim = {"bhtd": 1, "bthd": 2, "tbhd": 2, "thd": 1}[lay]

        def views(b):
            if lay == "thd":
                b = b.view(N, H, D)
            return b.narrow(hdim, 0, hq), b.narrow(hdim, hq, hk)

        return [buf], views
    shape = {"bhtd": lambda h: (B, h, T, D), "bthd": lambda h: (B, T, h, D), "tbhd": lambda h: (T, B, h, D)}
    shape["thd"] = lambda h: (N, h, D)
    return [rand(*shape[lay](hq)), rand(*shape[lay](hk))], lambda q, k: (q, k)


def to_bhtd(x: torch.Tensor, layout: str) -> torch.Tensor:
    return {
        "bhtd": lambda: x,
        "bthd": lambda: x.transpose(1, 2),
        "tbhd": lambda: x.permute(1, 2, 0, 3),
        "thd": lambda: x.transpose(0, 1).unsqueeze(0),
    }[layout]()


def call_args(spec: Spec, r: int):
    """Keyword arguments for ropekit and the equivalent per-token positions ``[Bp, T']`` for the oracle."""
    inv_freq = 1.0 / 10000 ** (torch.arange(r, dtype=torch.float32) / r)
    cos, sin = rope_cos_sin(inv_freq, torch.arange(L))  # [L, r]
    kw: dict = {"layout": spec.layout}
    if spec.layout == "thd":
        cu = torch.tensor([0, *torch.tensor(SEQLENS).cumsum(0).tolist()], dtype=torch.int32)
        offs = torch.tensor([4, 0, 9, 1])
        pos = torch.cat([torch.arange(n) + (offs[i] if spec.mode == "cu_tensor" else 2) for i, n in enumerate(SEQLENS)])
        if spec.mode == "none":
            pos = torch.arange(N)
        elif spec.mode == "cu_int":
            kw.update(cu_seqlens=cu, seqlen_offsets=2)
        elif spec.mode == "cu_tensor":
            kw.update(cu_seqlens=cu.long(), seqlen_offsets=offs)
        else:
            pos = torch.randint(0, L, (N,), generator=torch.Generator().manual_seed(spec.seed))
            kw["positions"] = pos
        pos = pos[None]  # [1, N]
    else:
        pos = torch.arange(T)[None].expand(B, T)
        if spec.mode == "int":
            kw["seqlen_offsets"] = 5
            pos = pos + 5
        elif spec.mode == "tensor":
            offs = torch.tensor([3, 11])
            kw["seqlen_offsets"] = offs
            pos = pos + offs[:, None]
        elif spec.mode == "positions":
            pos = torch.randint(0, L, (B, T), generator=torch.Generator().manual_seed(spec.seed))
            kw["positions"] = pos
        elif spec.layout == "bhtd":  # today's form: a [T, r] table broadcast over x
            return cos[:T], sin[:T], kw, pos
    return cos, sin, kw, pos


def oracle(x: torch.Tensor, spec: Spec, cos, sin, pos, offset: int, inverse: bool) -> torch.Tensor:
    """Reference rotation of one tensor in its layout (autograd through torch ops)."""
    x4 = to_bhtd(x, spec.layout)
    c, s = cos[pos][:, None], sin[pos][:, None]  # [Bp, 1, T, r]
    if inverse:
        s = -s
    r2 = 2 * cos.shape[-1]
    mid = apply_rotary_reference(x4[..., offset : offset + r2], c, s, interleaved=spec.interleaved)
    out4 = torch.cat((x4[..., :offset], mid, x4[..., offset + r2 :]), dim=-1)
    back = {"bhtd": lambda t: t, "bthd": lambda t: t.transpose(1, 2), "tbhd": lambda t: t.permute(2, 0, 1, 3)}
    back["thd"] = lambda t: t[0].transpose(0, 1)
    return back[spec.layout](out4)


def check_case(spec: Spec, backend: str) -> None:
    D, r = shapes(spec)
    offset = D - 2 * r if spec.rot == "slice" else 0
    inverse = spec.seed % 5 == 0
    cos, sin, kw, pos = call_args(spec, r)
    leaves, views = make_buffers(spec, D)
    leaves = [t.requires_grad_(spec.grad) for t in leaves]

    # ropekit
    work = [t.clone() for t in leaves]  # non-leaf copies (in place on a leaf that requires grad is torch's error)
    q, k = views(*work)
    q_before_ptr = q.data_ptr()
    with use_backend(backend):
        oq, ok = apply_rotary_qk(
            q, k, cos, sin, interleaved=spec.interleaved, inplace=spec.inplace, rotary_offset=offset,
            inverse=inverse, **kw,
        )  # fmt: skip
    # the oracle
    q_ref, k_ref = views(*leaves)
    table_pos = pos
    rq = oracle(q_ref, spec, cos, sin, table_pos, offset, inverse)
    rk = oracle(k_ref, spec, cos, sin, table_pos, offset, inverse)
    assert_matches(oq.detach(), rq.detach())
    assert_matches(ok.detach(), rk.detach())
    if spec.inplace:
        assert oq.data_ptr() == q_before_ptr
        if spec.packed:  # v untouched
            hq, hk = spec.heads
            flat, flat_ref = work[0].detach(), leaves[0].detach()
            if spec.layout == "thd":
                flat, flat_ref = flat.view(N, -1, D), flat_ref.view(N, -1, D)
            hdim = {"bhtd": 1, "bthd": 2, "tbhd": 2, "thd": 1}[spec.layout]
            assert torch.equal(flat.narrow(hdim, hq + hk, hk), flat_ref.narrow(hdim, hq + hk, hk))
    if spec.grad:
        g = torch.Generator().manual_seed(100 + spec.seed)
        gq, gk = torch.randn(oq.shape, generator=g).to(spec.dtype), torch.randn(ok.shape, generator=g).to(spec.dtype)
        got = torch.autograd.grad((oq, ok), leaves, (gq, gk))
        want = torch.autograd.grad((rq, rk), leaves, (gq, gk))
        for a, b in zip(got, want, strict=True):
            assert_matches(a, b)


SPECS = sample_specs(64, seed=2026)


@pytest.mark.parametrize("spec", SPECS, ids=lambda s: f"{s.seed}-{s.layout}-{s.mode}")
def test_cpp_matrix(spec: Spec) -> None:
    check_case(spec, "cpp")


@pytest.mark.parametrize("spec", SPECS[::4], ids=lambda s: f"{s.seed}-{s.layout}-{s.mode}")
def test_eager_matrix(spec: Spec) -> None:
    check_case(spec, "eager")


@pytest.mark.triton
@pytest.mark.skipif(not HAS_TRITON, reason="triton is not importable")
@pytest.mark.parametrize("spec", SPECS[1::4] + SPECS[2::8], ids=lambda s: f"{s.seed}-{s.layout}-{s.mode}")
def test_triton_matrix(spec: Spec) -> None:
    check_case(spec, "triton")


def test_matrix_sample_covers_every_factor() -> None:
    """The sample holds every level of every factor (and each layout with each of its positions modes)."""
    assert {(s.layout, s.mode) for s in SPECS} == {(lay, m) for lay in LAYOUTS for m in MODES.get(lay, MODES["bhtd"])}
    for field, levels in (
        ("interleaved", {False, True}), ("rot", {"full", "partial", "slice"}), ("heads", set(HEADS)),
        ("packed", {False, True}), ("inplace", {False, True}), ("dtype", set(DTYPES)), ("grad", {False, True}),
    ):  # fmt: skip
        assert {getattr(s, field) for s in SPECS} == levels, field
    assert any(s.inplace and s.grad and s.packed for s in SPECS)


def test_round_trip_inverse_and_varlen_equals_positions() -> None:
    cos, sin = rope_cos_sin(1.0 / 100 ** (torch.arange(4) / 4), torch.arange(16))
    x = torch.randn(9, 3, 8, dtype=torch.float64)
    cu = torch.tensor([0, 4, 9])
    y = apply_rotary(x, cos, sin, layout="thd", cu_seqlens=cu, seqlen_offsets=torch.tensor([2, 6]))
    pos = torch.tensor([2, 3, 4, 5, 6, 7, 8, 9, 10])
    torch.testing.assert_close(y, apply_rotary(x, cos, sin, layout="thd", positions=pos), rtol=0, atol=0)
    back = apply_rotary(y, cos, sin, layout="thd", positions=pos, inverse=True)
    torch.testing.assert_close(back, x, rtol=0, atol=1e-6)  # float32 tables: cos^2 + sin^2 = 1 to ~1e-7


COMPILED = [
    next(s for s in SPECS if s.layout == "thd" and s.mode == "cu_tensor"),
    next(s for s in SPECS if s.layout == "bthd" and s.mode == "tensor" and s.packed),
]


@pytest.mark.parametrize("dynamic", [False, True])
@pytest.mark.parametrize("spec", COMPILED, ids=lambda s: f"{s.seed}-{s.layout}-{s.mode}")
def test_compiled_matrix_cases(spec: Spec, dynamic: bool) -> None:
    """Cases of the matrix through ``torch.compile(fullgraph=True)`` (aot_eager: the custom op's fake and autograd
    registrations; inductor is covered by the in-place tests), forward and backward."""
    D, r = shapes(spec)
    offset = D - 2 * r if spec.rot == "slice" else 0
    cos, sin, kw, pos = call_args(spec, r)
    leaves, views = make_buffers(spec, D)
    leaves = [t.requires_grad_() for t in leaves]

    def step(*bufs):
        work = [t.clone() for t in bufs]
        q, k = views(*work)
        return apply_rotary_qk(
            q, k, cos, sin, interleaved=spec.interleaved, inplace=spec.inplace, rotary_offset=offset, **kw
        )

    torch._dynamo.reset()
    oq, ok = torch.compile(step, fullgraph=True, dynamic=dynamic, backend="aot_eager")(*leaves)
    rq, rk = (oracle(t, spec, cos, sin, pos, offset, False) for t in views(*leaves))
    assert_matches(oq.detach(), rq.detach())
    assert_matches(ok.detach(), rk.detach())
    g = torch.Generator().manual_seed(7)
    gq, gk = torch.randn(oq.shape, generator=g).to(spec.dtype), torch.randn(ok.shape, generator=g).to(spec.dtype)
    for a, b in zip(
        torch.autograd.grad((oq, ok), leaves, (gq, gk)), torch.autograd.grad((rq, rk), leaves, (gq, gk)), strict=True
    ):
        assert_matches(a, b)
