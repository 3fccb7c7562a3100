"""Exact memory-overlap tests of strided views, for the in-place rotation's refusals.

torch's own check (``at::has_internal_overlap``) answers "too hard" for any non-dense view, which is exactly what
the packed-QKV views are (``qkv[:, :, :Hq].transpose(1, 2)``), so the in-place path decides here instead. A view
is ``offset + sum(i_n * stride_n)`` over ``0 <= i_n < size_n`` (element units); two views of one storage share an
element iff some difference vector ``e`` (``|e_n| < size_n``) satisfies ``sum(e_n * stride_n) = delta``. The
search walks dims from the largest stride down and keeps only digits whose remainder can still be reached by the
smaller dims, so the usual nested layouts take one or two candidates per dim. It gives up (answers "overlaps",
the safe side) past a node budget, which only contrived strides reach.
"""

from __future__ import annotations

import torch

__all__ = ["has_internal_overlap", "views_overlap"]

_BUDGET = 4096  # search nodes before answering "overlaps" (safe); the layouts here need fewer than 20


def _dims(t: torch.Tensor) -> list[tuple[int, int]]:
    """``(stride, size)`` of the dims of size > 1, largest stride first."""
    return sorted(((abs(st), n) for st, n in zip(t.stride(), t.shape, strict=True) if n > 1), reverse=True)


def _solvable(delta: int, dims: list[tuple[int, int, int]], nonzero: bool) -> bool:
    """Whether ``sum(e_n * s_n) == delta`` has a solution with ``lo_n <= e_n <= hi_n`` (``dims``: (s, lo, hi)),
    non-zero if ``nonzero``. Depth-first with reach bounds; True also when the budget runs out."""
    reach = [0] * (len(dims) + 1)  # reach[i]: the largest |sum| dims i.. can produce
    for i in range(len(dims) - 1, -1, -1):
        s, lo, hi = dims[i]
        reach[i] = reach[i + 1] + s * max(-lo, hi)
    budget = [_BUDGET]

    def go(i: int, rem: int, any_nonzero: bool) -> bool:
        budget[0] -= 1
        if budget[0] < 0:
            return True
        if i == len(dims):
            return rem == 0 and (any_nonzero or not nonzero)
        s, lo, hi = dims[i]
        r = reach[i + 1]
        first, last = max(lo, -((r - rem) // s)), min(hi, (rem + r) // s)  # |rem - e*s| <= r
        return any(go(i + 1, rem - e * s, any_nonzero or e != 0) for e in range(first, last + 1))

    return go(0, delta, False)


def has_internal_overlap(t: torch.Tensor) -> bool:
    """Whether two elements of ``t`` share memory (a stride-0 expand, an ``as_strided`` that folds back)."""
    if t.is_contiguous():
        return False
    dims = _dims(t)
    if any(s == 0 for s, _ in dims) or len({s for s, _ in dims}) < len(dims):
        return True  # a stride-0 dim, or two dims stepping by the same stride
    span = 1
    for s, n in reversed(dims):  # smallest stride first: nested strides cannot collide (the common case)
        if s < span:
            break
        span += s * (n - 1)
    else:
        return False
    return _solvable(0, [(s, -(n - 1), n - 1) for s, n in dims], nonzero=True)


def views_overlap(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Whether views ``a`` and ``b`` share an element (exact for views of one storage with the same strides)."""
    if a.numel() == 0 or b.numel() == 0 or a.device != b.device:
        return False
    if a.untyped_storage().data_ptr() != b.untyped_storage().data_ptr():
        return False
    ea, eb = a.element_size(), b.element_size()
    lo_a = a.data_ptr()
    hi_a = lo_a + ea * (1 + sum((n - 1) * abs(s) for s, n in zip(a.stride(), a.shape, strict=True)))
    lo_b = b.data_ptr()
    hi_b = lo_b + eb * (1 + sum((n - 1) * abs(s) for s, n in zip(b.stride(), b.shape, strict=True)))
    if hi_a <= lo_b or hi_b <= lo_a:
        return False  # disjoint byte ranges
    if ea != eb or (lo_b - lo_a) % ea or any(s < 0 for s in (*a.stride(), *b.stride())):
        return True  # different element grids: treat as overlapping (safe)
    # a[i] == b[j]  <=>  sum(i_n sa_n) - sum(j_n sb_n) = delta; both views' dims as one set of digits
    ranges: dict[int, tuple[int, int]] = {}  # stride -> range of the summed digit
    for s, n in _dims(a):
        if s == 0:
            continue  # a stride-0 dim moves no address
        lo, hi = ranges.get(s, (0, 0))
        ranges[s] = (lo, hi + n - 1)
    for s, n in _dims(b):
        if s == 0:
            continue
        lo, hi = ranges.get(s, (0, 0))
        ranges[s] = (lo - (n - 1), hi)
    dims = sorted(((s, lo, hi) for s, (lo, hi) in ranges.items()), reverse=True)
    return _solvable((lo_b - lo_a) // ea, dims, nonzero=False)
