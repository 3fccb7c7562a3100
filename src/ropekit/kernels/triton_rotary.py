"""The Triton backend: one launch rotates the rows of q and then k (forward, or backward with ``conj``).

Legend: ``q: [B, Hq, T, D]``, ``k: [B, Hk, T, D]`` (unit stride on D), ``r = rotary_dim / 2``; without positions
``cos, sin: [Bc, Hc, Tc, r]`` (or fewer leading dims, right-aligned; size-1 dims broadcast), with
``positions: [Bp, T]`` int64 tables ``[L, r]``.
cos/sin are float32 (float64 for float64 inputs) and set the compute type: bf16/fp16 rows are widened in
registers and narrowed once on store.

Runs on CUDA tensors, or on CPU tensors under ``TRITON_INTERPRET=1`` (how CI tests it; the variable must be set
before this module is imported). It is called from the body of the ``ropekit::rotary_qk`` custom ops, which
``torch.compile`` treats as opaque, so compiled graphs stay whole. No GPU speed has been measured.
"""

from __future__ import annotations

import os

import torch
import triton
import triton.language as tl

__all__ = ["rotary_qk"]

_BLOCK_M = 16  # rows (tokens x heads) per program


@triton.jit
def _rotate_rows(
    x_ptr,
    o_ptr,
    cos_ptr,
    sin_ptr,
    pos_ptr,
    m0,
    n_rows,
    H,
    T,
    sxb,
    sxh,
    sxt,
    sob,
    soh,
    sot,
    scb,
    sch,
    sct,
    spb,
    spt,
    r,
    D,
    BLOCK_M: tl.constexpr,
    BLOCK_R: tl.constexpr,
    BLOCK_P: tl.constexpr,
    HAS_POS: tl.constexpr,
    INTERLEAVED: tl.constexpr,
    CONJ: tl.constexpr,
    COPY_TAIL: tl.constexpr,
):
    m = m0 + tl.arange(0, BLOCK_M).to(tl.int64)  # [BLOCK_M] row ids
    row_ok = m < n_rows
    t = m % T
    bh = m // T
    h = bh % H
    b = bh // H
    x_row = b * sxb + h * sxh + t * sxt  # [BLOCK_M]
    o_row = b * sob + h * soh + t * sot
    if HAS_POS:
        p = tl.load(pos_ptr + b * spb + t * spt, mask=row_ok, other=0)
        c_row = p * sct  # tables [L, r]: sct is the row stride
    else:
        c_row = b * scb + h * sch + t * sct
    j = tl.arange(0, BLOCK_R)  # [BLOCK_R] pair index
    mask = row_ok[:, None] & (j[None, :] < r)  # [BLOCK_M, BLOCK_R]
    c = tl.load(cos_ptr + c_row[:, None] + j[None, :], mask=mask, other=0.0)
    s = tl.load(sin_ptr + c_row[:, None] + j[None, :], mask=mask, other=0.0)
    if CONJ:
        s = -s
    if INTERLEAVED:
        ia = 2 * j
        ib = 2 * j + 1
    else:
        ia = j
        ib = j + r
    a = tl.load(x_ptr + x_row[:, None] + ia[None, :], mask=mask, other=0.0).to(c.dtype)
    bb = tl.load(x_ptr + x_row[:, None] + ib[None, :], mask=mask, other=0.0).to(c.dtype)
    out_ty = o_ptr.dtype.element_ty
    tl.store(o_ptr + o_row[:, None] + ia[None, :], (a * c - bb * s).to(out_ty), mask=mask)
    tl.store(o_ptr + o_row[:, None] + ib[None, :], (bb * c + a * s).to(out_ty), mask=mask)
    if COPY_TAIL:  # pass-through features of partial rotary
        jt = 2 * r + tl.arange(0, BLOCK_P)
        tmask = row_ok[:, None] & (jt[None, :] < D)
        tail = tl.load(x_ptr + x_row[:, None] + jt[None, :], mask=tmask, other=0.0)
        tl.store(o_ptr + o_row[:, None] + jt[None, :], tail, mask=tmask)


@triton.jit
def _rotary_qk_kernel(
    q_ptr, qo_ptr, k_ptr, ko_ptr, cos_ptr, sin_ptr, pos_ptr,
    n_q, n_k, Hq, Hk, T,
    sqb, sqh, sqt, sqob, sqoh, sqot,
    skb, skh, skt, skob, skoh, skot,
    scb, sch, sct, spb, spt, r, D,
    BLOCK_M: tl.constexpr, BLOCK_R: tl.constexpr, BLOCK_P: tl.constexpr, HAS_POS: tl.constexpr,
    INTERLEAVED: tl.constexpr, CONJ: tl.constexpr, COPY_TAIL: tl.constexpr,
):  # fmt: skip
    pid = tl.program_id(0)
    q_programs = tl.cdiv(n_q, BLOCK_M)
    if pid < q_programs:
        _rotate_rows(
            q_ptr, qo_ptr, cos_ptr, sin_ptr, pos_ptr, pid * BLOCK_M, n_q, Hq, T,
            sqb, sqh, sqt, sqob, sqoh, sqot, scb, sch, sct, spb, spt, r, D,
            BLOCK_M, BLOCK_R, BLOCK_P, HAS_POS, INTERLEAVED, CONJ, COPY_TAIL,
        )  # fmt: skip
    else:
        _rotate_rows(
            k_ptr, ko_ptr, cos_ptr, sin_ptr, pos_ptr, (pid - q_programs) * BLOCK_M, n_k, Hk, T,
            skb, skh, skt, skob, skoh, skot, scb, sch, sct, spb, spt, r, D,
            BLOCK_M, BLOCK_R, BLOCK_P, HAS_POS, INTERLEAVED, CONJ, COPY_TAIL,
        )  # fmt: skip


def _broadcast_strides(t: torch.Tensor) -> tuple[int, int, int]:
    """Strides of ``Bc, Hc, Tc`` of cos ``[..., Tc, r]`` right-aligned to ``[B, H, T, D]``; 0 if absent or size 1."""
    nd = t.dim()

    def stride(from_end: int) -> int:
        i = nd - 1 - from_end
        return 0 if i < 0 or t.shape[i] == 1 else t.stride(i)

    return stride(3), stride(2), stride(1)


def rotary_qk(
    q: torch.Tensor,
    k: torch.Tensor,
    q_out: torch.Tensor,
    k_out: torch.Tensor,
    cos: torch.Tensor,
    sin: torch.Tensor,
    positions: torch.Tensor | None,
    interleaved: bool,
    conj: bool,
) -> None:
    """Launch the kernel: q -> q_out, k -> k_out (outputs may be the inputs)."""
    if q.device.type != "cuda" and os.environ.get("TRITON_INTERPRET") != "1":
        raise RuntimeError(
            f"the triton backend needs CUDA tensors (got {q.device}); for CPU tensors set TRITON_INTERPRET=1 "
            "before importing ropekit, or use the 'cpp' / 'auto' backend"
        )
    r, D = cos.shape[-1], q.shape[-1]
    n_q, n_k = q.shape[0] * q.shape[1] * q.shape[2], k.shape[0] * k.shape[1] * k.shape[2]
    if positions is not None:
        scb, sch, sct = 0, 0, cos.stride(0)
        spb, spt = (0 if positions.shape[0] == 1 else positions.stride(0)), positions.stride(1)
        pos = positions
    else:
        scb, sch, sct = _broadcast_strides(cos)
        spb, spt, pos = 0, 0, cos  # unused pointer
    grid = (triton.cdiv(n_q, _BLOCK_M) + triton.cdiv(n_k, _BLOCK_M),)
    if grid[0] == 0:
        return
    _rotary_qk_kernel[grid](
        q, q_out, k, k_out, cos, sin, pos,
        n_q, n_k, q.shape[1], k.shape[1], q.shape[2],
        *q.stride()[:3], *q_out.stride()[:3], *k.stride()[:3], *k_out.stride()[:3],
        scb, sch, sct, spb, spt, r, D,
        BLOCK_M=_BLOCK_M,
        BLOCK_R=triton.next_power_of_2(r),
        BLOCK_P=triton.next_power_of_2(max(D - 2 * r, 1)),
        HAS_POS=positions is not None,
        INTERLEAVED=interleaved,
        CONJ=conj,
        COPY_TAIL=(2 * r < D) and (q.data_ptr() != q_out.data_ptr()),
    )  # fmt: skip
