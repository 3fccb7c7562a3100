"""CoPE: contextual position encoding (Golovneva et al. 2024, "Contextual Position Encoding: Learning to Count
What's Important").

Legend: ``q: [B, H, T, D]`` queries, ``k: [B, H, Tk, D]`` keys (already repeated for grouped-query heads),
``gates, positions, logits: [B, H, T, Tk]``, ``pos_emb: [D, P]`` (``P = npos_max`` integer positions).

The formula (paper, section 3): a gate per query/key pair ``g_ij = sigmoid(q_i . k_j / sqrt(D))`` decides whether
key ``j`` counts for query ``i``; the position of ``j`` seen from ``i`` is the count of gated keys from ``j`` to
``i`` (causal, ``j <= i``):

    p_ij = sum_{t = j .. i} g_it,

clipped to ``P - 1``. Positions are fractional, so the embedding is interpolated between the two integer
embeddings ``e[floor p]`` and ``e[ceil p]`` (``e[p] = pos_emb[:, p]``, learned), and the logit gains
``q_i . e[p_ij]``; computing ``z_i = q_i . e[p]`` for every integer ``p`` first and interpolating ``z`` gives the
same value at ``P`` instead of ``T`` dot products per query (the paper's implementation note).

Indexing, checked against the paper: its section 3 sums the gates ``g_ik`` for ``k = j .. i`` (``p_ij`` includes
``g_ii``, so the query counts itself), and its code listing computes the same reverse cumulative sum over the key
axis (``gates.flip(-1).cumsum(-1).flip(-1)``) with invisible keys' gates zeroed by the causal mask first; the
authors' released code (facebookresearch/RAM, ``projects/cope/src/cope/context_position.py``) does the same. So
``p_ii = g_ii`` and, when every gate is 1, ``p_ij = i - j + 1``: token-count relative positions shifted by one (the
query itself is at position 1, the oldest of ``T`` keys at ``T``; position 0 is only reached as the floor of a
fraction below 1, hence ``P = max_len + 1`` embeddings in the released code). ``tests/test_cope_core.py`` checks
``p_ii = g_ii`` and the sum against a loop.

The logit (:func:`cope_scores`): ``q_i . k_j / sqrt(D) + q_i . e[p_ij]`` as in the paper's listing; the released
code's default instead divides the sum, ``(q_i . k_j + q_i . e[p_ij]) / sqrt(D)`` (its ``--cope-nodiv`` switch
gives the listing's form): ``scale_positions=True`` here. Pure torch: this is its own reference (there is no fast
path).
"""

from __future__ import annotations

import math

import torch

__all__ = ["causal_visibility", "cope_gates", "cope_logits", "cope_positions", "cope_scores"]


def causal_visibility(T: int, Tk: int, past: int, device: torch.device | None = None) -> torch.Tensor:
    """``[T, Tk]`` bool: key ``j`` is visible to query ``i`` iff ``j <= past + i`` (``past`` cached keys)."""
    return torch.arange(Tk, device=device) <= (past + torch.arange(T, device=device)).unsqueeze(-1)


def cope_gates(q: torch.Tensor, k: torch.Tensor, visible: torch.Tensor) -> torch.Tensor:
    """``sigmoid(q k^T / sqrt(D))`` with invisible keys at 0: ``[B, H, T, Tk]``."""
    if q.shape[-1] != k.shape[-1] or q.shape[:-2] != k.shape[:-2]:
        raise ValueError(f"q {tuple(q.shape)} and k {tuple(k.shape)} must be [B, H, T, D] and [B, H, Tk, D]")
    logits = q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1])  # [B, H, T, Tk]
    return torch.sigmoid(logits) * visible.to(logits.dtype)


def cope_positions(gates: torch.Tensor) -> torch.Tensor:
    """``p_ij = sum_{t >= j} g_it`` over the key axis (gates of invisible keys are 0): ``[..., T, Tk]``."""
    return gates.flip(-1).cumsum(-1).flip(-1)


def cope_logits(q: torch.Tensor, positions: torch.Tensor, pos_emb: torch.Tensor) -> torch.Tensor:
    """``q_i . e[p_ij]`` with ``e`` linearly interpolated at the clipped positions: ``[B, H, T, Tk]``.

    ``q: [B, H, T, D]``, ``positions: [B, H, T, Tk]`` (>= 0), ``pos_emb: [D, P]``.
    """
    if pos_emb.dim() != 2 or pos_emb.shape[0] != q.shape[-1]:
        raise ValueError(f"pos_emb must be [D={q.shape[-1]}, npos_max], got {tuple(pos_emb.shape)}")
    P = pos_emb.shape[1]
    p = positions.clamp(max=P - 1)
    lo = p.floor()
    w = p - lo  # [B, H, T, Tk] in [0, 1); gradient flows to the gates through w
    z = q @ pos_emb.to(q.dtype)  # [B, H, T, P]
    z_lo = z.gather(-1, lo.long())
    z_hi = z.gather(-1, p.ceil().long())
    return z_lo * (1 - w) + z_hi * w


def cope_scores(
    q: torch.Tensor, k: torch.Tensor, visible: torch.Tensor, pos_emb: torch.Tensor, *, scale_positions: bool = False
) -> torch.Tensor:
    """CoPE's pre-softmax logits ``[B, H, T, Tk]`` (no mask applied): ``q.k / sqrt(D) + q.e[p]``, or
    ``(q.k + q.e[p]) / sqrt(D)`` with ``scale_positions``.

    ``q: [B, H, T, D]``, ``k: [B, H, Tk, D]``, ``visible: [T, Tk]`` or ``[1 or B, 1 or H, T, Tk]`` bool (the gates
    of invisible keys are 0, so they are not counted), ``pos_emb: [D, P]``. The gates reuse the attention logits
    ``q.k / sqrt(D)`` (the paper's listing), so ``q.k`` is computed once.
    """
    if q.shape[-1] != k.shape[-1] or q.shape[:-2] != k.shape[:-2]:
        raise ValueError(f"q {tuple(q.shape)} and k {tuple(k.shape)} must be [B, H, T, D] and [B, H, Tk, D]")
    if visible.dtype != torch.bool or visible.shape[-2:] != (q.shape[-2], k.shape[-2]):
        raise ValueError(
            f"visible must be a bool mask [.., T={q.shape[-2]}, Tk={k.shape[-2]}], got {visible.dtype} "
            f"{tuple(visible.shape)}"
        )
    scale = 1.0 / math.sqrt(q.shape[-1])
    qk = q @ k.transpose(-1, -2)  # [B, H, T, Tk]
    gates = torch.sigmoid(qk * scale) * visible.to(qk.dtype)
    pos = cope_logits(q, cope_positions(gates), pos_emb)
    return (qk + pos) * scale if scale_positions else qk * scale + pos
