"""Position-remapping kinds for the models: ``self_extend`` (Jin et al. 2024) and ``rerope`` (Su 2023, plain and
Leaky), both training-free: evaluate a RoPE model with them by swapping its ``pe``
(:func:`ropekit.models.with_position_encoding`); they hold no weights.

Legend: ``q: [B, H, Tq, D]``, ``k: [B, H, Tk, D]`` unrotated (key heads repeated), ``q_positions: [B, Tq]``,
``k_positions: [B, Tk]``, ``visible: [1 or B, 1, Tq, Tk]`` bool.

Both set :attr:`~ropekit.models.PositionEncoding.computes_scores`: the attention layer hands them the raw heads
and their positions, the KV cache keeps unrotated keys, and the logits come from
:func:`ropekit.remap.remapped_scores` (RoPE's logits for near pairs, remapped distances for far ones) with the
kind's own :class:`ropekit.RotaryEmbedding` frequencies, so ``rope_parameters`` / ``interleaved`` /
``max_position_embeddings`` mean what they mean for the ``rope`` kind and a swap from ``rope`` keeps the angles.
``log_scale_length=L`` (both kinds, off by default) scales query ``i``'s logits by ``max(1, log(i + 1) / log(L))``
as the authors' patches can (:func:`ropekit.remap.remapped_scores`).

Specs::

    {"kind": "self_extend", "group": 8, "window": 144}  # defaults: group 8, window = max_len // 2
    {"kind": "rerope", "window": 144}                   # default window = max_len // 2
    {"kind": "rerope", "window": 144, "leaky": 8.0}     # Leaky ReRoPE
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from ropekit.models.positions import Dims, PositionEncoding, _check_flag, register_position_encoding
from ropekit.modules import RotaryEmbedding
from ropekit.remap import Remap, ReRoPE, SelfExtend, remapped_scores

__all__ = ["ReRoPEEncoding", "SelfExtendEncoding"]


class _RemappedRoPE(PositionEncoding):
    """Shared code: one :class:`ropekit.RotaryEmbedding` for the angles, one remapping rule for the far pairs."""

    computes_scores = True
    remap: Remap

    def __init__(
        self,
        dims: Dims,
        rope_parameters: Mapping[str, Any] | None,
        interleaved: bool,
        max_position_embeddings: int | None,
        log_scale_length: int | None,
    ) -> None:
        super().__init__()
        self.log_scale_length = log_scale_length
        _check_flag("interleaved", interleaved)
        self.rotary = RotaryEmbedding(
            dims.head_dim,
            rope_parameters,
            interleaved=interleaved,
            max_position_embeddings=max_position_embeddings or dims.max_len,
        )
        if self.rotary.spec.scaling.length_state != "none":
            raise ValueError(
                f"position encoding {self.kind!r} remaps positions, so rope_type "
                f"{self.rotary.spec.rope_type!r}, whose frequencies follow the sequence length, has no one state to "
                "use; give a static rope_type (default, linear, ntk, yarn, llama3, ...)"
            )

    @staticmethod
    def default_window(dims: Dims) -> int:
        """Half the model's ``max_len`` (its training length), at least 1."""
        return max(1, dims.max_len // 2)

    def scores(
        self,
        q: torch.Tensor,
        k: torch.Tensor,
        q_positions: torch.Tensor,
        k_positions: torch.Tensor,
        visible: torch.Tensor,
    ) -> torch.Tensor:
        return remapped_scores(
            q,
            k,
            q_positions,
            k_positions,
            self.remap,
            self.rotary.inv_freq,
            attention_factor=self.rotary.attention_factor,
            interleaved=self.rotary.interleaved,
            visible=visible,
            log_scale_length=self.log_scale_length,
        )

    def extra_repr(self) -> str:
        return f"{self.remap}, log_scale_length={self.log_scale_length}"


@register_position_encoding("self_extend")
class SelfExtendEncoding(_RemappedRoPE):
    """Self-Extend (Jin et al. 2024): RoPE within ``window`` tokens, grouped positions ``floor(p / group)`` (queries
    shifted by ``window - window // group``) beyond it; :class:`ropekit.remap.SelfExtend`.

    Defaults ``window = max_len // 2``, ``group = 8``: the largest remapped distance at length ``L``, about
    ``(L - W) / G + W``, is ``15/16 max_len`` at ``L = 4 max_len``, so four times the training length stays inside
    the distances the model was trained on (the paper's rule for choosing ``G`` and ``W``)."""

    def __init__(
        self,
        dims: Dims,
        group: int = 8,
        window: int | None = None,
        rope_parameters: Mapping[str, Any] | None = None,
        interleaved: bool = False,
        max_position_embeddings: int | None = None,
        log_scale_length: int | None = None,
    ) -> None:
        remap = SelfExtend(group=group, window=self.default_window(dims) if window is None else window)
        super().__init__(dims, rope_parameters, interleaved, max_position_embeddings, log_scale_length)
        self.remap = remap


@register_position_encoding("rerope")
class ReRoPEEncoding(_RemappedRoPE):
    """ReRoPE (Su 2023): distances clipped at ``window`` (``min(d, window)``), or with ``leaky=k`` Leaky ReRoPE
    (``window + (d - window) / k`` beyond it); :class:`ropekit.remap.ReRoPE`. ``window`` defaults to
    ``max_len // 2``: plain ReRoPE's distances never pass ``window``; Leaky ones stay within ``max_len`` up to length
    ``L`` when ``k >= (L - W) / (max_len - W)`` (7 for ``L = 4 max_len`` at the default window)."""

    def __init__(
        self,
        dims: Dims,
        window: int | None = None,
        leaky: float | None = None,
        rope_parameters: Mapping[str, Any] | None = None,
        interleaved: bool = False,
        max_position_embeddings: int | None = None,
        log_scale_length: int | None = None,
    ) -> None:
        remap = ReRoPE(window=self.default_window(dims) if window is None else window, leaky=leaky)
        super().__init__(dims, rope_parameters, interleaved, max_position_embeddings, log_scale_length)
        self.remap = remap
