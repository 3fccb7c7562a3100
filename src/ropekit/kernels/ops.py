"""The fused rotary ops as ``torch.library`` custom ops, with a backward that saves no activation.

Legend: ``q: [B, Hq, T, D]``, ``k: [B, Hk, T, D]`` (4-D views prepared by :mod:`ropekit.kernels.dispatch`),
``r = rotary_dim / 2``; without positions ``cos, sin: [Bc, Hc, Tc, r]`` (or fewer dims, right-aligned; each
leading size 1 or full); with
``positions: [Bp, T]`` int64 (``Bp`` 1 or B) they are tables ``[L, r]``. cos/sin are float32 (float64 for
float64 inputs). ``conj=True`` rotates by minus the angle.

Ops (opaque to ``torch.compile``, so ``fullgraph=True`` holds):
- ``ropekit::rotary_qk(q, k, ...) -> (q_out, k_out)``: out of place, differentiable in q and k. The backward
  is the same op with ``conj`` flipped; only cos, sin and positions are saved.
- ``ropekit::rotary_qk_(q, k, ...)``: in place (mutates q and k), not differentiable.
The body picks the implementation from ``backend`` at run time (see :mod:`ropekit.kernels.backend`).
Eager autograd uses :class:`RotaryQK`, a plain ``autograd.Function`` with the same forward and backward and less
per-call overhead (calling the custom op costs 12 us before any work; the Function a few); under
``torch.compile`` the custom op is used so the graph stays whole.
"""

from __future__ import annotations

import torch

from ropekit.kernels import cpu

__all__ = ["RotaryQK", "rotary_qk", "rotary_qk_", "run"]


def _eager(x, out, cos, sin, positions, interleaved: bool, conj: bool) -> None:
    """Pure-torch fallback with the kernel's contract (reference math, written into ``out``)."""
    from ropekit.reference import apply_rotary_reference

    if x.numel() == 0:
        return
    if positions is not None:
        cos, sin = cos[positions].unsqueeze(1), sin[positions].unsqueeze(1)  # [Bp, 1, T, r]
    res = apply_rotary_reference(x, cos, -sin if conj else sin, interleaved=interleaved)
    out.copy_(res)


def run(backend: str, q, k, q_out, k_out, cos, sin, positions, interleaved: bool, conj: bool) -> None:
    """Rotate q into q_out and k into k_out (outputs may be the inputs) with the named backend."""
    if backend == "auto":
        backend = "triton" if q.device.type == "cuda" else "cpp"
    if backend == "triton":
        from ropekit.kernels import triton_rotary

        triton_rotary.rotary_qk(q, k, q_out, k_out, cos, sin, positions, interleaved, conj)
        return
    if backend == "cpp" and q.device.type == "cpu":
        module = cpu.load()
        if module is not None:
            stream_min_bytes = cpu.STREAM_MIN_BYTES.get(q.dtype, -1)  # -1: regular stores
            module.rotary_qk(q, k, q_out, k_out, cos, sin, positions, interleaved, conj, stream_min_bytes)
            return
    for x, out in ((q, q_out), (k, k_out)):
        _eager(x, out, cos, sin, positions, interleaved, conj)


@torch.library.custom_op("ropekit::rotary_qk", mutates_args=())
def rotary_qk(
    q: torch.Tensor,
    k: torch.Tensor,
    cos: torch.Tensor,
    sin: torch.Tensor,
    positions: torch.Tensor | None,
    interleaved: bool,
    conj: bool,
    backend: str,
) -> tuple[torch.Tensor, torch.Tensor]:
    q_out, k_out = torch.empty_like(q), torch.empty_like(k)
    run(backend, q, k, q_out, k_out, cos, sin, positions, interleaved, conj)
    return q_out, k_out


@rotary_qk.register_fake
def _(q, k, cos, sin, positions, interleaved, conj, backend):
    return torch.empty_like(q), torch.empty_like(k)


def _setup_context(ctx, inputs, output) -> None:
    _, _, cos, sin, positions, interleaved, conj, backend = inputs
    ctx.save_for_backward(cos, sin, positions)  # tables only: the rotation's backward needs no activation
    ctx.flags = (interleaved, conj, backend)


def _backward(ctx, grad_q, grad_k):
    cos, sin, positions = ctx.saved_tensors
    interleaved, conj, backend = ctx.flags
    gq, gk = rotary_qk(grad_q.contiguous(), grad_k.contiguous(), cos, sin, positions, interleaved, not conj, backend)
    return gq, gk, None, None, None, None, None, None


rotary_qk.register_autograd(_backward, setup_context=_setup_context)


@torch.library.custom_op("ropekit::rotary_qk_", mutates_args=("q", "k"))
def rotary_qk_(
    q: torch.Tensor,
    k: torch.Tensor,
    cos: torch.Tensor,
    sin: torch.Tensor,
    positions: torch.Tensor | None,
    interleaved: bool,
    conj: bool,
    backend: str,
) -> None:
    run(backend, q, k, q, k, cos, sin, positions, interleaved, conj)


@rotary_qk_.register_fake
def _(q, k, cos, sin, positions, interleaved, conj, backend):
    return None


class RotaryQK(torch.autograd.Function):
    """Eager autograd for the fused rotation (same contract as ``ropekit::rotary_qk``)."""

    @staticmethod
    def forward(ctx, q, k, cos, sin, positions, interleaved: bool, conj: bool, backend: str):
        q_out, k_out = torch.empty_like(q), torch.empty_like(k)
        run(backend, q, k, q_out, k_out, cos, sin, positions, interleaved, conj)
        ctx.save_for_backward(cos, sin, positions)  # tables only
        ctx.flags = (interleaved, conj, backend)
        return q_out, k_out

    @staticmethod
    def backward(ctx, grad_q, grad_k):
        cos, sin, positions = ctx.saved_tensors
        interleaved, conj, backend = ctx.flags
        grad_q, grad_k = grad_q.contiguous(), grad_k.contiguous()
        if torch.is_grad_enabled():  # create_graph=True: the backward must itself be differentiable
            gq, gk = RotaryQK.apply(grad_q, grad_k, cos, sin, positions, interleaved, not conj, backend)
        else:  # the usual backward: the same body called directly, no second Function node
            gq, gk = torch.empty_like(grad_q), torch.empty_like(grad_k)
            run(backend, grad_q, grad_k, gq, gk, cos, sin, positions, interleaved, not conj)
        return gq, gk, None, None, None, None, None, None
