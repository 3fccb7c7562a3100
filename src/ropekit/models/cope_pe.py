"""``pe`` kind ``"cope"``: contextual position encoding (Golovneva et al. 2024, "Contextual Position Encoding:
Learning to Count What's Important") through the :attr:`~ropekit.models.PositionEncoding.computes_scores` hook.

Legend: ``q: [B, H, Tq, D]``, ``k: [B, H, Tk, D]`` unrotated heads (``k`` repeated for grouped-query heads),
``visible: [1 or B, 1, Tq, Tk]`` bool, ``pos_emb: [D, P]`` (``P = npos_max``).

Each attention logit is ``q_i . k_j / sqrt(D) + q_i . e[p_ij]`` where ``p_ij`` counts the gates
``sigmoid(q_i . k_t / sqrt(D))`` of the visible keys ``t = j .. i`` (the query included), ``e`` is a learned table
interpolated at the fractional ``p_ij`` and clipped at ``P - 1``: :func:`ropekit.cope.cope_scores`, the one home of
the formula. The explicit positions of the model are not used: CoPE's positions come from the content alone, so a
shifted or randomised position tensor changes nothing.

Options (those of the authors' released code, facebookresearch/RAM ``projects/cope/src/cope/context_position.py``,
that this hook can express):

* ``npos_max``: ``P``, the number of integer positions (default ``max_len + 1``: with every gate 1 the oldest of
  ``max_len`` keys is at position ``max_len``; the released code's ``block size + 1``).
* ``scale_positions``: divide ``q.k + q.e[p]`` by ``sqrt(D)`` together (the released code's default) instead of
  adding ``q.e[p]`` unscaled (the paper's listing, the default here; the released code's ``--cope-nodiv``).
* ``init_std``: the table starts at zeros (the paper's listing and released code: a CoPE model starts as NoPE,
  exactly); a positive value draws it from ``Normal(0, init_std)`` instead.

Not expressible through the hook (it passes neither the hidden states nor the values): gates from a separate key
projection (``--cope-sep-key``) or from the values (``--cope-val-gates``); CoPE on every k-th layer mixed with
relative positions (``--cope-layers``). The model holds one encoding per stack, so the table is shared by all layers
(the released code's ``--cope-shared``; its default is one table per layer) and, as in the paper, by all heads.

Causal only: ``p_ij`` counts the keys between ``j`` and the query ``i``, defined for a decoder where every visible
key precedes the query. An encoder would need a two-sided count (the paper is decoder-only and defines none), so a
non-causal attention (task ``classify``, the encoder of ``seq2seq``) raises a ``ValueError`` on its first forward.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ropekit.cope import causal_visibility, cope_scores
from ropekit.models.positions import Dims, PositionEncoding, register_position_encoding

__all__ = ["CoPE"]


@register_position_encoding("cope")
class CoPE(PositionEncoding):
    """CoPE (see the module docstring): ``pos_emb: [head_dim, npos_max]`` learned, shared by heads and layers."""

    computes_scores = True

    def __init__(
        self, dims: Dims, npos_max: int | None = None, scale_positions: bool = False, init_std: float = 0.0
    ) -> None:
        super().__init__()
        npos = dims.max_len + 1 if npos_max is None else npos_max
        if isinstance(npos, bool) or not isinstance(npos, int) or npos < 2:
            raise ValueError(
                f"cope npos_max must be an int >= 2 (the number of integer positions, e.g. max_len + 1), "
                f"got {npos_max!r}"
            )
        if not isinstance(scale_positions, bool):
            raise ValueError(f"cope scale_positions must be True or False, got {scale_positions!r}")
        if isinstance(init_std, bool) or not isinstance(init_std, (int, float)) or not math.isfinite(init_std):
            raise ValueError(f"cope init_std must be a finite number >= 0 (0: zeros, the paper's), got {init_std!r}")
        if init_std < 0:
            raise ValueError(f"cope init_std must be >= 0 (0: zeros, the paper's), got {init_std!r}")
        self.npos_max, self.scale_positions = npos, scale_positions
        self.pos_emb = nn.Parameter(torch.zeros(dims.head_dim, npos))  # [D, P]; not re-initialised by the model
        if init_std > 0:
            nn.init.normal_(self.pos_emb, std=float(init_std))

    def scores(
        self,
        q: torch.Tensor,
        k: torch.Tensor,
        q_positions: torch.Tensor,
        k_positions: torch.Tensor,
        visible: torch.Tensor,
    ) -> torch.Tensor:
        """Logits ``[B, H, Tq, Tk]``; the positions are ignored (CoPE counts content), ``visible`` must be causal."""
        Tq, Tk = q.shape[-2], k.shape[-2]
        if Tk < Tq:
            raise ValueError(f"cope needs at least as many keys as queries (causal self-attention), got {Tq}, {Tk}")
        causal = causal_visibility(Tq, Tk, Tk - Tq, device=visible.device)  # [Tq, Tk]
        if bool((visible & ~causal).any()):
            raise ValueError(
                "pe kind 'cope' counts the keys between key j and query i, so it needs causal self-attention "
                "(a decoder-only model: task 'lm'); this attention lets a query see later keys (an encoder: task "
                "'classify' or seq2seq's encoder). Use another pe kind there (e.g. 'rope')."
            )
        return cope_scores(q, k, visible, self.pos_emb, scale_positions=self.scale_positions)
