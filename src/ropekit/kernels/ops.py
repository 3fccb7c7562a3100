"""The fused rotary op as a ``torch.library`` custom op, with backwards that save no activation.

Legend: ``q: [B, Hq, T, D]``, ``k: [B, Hk, T, D]`` (4-D views prepared by :mod:`ropekit.kernels.dispatch`, any
strides, unit stride on D), ``r = rotary_dim / 2``; without positions ``cos, sin: [Bc, Hc, Tc, r]`` (or fewer
dims, right-aligned; each leading size 1 or full); with ``positions: [Bp, T]`` int64 (``Bp`` 1 or B) they are
tables ``[L, r]`` (any row stride, unit stride in a row). cos/sin are float32 (float64 for float64 inputs).
``conj=True`` rotates by minus the angle. ``offset``: the rotated features are ``[offset, offset + 2r)``; the
others pass through (out of place) or are left alone (in place).

- ``ropekit::rotary_qk(q, k, ...) -> (q_out, k_out)``: out of place, differentiable in q and k (opaque to
  ``torch.compile``, so ``fullgraph=True`` holds). The backward is the same op with ``conj`` flipped; only cos,
  sin and positions are saved.
- :class:`RotaryQK`: the same forward and backward as a plain ``autograd.Function`` for eager autograd (calling
  the custom op costs 12 us before any work; the Function a few).
- :class:`RotaryInplace`: eager in-place rotation of a tensor that requires grad (``mark_dirty``); its backward
  rotates the incoming gradient by minus the angle into a new tensor (never over the incoming buffer).

Under ``torch.compile`` in-place calls run ``ropekit::rotary_qk`` and copy the result back (see
``docs/kernels.md``, "In place under torch.compile"): a mutating custom op on two strided views of one buffer was
miscompiled. The body picks the implementation from ``backend`` (a :class:`~ropekit.kernels.backend.Backend`
value, passed as a string) at run time.
"""

from __future__ import annotations

from typing import Any

import torch

from ropekit.kernels import cpu

__all__ = [
    "RotaryInplace",
    "RotaryQK",
    "rotary_inplace_eager",
    "rotary_qk",
    "rotary_qk_eager",
    "rotate_torch",
    "run",
]


def _gather(cos: torch.Tensor, positions: torch.Tensor | None, x_dim: int) -> torch.Tensor:
    """Table rows: ``[L, r]`` + positions ``[T]`` / ``[B, T]`` -> ``[T, r]`` / ``[B, 1, ..., 1, T, r]``."""
    if positions is None:
        return cos
    rows = cos[positions]  # [T, r] or [B, T, r]
    if positions.dim() == 2:
        rows = rows.view(rows.shape[0], *([1] * (x_dim - 3)), *rows.shape[1:])  # [B, 1.., T, r]
    return rows


def rotate_torch(
    x: torch.Tensor,
    cos: torch.Tensor,
    sin: torch.Tensor,
    positions: torch.Tensor | None,
    interleaved: bool,
    conj: bool = False,
    offset: int = 0,
) -> torch.Tensor:
    """The one pure-torch form of the fused op (reference math, plain autograd): a new tensor like ``x``.

    ``x: [..., T, D]``; cos/sin broadcast over x, or ``[L, r]`` tables with ``positions: [T]`` / ``[B, T]``
    (B = x's first dim). It is the eager backend, the reference backend and the fallback of shapes the kernels do
    not take.
    """
    from ropekit.reference import apply_rotary_reference

    cos, sin = _gather(cos, positions, x.dim()), _gather(sin, positions, x.dim())
    if conj:
        sin = -sin
    if offset == 0:
        return apply_rotary_reference(x, cos, sin, interleaved=interleaved)
    r2 = 2 * cos.shape[-1]
    mid = apply_rotary_reference(x[..., offset : offset + r2], cos, sin, interleaved=interleaved)
    return torch.cat((x[..., :offset], mid, x[..., offset + r2 :]), dim=-1)


def run(
    backend: str,
    q: torch.Tensor,
    k: torch.Tensor,
    q_out: torch.Tensor,
    k_out: torch.Tensor,
    cos: torch.Tensor,
    sin: torch.Tensor,
    positions: torch.Tensor | None,
    interleaved: bool,
    conj: bool,
    offset: int = 0,
) -> None:
    """Rotate q into q_out and k into k_out (outputs may be the inputs) with the named backend."""
    r2 = 2 * cos.shape[-1]
    if offset:  # rotate the slice [offset, offset + 2r); the features around it are copied (out of place)
        for x, out in ((q, q_out), (k, k_out)):
            if out is not x and x.numel():
                out[..., :offset].copy_(x[..., :offset])
                out[..., offset + r2 :].copy_(x[..., offset + r2 :])
        q, q_out, k, k_out = (t[..., offset : offset + r2] for t in (q, q_out, k, k_out))
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
        if x.numel():
            out.copy_(rotate_torch(x, cos, sin, positions, interleaved, conj))


@torch.library.custom_op("ropekit::rotary_qk", mutates_args=())
def rotary_qk(
    q: torch.Tensor,
    k: torch.Tensor,
    cos: torch.Tensor,
    sin: torch.Tensor,
    positions: torch.Tensor | None,
    interleaved: bool,
    conj: bool,
    offset: int,
    backend: str,
) -> tuple[torch.Tensor, torch.Tensor]:
    q_out, k_out = torch.empty_like(q), torch.empty_like(k)
    run(backend, q, k, q_out, k_out, cos, sin, positions, interleaved, conj, offset)
    return q_out, k_out


@rotary_qk.register_fake
def _(
    q: torch.Tensor,
    k: torch.Tensor,
    cos: torch.Tensor,
    sin: torch.Tensor,
    positions: torch.Tensor | None,
    interleaved: bool,
    conj: bool,
    offset: int,
    backend: str,
) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.empty_like(q), torch.empty_like(k)


def _setup_context(ctx: Any, inputs: tuple[Any, ...], output: Any) -> None:
    _, _, cos, sin, positions, interleaved, conj, offset, backend = inputs
    ctx.save_for_backward(cos, sin, positions)  # tables only: the rotation's backward needs no activation
    ctx.flags = (interleaved, conj, offset, backend)


def _backward(ctx: Any, grad_q: torch.Tensor, grad_k: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
    cos, sin, positions = ctx.saved_tensors
    interleaved, conj, offset, backend = ctx.flags
    gq, gk = rotary_qk(_rows(grad_q), _rows(grad_k), cos, sin, positions, interleaved, not conj, offset, backend)
    return gq, gk, None, None, None, None, None, None, None


rotary_qk.register_autograd(_backward, setup_context=_setup_context)


class RotaryQK(torch.autograd.Function):
    """Eager autograd for the fused rotation (same contract as ``ropekit::rotary_qk``)."""

    @staticmethod
    def forward(
        ctx: Any,
        q: torch.Tensor,
        k: torch.Tensor,
        cos: torch.Tensor,
        sin: torch.Tensor,
        positions: torch.Tensor | None,
        interleaved: bool,
        conj: bool,
        offset: int,
        backend: str,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        q_out, k_out = torch.empty_like(q), torch.empty_like(k)
        run(backend, q, k, q_out, k_out, cos, sin, positions, interleaved, conj, offset)
        ctx.save_for_backward(cos, sin, positions)  # tables only
        ctx.flags = (interleaved, conj, offset, backend)
        return q_out, k_out

    @staticmethod
    def backward(ctx: Any, grad_q: torch.Tensor, grad_k: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        cos, sin, positions = ctx.saved_tensors
        interleaved, conj, offset, backend = ctx.flags
        grad_q, grad_k = _rows(grad_q), _rows(grad_k)
        if torch.is_grad_enabled():  # create_graph=True: the backward must itself be differentiable
            gq, gk = rotary_qk_eager(grad_q, grad_k, cos, sin, positions, interleaved, not conj, offset, backend)
        else:  # the usual backward: the same body called directly, no second Function node
            gq, gk = torch.empty_like(grad_q), torch.empty_like(grad_k)
            run(backend, grad_q, grad_k, gq, gk, cos, sin, positions, interleaved, not conj, offset)
        return gq, gk, None, None, None, None, None, None, None


class RotaryInplace(torch.autograd.Function):
    """In-place rotation of one tensor inside autograd (eager): ``x`` is marked dirty and returned.

    One tensor per Function: autograd refuses a Function that modifies a view in place and returns more than one
    tensor, and q and k are usually views (of a packed projection, or of the transposes that make the
    ``[B, H, T, D]`` view). The backward rotates the incoming gradient by minus the angle into a new tensor (the
    incoming buffer may be shared with another consumer, so it is never overwritten). Nothing but the tables is
    saved.
    """

    @staticmethod
    def forward(
        ctx: Any,
        x: torch.Tensor,
        cos: torch.Tensor,
        sin: torch.Tensor,
        positions: torch.Tensor | None,
        interleaved: bool,
        conj: bool,
        offset: int,
        backend: str,
    ) -> torch.Tensor:
        run(backend, x, no_rows(x), x, no_rows(x), cos, sin, positions, interleaved, conj, offset)
        ctx.mark_dirty(x)
        ctx.save_for_backward(cos, sin, positions)
        ctx.flags = (interleaved, conj, offset, backend)
        return x

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        cos, sin, positions = ctx.saved_tensors
        interleaved, conj, offset, backend = ctx.flags
        if torch.is_grad_enabled():  # create_graph=True: differentiable, out of place
            g, _ = rotary_qk_eager(_rows(grad), no_rows(grad), cos, sin, positions, interleaved, not conj,
                                  offset, backend)  # fmt: skip
            return g, None, None, None, None, None, None, None
        # Out of place on purpose: autograd may hand the same gradient buffer to another consumer (``q + x`` gives
        # x's AccumulateGrad the very tensor passed here), which an in-place rotation would corrupt (tested).
        grad = _rows(grad)
        g = torch.empty_like(grad)
        run(backend, grad, no_rows(grad), g, no_rows(g), cos, sin, positions, interleaved, not conj, offset)
        return g, None, None, None, None, None, None, None


def rotary_qk_eager(
    q: torch.Tensor,
    k: torch.Tensor,
    cos: torch.Tensor,
    sin: torch.Tensor,
    positions: torch.Tensor | None,
    interleaved: bool,
    conj: bool,
    offset: int,
    backend: str,
) -> tuple[torch.Tensor, torch.Tensor]:
    """:class:`RotaryQK` applied (eager autograd, out of place): ``(q_out, k_out)``."""
    out: tuple[torch.Tensor, torch.Tensor] = RotaryQK.apply(  # type: ignore[no-untyped-call]  # torch: untyped
        q, k, cos, sin, positions, interleaved, conj, offset, backend
    )
    return out


def rotary_inplace_eager(
    x: torch.Tensor,
    cos: torch.Tensor,
    sin: torch.Tensor,
    positions: torch.Tensor | None,
    interleaved: bool,
    conj: bool,
    offset: int,
    backend: str,
) -> torch.Tensor:
    """:class:`RotaryInplace` applied (eager autograd): ``x``, rotated in place and marked dirty."""
    out: torch.Tensor = RotaryInplace.apply(  # type: ignore[no-untyped-call]  # torch: Function.apply is untyped
        x, cos, sin, positions, interleaved, conj, offset, backend
    )
    return out


def _rows(g: torch.Tensor) -> torch.Tensor:
    """A gradient as the kernels take it: any strides with unit stride on D (a [B, T, H, D] gradient of a
    ``layout="bthd"`` output is read where it is; ``contiguous()`` would copy it to [B, H, T, D] order)."""
    return g if g.stride(-1) == 1 else g.contiguous()


def no_rows(x: torch.Tensor) -> torch.Tensor:
    """A ``[1, 1, 0, D]`` tensor: the k of a q-only call."""
    return x.new_empty(1, 1, 0, x.shape[-1])
