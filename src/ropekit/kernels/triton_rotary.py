"""The Triton backend: one launch rotates the rows of q and then k (forward, or backward with ``conj``).

Legend: ``q: [B, Hq, T, D]``, ``k: [B, Hk, T, D]`` (unit stride on D), ``r = rotary_dim / 2``; without positions
``cos, sin: [Bc, Hc, Tc, r]`` (or fewer leading dims, right-aligned; size-1 dims broadcast), with
``positions: [Bp, T]`` int64 tables ``[L, r]``.
cos/sin are float32 (float64 for float64 inputs) and set the compute type: bf16/fp16 rows are widened in
registers and narrowed once on store.

Runs on CUDA tensors, or on CPU tensors under ``TRITON_INTERPRET=1`` (how CI tests it; the variable must be set
before this module is imported). It is called from the body of the ``ropekit::rotary_qk`` custom ops, which
``torch.compile`` treats as opaque, so compiled graphs stay whole. GPU figures: ``docs/kernels.md``, "On a GPU".
"""

from __future__ import annotations

import os

import torch
import triton
import triton.language as tl

__all__ = ["rotary_qk", "rotary_qk_angles"]

_BLOCK_M = int(os.environ.get("ROPEKIT_TRITON_BLOCK_M", "16"))  # rows (tokens x heads) per program
_NUM_WARPS = int(os.environ.get("ROPEKIT_TRITON_WARPS", "4"))
# Table-free kernel: tokens per program and warps. H200, 2026-12-04 (benchmarks/gpu_check.py --sweep, 1x64/8x32768x128
# bf16 forward): BLOCK_T 2 with 1 warp was the fastest of 20 settings, 1.13x the copy floor (16 and 4 warps: 1.21x).
_BLOCK_T = int(os.environ.get("ROPEKIT_TRITON_BLOCK_T", "2"))
_NUM_WARPS_T = int(os.environ.get("ROPEKIT_TRITON_WARPS_T", "1"))
# Opt-in (ROPEKIT_TRITON_TOKEN_PROGRAMS=1): tables without a head axis ([T, r], [B, 1, T, r], [L, r] + positions)
# run one program per BLOCK_TT tokens over all heads, as the table-free kernel does, instead of the row kernel
# (which reloads cos/sin per head: 1.31-1.41x the floor in that sweep). Tested under TRITON_INTERPRET=1 only: no GPU
# has run it yet, so it is not the default.
_TOKEN_PROGRAMS = os.environ.get("ROPEKIT_TRITON_TOKEN_PROGRAMS", "0") == "1"
_BLOCK_TT = int(os.environ.get("ROPEKIT_TRITON_BLOCK_TT", "2"))
_NUM_WARPS_TT = int(os.environ.get("ROPEKIT_TRITON_WARPS_TT", "1"))


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
    if _TOKEN_PROGRAMS and sch == 0 and q.shape[0] * q.shape[2]:  # one cos/sin row per token: reuse across heads
        B, T = q.shape[0], q.shape[2]
        _rotary_qk_tokens_kernel[(triton.cdiv(T, _BLOCK_TT), B)](
            q, q_out, k, k_out, cos, sin, pos,
            q.shape[1], k.shape[1] if n_k else 0, T,
            *q.stride()[:3], *q_out.stride()[:3], *k.stride()[:3], *k_out.stride()[:3],
            scb, sct, spb, spt, r, D,
            BLOCK_T=_BLOCK_TT,
            BLOCK_R=triton.next_power_of_2(r),
            BLOCK_P=triton.next_power_of_2(max(D - 2 * r, 1)),
            HAS_POS=positions is not None,
            INTERLEAVED=interleaved,
            CONJ=conj,
            COPY_TAIL=(2 * r < D) and (q.data_ptr() != q_out.data_ptr()),
            num_warps=_NUM_WARPS_TT,
        )  # fmt: skip
        return
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
        num_warps=_NUM_WARPS,
    )  # fmt: skip


# ---- Table-free: angles from positions inside the kernel -------------------------------------------------------
# One program takes BLOCK_T tokens of one batch row: it forms their angles once, with the digit split of
# ropekit.angles.exact_position_angles (p = d2 * 2**42 + d1 * 2**21 + d0, each d_i * c_i reduced in float64,
# c_i = (2**(21 i) f) mod 2 pi from exact_angle_constants), narrows them to float32 as rope_angles does, takes
# cos/sin of that float32 angle in float64 (rounded once to float32), and rotates every head of q and then k of
# those tokens with them. No [T, r] table exists in memory. The turn count is floor(x / 2 pi + 0.5): any integer
# count is an exact reduction step, so ties rounding either way change nothing beyond the float64 rounding.


@triton.jit
def _wrap64(a):
    return a - tl.floor(a * 0.15915494309189535 + 0.5) * 6.283185307179586


@triton.jit
def _rotate_token_rows(
    x_ptr, o_ptr, c, s, b, t, t_ok, j, H, sxb, sxh, sxt, sob, soh, sot, r, D,
    BLOCK_R: tl.constexpr, BLOCK_P: tl.constexpr, INTERLEAVED: tl.constexpr, COPY_TAIL: tl.constexpr,
):  # fmt: skip
    mask = t_ok[:, None] & (j[None, :] < r)  # [BLOCK_T, BLOCK_R]
    if INTERLEAVED:
        ia = 2 * j
        ib = 2 * j + 1
    else:
        ia = j
        ib = j + r
    out_ty = o_ptr.dtype.element_ty
    for h in range(0, H):
        x_row = b * sxb + h * sxh + t * sxt  # [BLOCK_T]
        o_row = b * sob + h * soh + t * sot
        a = tl.load(x_ptr + x_row[:, None] + ia[None, :], mask=mask, other=0.0).to(c.dtype)
        bb = tl.load(x_ptr + x_row[:, None] + ib[None, :], mask=mask, other=0.0).to(c.dtype)
        tl.store(o_ptr + o_row[:, None] + ia[None, :], (a * c - bb * s).to(out_ty), mask=mask)
        tl.store(o_ptr + o_row[:, None] + ib[None, :], (bb * c + a * s).to(out_ty), mask=mask)
        if COPY_TAIL:
            jt = 2 * r + tl.arange(0, BLOCK_P)
            tmask = t_ok[:, None] & (jt[None, :] < D)
            tail = tl.load(x_ptr + x_row[:, None] + jt[None, :], mask=tmask, other=0.0)
            tl.store(o_ptr + o_row[:, None] + jt[None, :], tail, mask=tmask)


@triton.jit
def _rotary_qk_angles_kernel(
    q_ptr, qo_ptr, k_ptr, ko_ptr, pos_ptr, cst_ptr,
    Hq, Hk, T,
    sqb, sqh, sqt, sqob, sqoh, sqot,
    skb, skh, skt, skob, skoh, skot,
    spb, spt, r, D, scale,
    BLOCK_T: tl.constexpr, BLOCK_R: tl.constexpr, BLOCK_P: tl.constexpr,
    INTERLEAVED: tl.constexpr, CONJ: tl.constexpr, COPY_TAIL: tl.constexpr,
):  # fmt: skip
    b = tl.program_id(1).to(tl.int64)
    t = tl.program_id(0).to(tl.int64) * BLOCK_T + tl.arange(0, BLOCK_T).to(tl.int64)  # [BLOCK_T]
    t_ok = t < T
    p = tl.load(pos_ptr + b * spb + t * spt, mask=t_ok, other=0)  # [BLOCK_T] int64
    j = tl.arange(0, BLOCK_R)
    jm = j < r
    c0 = tl.load(cst_ptr + j, mask=jm, other=0.0)[None, :]  # [1, BLOCK_R] float64
    c1 = tl.load(cst_ptr + r + j, mask=jm, other=0.0)[None, :]
    c2 = tl.load(cst_ptr + 2 * r + j, mask=jm, other=0.0)[None, :]
    d0 = (p & 0x1FFFFF).to(tl.float64)[:, None]  # [BLOCK_T, 1]
    d1 = ((p >> 21) & 0x1FFFFF).to(tl.float64)[:, None]
    d2 = (p >> 42).to(tl.float64)[:, None]  # arithmetic shift: the signed top digit
    angle = _wrap64(_wrap64(d0 * c0) + _wrap64(d1 * c1) + _wrap64(d2 * c2))  # [BLOCK_T, BLOCK_R]
    a32 = angle.to(tl.float32).to(tl.float64)  # rope_angles' float32 angle
    c = (tl.cos(a32) * scale).to(tl.float32)
    s = (tl.sin(a32) * scale).to(tl.float32)
    if CONJ:
        s = -s
    _rotate_token_rows(
        q_ptr, qo_ptr, c, s, b, t, t_ok, j, Hq, sqb, sqh, sqt, sqob, sqoh, sqot, r, D,
        BLOCK_R, BLOCK_P, INTERLEAVED, COPY_TAIL,
    )  # fmt: skip
    _rotate_token_rows(
        k_ptr, ko_ptr, c, s, b, t, t_ok, j, Hk, skb, skh, skt, skob, skoh, skot, r, D,
        BLOCK_R, BLOCK_P, INTERLEAVED, COPY_TAIL,
    )  # fmt: skip


@triton.jit
def _rotary_qk_tokens_kernel(
    q_ptr, qo_ptr, k_ptr, ko_ptr, cos_ptr, sin_ptr, pos_ptr,
    Hq, Hk, T,
    sqb, sqh, sqt, sqob, sqoh, sqot,
    skb, skh, skt, skob, skoh, skot,
    scb, sct, spb, spt, r, D,
    BLOCK_T: tl.constexpr, BLOCK_R: tl.constexpr, BLOCK_P: tl.constexpr, HAS_POS: tl.constexpr,
    INTERLEAVED: tl.constexpr, CONJ: tl.constexpr, COPY_TAIL: tl.constexpr,
):  # fmt: skip
    """Tables whose rows do not depend on the head: one program loads the cos/sin of BLOCK_T tokens once and
    rotates every head of q and k of those tokens with them (the row kernel reloads them per head)."""
    b = tl.program_id(1).to(tl.int64)
    t = tl.program_id(0).to(tl.int64) * BLOCK_T + tl.arange(0, BLOCK_T).to(tl.int64)  # [BLOCK_T]
    t_ok = t < T
    if HAS_POS:
        p = tl.load(pos_ptr + b * spb + t * spt, mask=t_ok, other=0)
        c_row = p * sct
    else:
        c_row = b * scb + t * sct
    j = tl.arange(0, BLOCK_R)
    mask = t_ok[:, None] & (j[None, :] < r)
    c = tl.load(cos_ptr + c_row[:, None] + j[None, :], mask=mask, other=0.0)
    s = tl.load(sin_ptr + c_row[:, None] + j[None, :], mask=mask, other=0.0)
    if CONJ:
        s = -s
    _rotate_token_rows(
        q_ptr, qo_ptr, c, s, b, t, t_ok, j, Hq, sqb, sqh, sqt, sqob, sqoh, sqot, r, D,
        BLOCK_R, BLOCK_P, INTERLEAVED, COPY_TAIL,
    )  # fmt: skip
    _rotate_token_rows(
        k_ptr, ko_ptr, c, s, b, t, t_ok, j, Hk, skb, skh, skt, skob, skoh, skot, r, D,
        BLOCK_R, BLOCK_P, INTERLEAVED, COPY_TAIL,
    )  # fmt: skip


def rotary_qk_angles(
    q: torch.Tensor,
    k: torch.Tensor,
    q_out: torch.Tensor,
    k_out: torch.Tensor,
    positions: torch.Tensor,
    cst: torch.Tensor,
    scale: float,
    interleaved: bool,
    conj: bool,
) -> None:
    """Table-free launch: ``positions: [Bp, T]`` int64, ``cst: [3 or 4, r]`` float64 digit constants on q's device."""
    if q.device.type != "cuda" and os.environ.get("TRITON_INTERPRET") != "1":
        raise RuntimeError(
            f"the triton backend needs CUDA tensors (got {q.device}); for CPU tensors set TRITON_INTERPRET=1 "
            "before importing ropekit, or use the 'cpp' / 'auto' backend"
        )
    r, D = cst.shape[-1], q.shape[-1]
    B, T = q.shape[0], q.shape[2]
    if B * T == 0:
        return
    spb = 0 if positions.shape[0] == 1 else positions.stride(0)
    grid = (triton.cdiv(T, _BLOCK_T), B)
    _rotary_qk_angles_kernel[grid](
        q, q_out, k, k_out, positions, cst,
        q.shape[1], k.shape[1] if k.shape[2] else 0, T,
        *q.stride()[:3], *q_out.stride()[:3], *k.stride()[:3], *k_out.stride()[:3],
        spb, positions.stride(1), r, D, float(scale),
        BLOCK_T=_BLOCK_T,
        BLOCK_R=triton.next_power_of_2(r),
        BLOCK_P=triton.next_power_of_2(max(D - 2 * r, 1)),
        INTERLEAVED=interleaved,
        CONJ=conj,
        COPY_TAIL=(2 * r < D) and (q.data_ptr() != q_out.data_ptr()),
        num_warps=_NUM_WARPS_T,
    )  # fmt: skip
