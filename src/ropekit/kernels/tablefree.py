"""Table-free rotation: the angles of each (token, pair) are formed inside the kernel, no ``[T, r]`` table exists.

Legend: ``q: [B, Hq, T, D]``, ``k: [B, Hk, T, D]`` 4-D views (any strides, unit stride on D), ``positions:
[Bp, T]`` int64 (``Bp`` 1 or B), ``inv_freq: [r]`` float, ``r = rotary_dim / 2``; ``offset``: the rotated features
are ``[offset, offset + 2r)``; ``scale``: the attention factor multiplying cos and sin (YaRN, LongRoPE).

Every path forms the angle with the digit-split reduction of :func:`ropekit.angles.exact_position_angles` (valid
for every int64 position, within one float32 rounding plus 1e-8 rad of the true angle), once per token and pair,
reused for all heads of q and k:

- ``cpp`` (CPU): ``rotary_cpu.cpp``, "Table-free rotation": cos/sin of the float32 angle by Cephes' minimax
  polynomials evaluated in float64 (within half a float32 ulp plus 1e-9), into a stack buffer per token;
- ``triton`` (CUDA, or CPU tensors under ``TRITON_INTERPRET=1``):
  :func:`ropekit.kernels.triton_rotary.rotary_qk_angles`, cos/sin of the float32 angle in float64;
- ``eager`` / ``reference`` and every case the kernels do not take (float64, other devices without Triton): the
  pure-torch form, :func:`torch_rows` (exact angles, ``torch.cos``/``torch.sin``, then
  :func:`ropekit.kernels.ops.rotate_torch`). It builds a table internally; it is the reference, not the fast path.

So the cos/sin a kernel uses may differ from ``rope_cos_sin``'s by one float32 ulp (both are within an ulp of the
exact value): the rotation is as precise as the table path, not bit-identical to it.

``ropekit::rotary_qk_angles(q, k, positions, inv_freq, ...) -> (q_out, k_out)`` is the custom op (opaque to
``torch.compile``), differentiable in q and k: the backward is the same op with ``conj`` flipped (rotation by minus
the angle), saving only the positions and frequencies.
"""

from __future__ import annotations

import weakref
from typing import Any

import torch

from ropekit.angles import exact_position_angles
from ropekit.kernels import cpu
from ropekit.kernels.cos_sin import constants
from ropekit.kernels.ops import no_rows, rotate_torch

__all__ = ["RotaryQKAngles", "device_constants", "rotary_qk_angles", "rotate", "run_angles", "torch_rows"]

_MAX_CPP_PAIRS = 1024  # rotary_cpu.cpp's stack buffer per token


_ON_DEVICE: dict[tuple[int, str], tuple[weakref.ref[torch.Tensor], torch.Tensor]] = {}


def device_constants(inv_freq: torch.Tensor, device: torch.device) -> torch.Tensor:
    """The kernels' ``[4, r]`` float64 constants (:func:`ropekit.kernels.cos_sin.constants`, cached per frequency
    tensor and version) on ``device``, the copy cached too: reading a CUDA ``inv_freq`` back to the host on every
    call would synchronise it (measured on an H200: the table-free call ran at 1.5-3.3x the copy floor while its
    launch alone was 1.13x). At most 64 entries."""
    cst = constants(inv_freq)
    if device.type == "cpu":
        return cst
    key = (id(cst), str(device))
    hit = _ON_DEVICE.get(key)
    if hit is not None and hit[0]() is cst:
        return hit[1]
    on_device = cst.to(device)
    if len(_ON_DEVICE) >= 64:
        _ON_DEVICE.clear()
    _ON_DEVICE[key] = (weakref.ref(cst), on_device)
    return on_device


def torch_rows(
    x: torch.Tensor,
    positions: torch.Tensor,
    inv_freq: torch.Tensor,
    interleaved: bool,
    conj: bool,
    offset: int,
    scale: float,
) -> torch.Tensor:
    """The pure-torch form: ``x: [B, H, T, D]``, ``positions: [Bp, T]`` -> ``x`` rotated (a new tensor)."""
    angles = exact_position_angles(inv_freq, positions).to(x.device)  # [Bp, T, r] float32
    acc = torch.float64 if x.dtype == torch.float64 else torch.float32
    cos = (torch.cos(angles).to(acc) * scale)[:, None]  # [Bp, 1, T, r]
    sin = (torch.sin(angles).to(acc) * scale)[:, None]
    return rotate_torch(x, cos, sin, None, interleaved, conj, offset)


def _kernel(backend: str, q: torch.Tensor, r: int) -> str:
    """``"cpp"``, ``"triton"`` or ``"torch"``: which implementation runs these inputs under ``backend``."""
    if q.dtype not in (torch.float32, torch.bfloat16, torch.float16):
        return "torch"
    if backend == "triton" or (backend == "auto" and q.device.type == "cuda"):
        return "triton"
    if backend in ("auto", "cpp") and q.device.type == "cpu" and r <= _MAX_CPP_PAIRS and cpu.load() is not None:
        return "cpp"
    return "torch"


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
    scale: float = 1.0,
) -> None:
    """Rotate q into q_out and k into k_out by the exact angles of ``positions`` (outputs are new tensors)."""
    r = inv_freq.numel()
    kind = _kernel(backend, q, r)
    if kind == "torch":
        for x, out in ((q, q_out), (k, k_out)):
            if x.numel():
                out.copy_(torch_rows(x, positions, inv_freq, interleaved, conj, offset, scale))
        return
    if offset:
        r2 = 2 * r
        for x, out in ((q, q_out), (k, k_out)):  # the features around the rotated slice pass through
            if x.numel():
                out[..., :offset].copy_(x[..., :offset])
                out[..., offset + r2 :].copy_(x[..., offset + r2 :])
        q, q_out, k, k_out = (t[..., offset : offset + r2] for t in (q, q_out, k, k_out))
    cst = device_constants(inv_freq, q.device)
    if kind == "triton":
        from ropekit.kernels import triton_rotary

        pos = positions.to(q.device, torch.int64)
        triton_rotary.rotary_qk_angles(q, k, q_out, k_out, pos, cst, scale, interleaved, conj)
        return
    module = cpu.load()
    assert module is not None  # _kernel checked
    stream_min_bytes = cpu.STREAM_MIN_BYTES.get(q.dtype, -1)
    module.rotary_qk_angles(
        q, k, q_out, k_out, positions.to(torch.int64), cst, scale, interleaved, conj, stream_min_bytes
    )


@torch.library.custom_op("ropekit::rotary_qk_angles", mutates_args=())
def rotary_qk_angles(
    q: torch.Tensor,
    k: torch.Tensor,
    positions: torch.Tensor,
    inv_freq: torch.Tensor,
    interleaved: bool,
    conj: bool,
    offset: int,
    scale: float,
    backend: str,
) -> tuple[torch.Tensor, torch.Tensor]:
    q_out, k_out = torch.empty_like(q), torch.empty_like(k)
    run_angles(backend, q, k, q_out, k_out, positions, inv_freq, interleaved, conj, offset, scale)
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
    scale: float,
    backend: str,
) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.empty_like(q), torch.empty_like(k)


def _setup_context(ctx: Any, inputs: tuple[Any, ...], output: Any) -> None:
    _, _, positions, inv_freq, interleaved, conj, offset, scale, backend = inputs
    ctx.save_for_backward(positions, inv_freq)
    ctx.flags = (interleaved, conj, offset, scale, backend)


def _grad(g: torch.Tensor) -> torch.Tensor:
    return g if g.stride(-1) == 1 else g.contiguous()


def _backward(ctx: Any, grad_q: torch.Tensor, grad_k: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
    positions, inv_freq = ctx.saved_tensors
    interleaved, conj, offset, scale, backend = ctx.flags
    gq, gk = rotary_qk_angles(
        _grad(grad_q), _grad(grad_k), positions, inv_freq, interleaved, not conj, offset, scale, backend
    )
    return gq, gk, None, None, None, None, None, None, None


rotary_qk_angles.register_autograd(_backward, setup_context=_setup_context)


class RotaryQKAngles(torch.autograd.Function):
    """Eager autograd for the table-free rotation (the contract of ``ropekit::rotary_qk_angles``, without the custom
    op's dispatch cost)."""

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
        scale: float,
        backend: str,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        q_out, k_out = torch.empty_like(q), torch.empty_like(k)
        run_angles(backend, q, k, q_out, k_out, positions, inv_freq, interleaved, conj, offset, scale)
        ctx.save_for_backward(positions, inv_freq)
        ctx.flags = (interleaved, conj, offset, scale, backend)
        return q_out, k_out

    @staticmethod
    def backward(ctx: Any, grad_q: torch.Tensor, grad_k: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        positions, inv_freq = ctx.saved_tensors
        interleaved, conj, offset, scale, backend = ctx.flags
        grad_q, grad_k = _grad(grad_q), _grad(grad_k)
        if torch.is_grad_enabled():  # double backward: differentiable again
            gq, gk = _apply(grad_q, grad_k, positions, inv_freq, interleaved, not conj, offset, scale, backend)
        else:
            gq, gk = torch.empty_like(grad_q), torch.empty_like(grad_k)
            run_angles(backend, grad_q, grad_k, gq, gk, positions, inv_freq, interleaved, not conj, offset, scale)
        return gq, gk, None, None, None, None, None, None, None


def _apply(*args: Any) -> tuple[torch.Tensor, torch.Tensor]:
    out: tuple[torch.Tensor, torch.Tensor] = RotaryQKAngles.apply(*args)  # type: ignore[no-untyped-call]  # untyped
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
    scale: float,
    backend: str,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Dispatch: ``q, k: [B, H, T, D]`` (k None: q only), ``positions: [Bp, T]`` int64 -> rotated ``(q, k)``."""
    k4 = no_rows(q) if k is None else k
    args = (q, k4, positions, inv_freq, interleaved, conj, offset, scale, backend)
    if backend == "reference":
        q_out = torch_rows(q, positions, inv_freq, interleaved, conj, offset, scale)
        return q_out, (None if k is None else torch_rows(k4, positions, inv_freq, interleaved, conj, offset, scale))
    if torch.compiler.is_compiling():
        q_out, k_out = rotary_qk_angles(*args)
    elif torch.is_grad_enabled() and (q.requires_grad or k4.requires_grad):
        q_out, k_out = _apply(*args)
    else:
        q_out, k_out = torch.empty_like(q), torch.empty_like(k4)
        run_angles(backend, q, k4, q_out, k_out, positions, inv_freq, interleaved, conj, offset, scale)
    return q_out, (None if k is None else k_out)
