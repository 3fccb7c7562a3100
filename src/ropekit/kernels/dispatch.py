"""Backend selection and the in-place rules for the rotary ops. Inputs are validated by :mod:`ropekit.functional`.

Legend: ``x, q, k: [..., H, T, D]`` views (the functional tier turns every layout into such a view without
copying); ``r = rotary_dim / 2``; ``cos, sin: [..., T, r]`` broadcast over x, or with ``positions: [T]`` /
``[B, T]`` (B = x's first dim) tables ``[L, r]`` whose row ``positions[..., t]`` is used. ``offset``: the
rotated features are ``[offset, offset + 2r)``. ``conj``: rotate by minus the angle (the inverse).

The fused op (:mod:`ropekit.kernels.ops`) takes 4-D ``[B, H, T, D]`` views; this module makes them without
copying (merging leading dims only where that is a view) and falls back to the pure-torch form
(:func:`ropekit.kernels.ops.rotate_torch`) when it cannot: cos/sin that require grad (learned frequencies), q and
k of different dtypes or ranks, or layouts that would need a copy. That form is also what
``use_backend("reference")`` runs.

In place: what is written has its version counter bumped (autograd's "modified by an inplace operation" check
sees it); a tensor with internally overlapping memory, or q and k sharing an element, is refused; q and k that
require grad go through :class:`~ropekit.kernels.ops.RotaryInplace` (backward: the rotation by minus the
angle). Under ``torch.compile`` in place is the out-of-place op followed by ``copy_`` (see ``docs/kernels.md``).
"""

from __future__ import annotations

import torch

from ropekit.kernels import ops
from ropekit.kernels.backend import current_backend
from ropekit.kernels.overlap import has_internal_overlap, views_overlap

__all__ = ["apply_rotary", "apply_rotary_qk", "check_inplace"]

_FUSED_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


def _as_4d(x: torch.Tensor) -> torch.Tensor | None:
    """``[..., H, T, D] -> [B, H, T, D]`` as a view (None if merging the leading dims would copy)."""
    if x.dim() <= 4:
        return x.view(*([1] * (4 - x.dim())), *x.shape)
    try:
        return x.view(-1, *x.shape[-3:])  # [prod(lead), H, T, D]
    except RuntimeError:
        return None


def _table_4d(cos: torch.Tensor, x: torch.Tensor) -> torch.Tensor | None:
    """cos ``[..., T, r]`` broadcast to x's rank, as ``[Bc, Hc, Tc, r]`` (None if not a view)."""
    c = cos.view(*([1] * (x.dim() - cos.dim())), *cos.shape)  # same rank as x
    if c.dim() <= 4:
        return c.view(*([1] * (4 - c.dim())), *c.shape)
    lead = c.shape[:-3]
    if all(n == 1 for n in lead):
        return c.view(1, *c.shape[-3:])
    if tuple(lead) != tuple(x.shape[:-3]):
        return None
    try:
        return c.view(-1, *c.shape[-3:])
    except RuntimeError:
        return None


_Prepared = tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, "torch.Tensor | None"]


def _prepare(
    q: torch.Tensor, k: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, positions: torch.Tensor | None
) -> _Prepared | None:
    """Views and compute-dtype tables for the fused op, or None when the pure-torch form must run.

    Kept cheap (a few microseconds): 4-D inputs and cos/sin of at most 4 dims pass through as they are; the
    kernels right-align cos/sin with ``[B, H, T, D]`` and read size-1 dims as broadcast.
    """
    if cos.requires_grad or sin.requires_grad or q.dtype != k.dtype or q.dtype not in _FUSED_DTYPES:
        return None
    if q.dim() != k.dim() or q.device != k.device or cos.device != q.device:
        return None
    if positions is not None and positions.dim() == 2 and q.dim() > 4 and positions.shape[0] > 1:
        return None  # [B, T] positions would need repeating over the merged leading dims
    q4: torch.Tensor | None
    k4: torch.Tensor | None
    if positions is not None and positions.dim() == 2 and q.dim() == 3:
        q4, k4 = q.unsqueeze(1), k.unsqueeze(1)  # [B, 1, T, D]: positions' B is x's first dim
    else:
        q4, k4 = (q, k) if q.dim() == 4 else (_as_4d(q), _as_4d(k))
    if q4 is None or k4 is None or q4.stride(-1) != 1 or k4.stride(-1) != 1:
        return None
    acc = torch.float64 if q.dtype == torch.float64 else torch.float32  # bf16/fp16 are computed in float32
    if cos.dtype != acc:
        cos, sin = cos.to(acc), sin.to(acc)  # bf16/fp16 tables widened (exact): as precise as the table
    if positions is not None:
        if positions.dtype != torch.int64:
            positions = positions.to(torch.int64)
        if positions.dim() == 1:
            positions = positions.unsqueeze(0)  # [1, T]
        if cos.stride(-1) != 1 or cos.stride() != sin.stride():
            cos, sin = cos.contiguous(), sin.contiguous()  # rows of any stride are read as they are
        return q4, k4, cos, sin, positions
    if cos.dim() > 4 or q.dim() > 4:
        cos4, sin4 = _table_4d(cos, q), _table_4d(sin, q)
        if cos4 is None or sin4 is None:
            return None
        cos, sin = cos4, sin4
    if cos.stride(-1) != 1 or cos.stride() != sin.stride():
        cos, sin = cos.contiguous(), sin.contiguous()
    return q4, k4, cos, sin, None


def check_inplace(q: torch.Tensor, k: torch.Tensor | None) -> None:
    """Refuse in-place writes torch forbids (a leaf that requires grad) or that would silently go wrong: shared
    memory within q or k, or between them.

    Eager only (strides are symbolic while ``torch.compile`` traces; there ``copy_`` applies torch's own rules).
    """
    for name, t in (("q", q), ("k", k)):
        if t is not None and t.requires_grad and torch.is_grad_enabled():
            root = t if t._base is None else t._base
            if root.is_leaf:
                raise ValueError(
                    f"inplace=True cannot overwrite {name}: it is a leaf tensor that requires grad (or a view of one), "
                    "which torch forbids to modify in place. Rotate a non-leaf (e.g. the projection's output) in "
                    "place, or use inplace=False"
                )
        if t is not None and has_internal_overlap(t):
            raise ValueError(
                f"inplace=True cannot rotate {name}: some of its elements share memory (an expanded or stride-0 "
                f"view, shape {tuple(t.shape)}, strides {t.stride()}); each alias would be rotated once per alias. "
                f"Pass {name}.contiguous() or use inplace=False"
            )
    if k is not None and views_overlap(q, k):
        raise ValueError(
            "inplace=True cannot rotate q and k that share memory (the same tensor, or overlapping views of one "
            "buffer): the shared elements would be rotated twice. Use inplace=False, or pass disjoint views "
            "(e.g. the q and k heads of a packed qkv buffer)"
        )


def _rotate(
    q: torch.Tensor,
    k: torch.Tensor | None,
    cos: torch.Tensor,
    sin: torch.Tensor,
    positions: torch.Tensor | None,
    interleaved: bool,
    inplace: bool,
    offset: int = 0,
    conj: bool = False,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Shared body: ``k`` may be None (single tensor)."""
    compiling = torch.compiler.is_compiling()
    if inplace and not compiling:
        check_inplace(q, k)
    backend = current_backend()
    k_like = q if k is None else k
    prepared = None if backend == "reference" else _prepare(q, k_like, cos, sin, positions)
    if prepared is None:
        outs = [ops.rotate_torch(t, cos, sin, positions, interleaved, conj, offset) for t in (q, k) if t is not None]
        if inplace:
            outs = [t.copy_(o) for t, o in zip((q, k_like), outs, strict=False)]  # copy_ bumps the version counter
        return outs[0], (outs[1] if k is not None else None)
    q4, k4, c, s, pos = prepared
    if k is None:
        k4 = q4.new_empty(1, 1, 0, q4.shape[-1])  # [1, 1, 0, D]: no rows
    needs_grad = torch.is_grad_enabled() and (q.requires_grad or (k is not None and k.requires_grad))
    name = backend.value
    if inplace:
        if compiling:  # out of place, then copy back: the mutating op was miscompiled on views of one buffer
            q_out, k_out = ops.rotary_qk(q4, k4, c, s, pos, interleaved, conj, offset, name)
            q4.copy_(q_out)
            if k is not None:
                k4.copy_(k_out)
        elif needs_grad:  # one Function per tensor that requires grad (autograd: one output per in-place view)
            for t, t4 in ((q, q4), (k, k4)):
                if t is None:
                    continue
                if t.requires_grad:
                    ops.rotary_inplace_eager(t4, c, s, pos, interleaved, conj, offset, name)
                else:
                    ops.run(name, t4, ops.no_rows(t4), t4, ops.no_rows(t4), c, s, pos, interleaved, conj, offset)
                    torch.autograd.graph.increment_version(t)
        else:
            ops.run(name, q4, k4, q4, k4, c, s, pos, interleaved, conj, offset)
            torch.autograd.graph.increment_version(q if k is None else (q, k))  # the kernel wrote behind autograd
        return q, k
    # Eager calls that need no autograd skip the custom-op machinery (10-25 us a call): same body, called directly.
    if not compiling and not needs_grad:
        q_out, k_out = torch.empty_like(q4), torch.empty_like(k4)
        ops.run(name, q4, k4, q_out, k_out, c, s, pos, interleaved, conj, offset)
    elif not compiling:
        q_out, k_out = ops.rotary_qk_eager(q4, k4, c, s, pos, interleaved, conj, offset, name)
    else:
        q_out, k_out = ops.rotary_qk(q4, k4, c, s, pos, interleaved, conj, offset, name)
    # Back to the callers' shapes; 4-D inputs were used as they are (a view would cost 4 us and an autograd node).
    q_out = q_out if q4 is q else q_out.view(q.shape)
    return q_out, (None if k is None else k_out if k4 is k else k_out.view(k.shape))


def apply_rotary_qk(
    q: torch.Tensor,
    k: torch.Tensor,
    cos: torch.Tensor,
    sin: torch.Tensor,
    *,
    interleaved: bool,
    inplace: bool,
    positions: torch.Tensor | None = None,
    offset: int = 0,
    conj: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Rotate q and k in one pass; with ``inplace`` the results are written back into q and k."""
    q_out, k_out = _rotate(q, k, cos, sin, positions, interleaved, inplace, offset, conj)
    assert k_out is not None  # k was given
    return q_out, k_out


def apply_rotary(
    x: torch.Tensor,
    cos: torch.Tensor,
    sin: torch.Tensor,
    *,
    interleaved: bool,
    positions: torch.Tensor | None = None,
    inplace: bool = False,
    offset: int = 0,
    conj: bool = False,
) -> torch.Tensor:
    """Rotation ``[..., T, D] -> [..., T, D]`` (the q-only case of :func:`apply_rotary_qk`)."""
    return _rotate(x, None, cos, sin, positions, interleaved, inplace, offset, conj)[0]
