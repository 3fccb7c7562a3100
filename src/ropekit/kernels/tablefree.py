"""Exact angles inside the kernel: the fused ``rope_cos_sin`` and the table-free rotation.

Legend: ``positions: [N]`` (cos/sin) or ``[Bp, T]`` (rotation, ``Bp`` 1 or B) int64; ``inv_freq: [r]`` float;
``q: [B, Hq, T, D]``, ``k: [B, Hk, T, D]`` 4-D views (any strides, unit stride on D); ``cst: [4, r]`` float64: the
digit constants of :func:`ropekit.angles.exact_angle_constants` and the frequencies (:func:`constants`).

Both compute the angle of each (position, pair) with the digit-split reduction of
:func:`ropekit.angles.exact_position_angles` (valid for every int64 position) and its sine and cosine in one C++
pass (``rotary_cpu.cpp``, "Exact angles and sin/cos in one pass"); the rotation does it once per token and
reuses it for all heads of q and k, so no ``[T, r]`` table is ever stored. The pure-torch form (the reference and
the fallback: ``exact_position_angles`` then ``torch.cos``/``torch.sin`` and :func:`~ropekit.kernels.ops.rotate_torch`)
runs when the C++ kernel is unavailable, on other devices, for float64 inputs and with ``use_backend("reference")``
or ``"eager"``.

- ``ropekit::rotary_qk_angles(q, k, positions, cst, ...) -> (q_out, k_out)``: out of place, differentiable in q and
  k; backward is the same op with ``conj`` flipped (rotation by minus the angle), saving only positions and cst.
"""

from __future__ import annotations

from typing import Any

import torch

from ropekit.angles import exact_angle_constants, exact_position_angles, exceeds_exact_range, position_angles
from ropekit.kernels import cpu
from ropekit.kernels.ops import no_rows, rotate_torch

__all__ = [
    "RotaryQKAngles",
    "constants",
    "cos_sin",
    "cos_sin_torch",
    "rotary_qk_angles",
    "rotate",
    "run_angles",
    "torch_angles",
]


def constants(inv_freq: torch.Tensor) -> torch.Tensor:
    """``[4, r]`` float64 CPU: rows ``(2**(21 i) f) mod 2 pi`` for i = 0, 1, 2, then f (the kernel's ``cst``)."""
    return torch.cat([exact_angle_constants(inv_freq), inv_freq.detach().to("cpu", torch.float64)[None]])


def torch_angles(inv_freq: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
    """Pure-torch angles ``[..., r]`` float32 as ``rope_angles`` forms them (digit split from 2**29 on)."""
    if exceeds_exact_range(positions):
        return exact_position_angles(inv_freq, positions)
    return position_angles(inv_freq, positions)


def cos_sin_torch(inv_freq: torch.Tensor, positions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Reference: :func:`torch_angles` then cos/sin. ``inv_freq: [r]``, ``positions: [...]`` -> ``[..., r]``."""
    angles = torch_angles(inv_freq, positions)
    return torch.cos(angles), torch.sin(angles)


def cos_sin(inv_freq: torch.Tensor, positions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor] | None:
    """Fused C++ cos/sin ``[*positions.shape, r]`` float32 of CPU integer positions; None when it cannot run."""
    if positions.device.type != "cpu" or inv_freq.device.type != "cpu":
        return None
    module = cpu.load()
    if module is None:
        return None
    flat = positions.reshape(-1).to(torch.int64)
    cos, sin = module.rope_cos_sin(flat, constants(inv_freq))
    r = inv_freq.numel()
    return cos.view(*positions.shape, r), sin.view(*positions.shape, r)


def _torch_rows(
    x: torch.Tensor, positions: torch.Tensor, inv_freq: torch.Tensor, interleaved: bool, conj: bool, offset: int
) -> torch.Tensor:
    """Pure-torch table-free form: ``x: [B, H, T, D]``, ``positions: [Bp, T]`` -> rotated ``x``."""
    angles = torch_angles(inv_freq, positions).to(x.device)  # [Bp, T, r]
    acc = torch.float64 if x.dtype == torch.float64 else torch.float32
    cos, sin = torch.cos(angles).to(acc)[:, None], torch.sin(angles).to(acc)[:, None]  # [Bp, 1, T, r]
    return rotate_torch(x, cos, sin, None, interleaved, conj, offset)


def run_angles(
    backend: str,
    q: torch.Tensor,
    k: torch.Tensor,
    q_out: torch.Tensor,
    k_out: torch.Tensor,
    positions: torch.Tensor,
    inv_freq: torch.Tensor,
    interleaved: bool,
    conj: bool,
    offset: int = 0,
) -> None:
    """Rotate q into q_out and k into k_out by the exact angles of ``positions`` (outputs are new tensors)."""
    r = inv_freq.numel()
    use_cpp = (
        backend in ("auto", "cpp")
        and q.device.type == "cpu"
        and q.dtype in (torch.float32, torch.bfloat16, torch.float16)
        and r <= 1024
    )
    module = cpu.load() if use_cpp else None
    if module is None:
        for x, out in ((q, q_out), (k, k_out)):
            if x.numel():
                out.copy_(_torch_rows(x, positions, inv_freq, interleaved, conj, offset))
        return
    r2 = 2 * r
    if offset:
        for x, out in ((q, q_out), (k, k_out)):
            if x.numel():
                out[..., :offset].copy_(x[..., :offset])
                out[..., offset + r2 :].copy_(x[..., offset + r2 :])
        q, q_out, k, k_out = (t[..., offset : offset + r2] for t in (q, q_out, k, k_out))
    stream_min_bytes = cpu.STREAM_MIN_BYTES.get(q.dtype, -1)
    module.rotary_qk_angles(q, k, q_out, k_out, positions, constants(inv_freq), interleaved, conj, stream_min_bytes)


@torch.library.custom_op("ropekit::rotary_qk_angles", mutates_args=())
def rotary_qk_angles(
    q: torch.Tensor,
    k: torch.Tensor,
    positions: torch.Tensor,
    inv_freq: torch.Tensor,
    interleaved: bool,
    conj: bool,
    offset: int,
    backend: str,
) -> tuple[torch.Tensor, torch.Tensor]:
    q_out, k_out = torch.empty_like(q), torch.empty_like(k)
    run_angles(backend, q, k, q_out, k_out, positions, inv_freq, interleaved, conj, offset)
    return q_out, k_out


@rotary_qk_angles.register_fake
def _(
    q: torch.Tensor,
    k: torch.Tensor,
    positions: torch.Tensor,
    inv_freq: torch.Tensor,
    interleaved: bool,
    conj: bool,
    offset: int,
    backend: str,
) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.empty_like(q), torch.empty_like(k)


def _setup_context(ctx: Any, inputs: tuple[Any, ...], output: Any) -> None:
    _, _, positions, inv_freq, interleaved, conj, offset, backend = inputs
    ctx.save_for_backward(positions, inv_freq)
    ctx.flags = (interleaved, conj, offset, backend)


def _grad(g: torch.Tensor) -> torch.Tensor:
    return g if g.stride(-1) == 1 else g.contiguous()


def _backward(ctx: Any, grad_q: torch.Tensor, grad_k: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
    positions, inv_freq = ctx.saved_tensors
    interleaved, conj, offset, backend = ctx.flags
    gq, gk = rotary_qk_angles(_grad(grad_q), _grad(grad_k), positions, inv_freq, interleaved, not conj, offset, backend)
    return gq, gk, None, None, None, None, None, None


rotary_qk_angles.register_autograd(_backward, setup_context=_setup_context)


class RotaryQKAngles(torch.autograd.Function):
    """Eager autograd for the table-free rotation (same contract as ``ropekit::rotary_qk_angles``)."""

    @staticmethod
    def forward(
        ctx: Any,
        q: torch.Tensor,
        k: torch.Tensor,
        positions: torch.Tensor,
        inv_freq: torch.Tensor,
        interleaved: bool,
        conj: bool,
        offset: int,
        backend: str,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        q_out, k_out = torch.empty_like(q), torch.empty_like(k)
        run_angles(backend, q, k, q_out, k_out, positions, inv_freq, interleaved, conj, offset)
        ctx.save_for_backward(positions, inv_freq)
        ctx.flags = (interleaved, conj, offset, backend)
        return q_out, k_out

    @staticmethod
    def backward(ctx: Any, grad_q: torch.Tensor, grad_k: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        positions, inv_freq = ctx.saved_tensors
        interleaved, conj, offset, backend = ctx.flags
        grad_q, grad_k = _grad(grad_q), _grad(grad_k)
        if torch.is_grad_enabled():
            gq, gk = _apply(grad_q, grad_k, positions, inv_freq, interleaved, not conj, offset, backend)
        else:
            gq, gk = torch.empty_like(grad_q), torch.empty_like(grad_k)
            run_angles(backend, grad_q, grad_k, gq, gk, positions, inv_freq, interleaved, not conj, offset)
        return gq, gk, None, None, None, None, None, None


def _apply(
    q: torch.Tensor,
    k: torch.Tensor,
    positions: torch.Tensor,
    inv_freq: torch.Tensor,
    interleaved: bool,
    conj: bool,
    offset: int,
    backend: str,
) -> tuple[torch.Tensor, torch.Tensor]:
    out: tuple[torch.Tensor, torch.Tensor] = RotaryQKAngles.apply(  # type: ignore[no-untyped-call]  # torch: untyped
        q, k, positions, inv_freq, interleaved, conj, offset, backend
    )
    return out


def rotate(
    q: torch.Tensor,
    k: torch.Tensor | None,
    positions: torch.Tensor,
    inv_freq: torch.Tensor,
    *,
    interleaved: bool,
    conj: bool,
    offset: int,
    backend: str,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Dispatch: ``q, k: [B, H, T, D]`` (k None: q only), ``positions: [Bp, T]`` int64 -> rotated (q, k)."""
    k4 = no_rows(q) if k is None else k
    needs_grad = torch.is_grad_enabled() and (q.requires_grad or k4.requires_grad)
    if torch.compiler.is_compiling():
        q_out, k_out = rotary_qk_angles(q, k4, positions, inv_freq, interleaved, conj, offset, backend)
    elif needs_grad:
        q_out, k_out = _apply(q, k4, positions, inv_freq, interleaved, conj, offset, backend)
    else:
        q_out, k_out = torch.empty_like(q), torch.empty_like(k4)
        run_angles(backend, q, k4, q_out, k_out, positions, inv_freq, interleaved, conj, offset)
    return q_out, (None if k is None else k_out)
