"""Backend selection for the rotary ops. Inputs are validated by :mod:`ropekit.functional` first.

Legend: ``x, q, k: [..., T, D]``, ``cos, sin: [..., T, r]``.
"""

from __future__ import annotations

import torch

from ropekit.reference import apply_rotary_reference

__all__ = ["apply_rotary", "apply_rotary_qk"]


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, *, interleaved: bool) -> torch.Tensor:
    """Out-of-place rotation ``[..., T, D] -> [..., T, D]``."""
    return apply_rotary_reference(x, cos, sin, interleaved=interleaved)


def apply_rotary_qk(
    q: torch.Tensor,
    k: torch.Tensor,
    cos: torch.Tensor,
    sin: torch.Tensor,
    *,
    interleaved: bool,
    inplace: bool,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Rotate q and k; with ``inplace`` the results are written back into q and k."""
    q_out = apply_rotary_reference(q, cos, sin, interleaved=interleaved)
    k_out = apply_rotary_reference(k, cos, sin, interleaved=interleaved)
    if not inplace:
        return q_out, k_out
    for name, t in (("q", q), ("k", k)):
        if t.requires_grad and torch.is_grad_enabled():
            raise ValueError(f"inplace=True cannot overwrite {name}, which requires grad; use inplace=False")
    return q.copy_(q_out), k.copy_(k_out)
