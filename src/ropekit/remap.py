"""Training-free length extension by position remapping: Self-Extend and ReRoPE / Leaky ReRoPE.

Legend: ``q: [B, H, Tq, D]`` unrotated queries, ``k: [B, H, Tk, D]`` unrotated keys (grouped-query heads already
repeated), ``q_positions: [Tq]`` or ``[B, Tq]``, ``k_positions: [Tk]`` or ``[B, Tk]`` integer token positions,
``d = i - j`` the relative distance of query position ``i`` and key position ``j``, ``W`` the neighbour window.

Both methods keep RoPE's own angles for near pairs (``|d| < W``) and give far pairs a smaller *effective* distance
``d'`` that a model trained at a short length has seen (the rules below; far keys after the query, ``d <= -W``,
the non-causal case, mirror them: ``d'(i, j) = -d'(j, i)``):

* **Self-Extend** (Jin et al. 2024, "LLM Maybe LongLM: Self-Extend LLM Context Window Without Tuning";
  the rule as in the authors' ``self_extend_patch`` of datamllab/LongLM): grouped positions ``floor(p / G)`` for
  queries and keys, the queries shifted by ``W - floor(W / G)`` so the grouped distances continue the neighbour
  ones, ``d' = floor(i / G) - floor(j / G) + W - floor(W / G)`` for ``d >= W``.
* **ReRoPE** (Su 2023, "ReRoPE", kexue.fm/archives/9708, and bojone/rerope ``rerope_patch.py``): the distance is
  clipped, ``d' = min(d, W)``. **Leaky ReRoPE** (same post, ``leaky_rerope_patch.py``): beyond the window it grows
  ``k`` times slower, ``d' = W + (d - W) / k`` (``k = 1`` is RoPE, ``k -> inf`` ReRoPE).

:func:`remapped_scores` computes the pre-softmax logits ``rot(q_i, a) . rot(k_j, b) / sqrt(D)`` with ropekit's own
rotation (:func:`ropekit.rope_cos_sin` + :func:`ropekit.apply_rotary`): RoPE's logit depends on ``a - b`` only, so
each far rule is one pair of remapped query/key positions ``(a, b)`` with ``a - b = d'``
(:meth:`SelfExtend.far_positions`, :meth:`ReRoPE.far_positions`), one more product per side (only over the key
spans that need it), and a ``torch.where`` by distance merges them with the near part (the authors' merge). Keys
are rotated inside, so a KV cache keeps them unrotated. :meth:`SelfExtend.distance` / :meth:`ReRoPE.distance`
state ``d'`` directly from the formulas above, for tests and docs. Pure torch: this is its own reference.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch

from ropekit.angles import check_positions
from ropekit.functional import apply_rotary, rope_cos_sin

__all__ = ["ReRoPE", "Remap", "SelfExtend", "relative_distance", "remapped_scores"]


def _check_int(name: str, value: Any, minimum: int, hint: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}; {hint}")


def relative_distance(q_positions: torch.Tensor, k_positions: torch.Tensor) -> torch.Tensor:
    """``d = i - j``: ``[Tq]`` and ``[Tk]`` -> ``[Tq, Tk]``; with a ``[B, .]`` side -> ``[B, Tq, Tk]``."""
    return q_positions.unsqueeze(-1) - k_positions.unsqueeze(-2)


@dataclass(frozen=True)
class SelfExtend:
    """Self-Extend's remapping: neighbour window ``window`` (``W``), group size ``group`` (``G``).

    ``group=1`` is RoPE at any window; so is any ``window`` beyond the longest distance. The authors pick ``W``
    and ``G`` so that the largest remapped distance, about ``(L - W) / G + W`` at length ``L``, stays within the
    pretraining length.
    """

    group: int
    window: int

    def __post_init__(self) -> None:
        _check_int("Self-Extend group", self.group, 1, "1 is plain RoPE, e.g. 4 or 8 to reach 4x")
        _check_int("Self-Extend window", self.window, 1, "it is the neighbour window in tokens, e.g. 512")

    @property
    def shift(self) -> int:
        """``W - floor(W / G)``: added to the grouped query positions."""
        return self.window - self.window // self.group

    def distance(self, q_positions: torch.Tensor, k_positions: torch.Tensor) -> torch.Tensor:
        """The effective distance ``d'`` (int64): ``[..., Tq, Tk]`` (see :func:`relative_distance`)."""
        qp, kp = q_positions.long(), k_positions.long()
        d = relative_distance(qp, kp)
        g = self.group
        grouped = relative_distance(qp.div(g, rounding_mode="floor"), kp.div(g, rounding_mode="floor"))
        far = torch.where(d > 0, grouped + self.shift, grouped - self.shift)
        return torch.where(d.abs() < self.window, d, far)

    def far_positions(
        self, q_positions: torch.Tensor, k_positions: torch.Tensor, sign: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Positions ``(a [.., Tq], b [.., Tk])`` with ``a_i - b_j = d'`` where ``sign * d >= W``."""
        g = self.group
        return q_positions.div(g, rounding_mode="floor") + sign * self.shift, k_positions.div(g, rounding_mode="floor")


@dataclass(frozen=True)
class ReRoPE:
    """ReRoPE's remapping: window ``window`` (``W``); ``leaky=None`` clips (``d' = min(d, W)``), ``leaky=k``
    continues with slope ``1 / k`` (Leaky ReRoPE, ``k >= 1``; ``k = 1`` is RoPE). Any ``window`` beyond the longest
    distance is RoPE too. bojone/rerope's patches use ``W = 512`` for a model trained at 4096 and ``k = 16``.
    """

    window: int
    leaky: float | None = None

    def __post_init__(self) -> None:
        _check_int("ReRoPE window", self.window, 1, "it is the clipping distance in tokens, e.g. 512")
        k = self.leaky
        if k is not None and (isinstance(k, bool) or not isinstance(k, (int, float)) or not math.isfinite(k) or k < 1):
            raise ValueError(
                f"Leaky ReRoPE factor must be a finite number >= 1 (distances beyond the window grow 1/k as fast), "
                f"got {k!r}; use leaky=None for plain ReRoPE (the clipped distance)"
            )

    def distance(self, q_positions: torch.Tensor, k_positions: torch.Tensor) -> torch.Tensor:
        """The effective distance ``d'`` (float64): ``[..., Tq, Tk]`` (see :func:`relative_distance`)."""
        d = relative_distance(q_positions.long(), k_positions.long()).double()
        w = float(self.window)
        beyond = d.abs() - w  # >= 0 outside the window (the where keeps d inside it)
        far = w if self.leaky is None else w + beyond / self.leaky
        return torch.where(d.abs() < w, d, torch.sign(d) * far)

    def far_positions(
        self, q_positions: torch.Tensor, k_positions: torch.Tensor, sign: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Positions ``(a [.., Tq], b [.., Tk])`` with ``a_i - b_j = d'`` where ``sign * d >= W``.

        ReRoPE: ``a = sign * W``, ``b = 0``. Leaky: ``a = sign * W + (i - sign * W) / k``, ``b = j / k`` (float64
        fractional positions)."""
        w = sign * self.window
        if self.leaky is None:
            return torch.full_like(q_positions, w), torch.zeros_like(k_positions)
        k = float(self.leaky)
        return w + (q_positions.double() - w) / k, k_positions.double() / k


Remap = SelfExtend | ReRoPE


def _rotate(
    x: torch.Tensor, positions: torch.Tensor, inv_freq: torch.Tensor, attention_factor: float, interleaved: bool
) -> torch.Tensor:
    """``x: [B, H, T, D]`` rotated at ``positions`` ``[T]`` / ``[B, T]`` (integer or fractional)."""
    cos, sin = rope_cos_sin(inv_freq, positions, attention_factor=attention_factor)  # [T, r] or [B, T, r]
    if cos.dim() == 3:
        cos, sin = cos.unsqueeze(1), sin.unsqueeze(1)  # [B, 1, T, r]: broadcast over heads
    return apply_rotary(x, cos, sin, interleaved=interleaved)


def _check_inputs(q: torch.Tensor, k: torch.Tensor, q_positions: torch.Tensor, k_positions: torch.Tensor) -> None:
    if not isinstance(q, torch.Tensor) or not isinstance(k, torch.Tensor) or q.dim() != 4 or k.dim() != 4:
        raise ValueError(
            "q and k must be [B, H, Tq, D] and [B, H, Tk, D] tensors, got "
            f"{tuple(getattr(q, 'shape', ()))} and {tuple(getattr(k, 'shape', ()))}"
        )
    if q.shape[:2] != k.shape[:2] or q.shape[-1] != k.shape[-1]:
        raise ValueError(
            f"q {tuple(q.shape)} and k {tuple(k.shape)} must share B, H and D (repeat grouped-query key heads first)"
        )
    for name, pos, x in (("q_positions", q_positions, q), ("k_positions", k_positions, k)):
        check_positions(pos, name=name, dims=(1, 2))
        if pos.shape[-1] != x.shape[-2] or (pos.dim() == 2 and pos.shape[0] not in (1, x.shape[0])):
            raise ValueError(
                f"{name} must be [T={x.shape[-2]}] or [B={x.shape[0]}, T={x.shape[-2]}], got {tuple(pos.shape)}"
            )


def remapped_scores(
    q: torch.Tensor,
    k: torch.Tensor,
    q_positions: torch.Tensor,
    k_positions: torch.Tensor,
    remap: Remap,
    inv_freq: torch.Tensor,
    *,
    attention_factor: float = 1.0,
    interleaved: bool = False,
    visible: torch.Tensor | None = None,
    scale: float | None = None,
    log_scale_length: int | None = None,
) -> torch.Tensor:
    """Pre-softmax logits ``[B, H, Tq, Tk]`` of unrotated ``q``, ``k`` under ``remap`` (no mask applied).

    ``inv_freq: [r]`` and ``attention_factor`` as for :func:`ropekit.rope_cos_sin` (e.g. a
    :class:`ropekit.RotaryEmbedding`'s ``frequencies()``), ``interleaved`` as for :func:`ropekit.apply_rotary`;
    ``scale`` defaults to ``1 / sqrt(D)``. Near pairs (``|d| < W``) get RoPE's logit at ``d``, far pairs RoPE's
    logit at the remapped distance ``d'``. ``log_scale_length=L`` multiplies query ``i``'s logits by
    ``max(1, log(i + 1) / log(L))`` (the log-length scaling both authors' patches offer: bojone/rerope applies it
    with the training length, datamllab/LongLM as ``scale_base``); ``None``: off.

    ``visible`` (bool, broadcastable to ``[B, 1, Tq, Tk]``, optional) saves work: only visible pairs are computed,
    the others are 0 (the caller masks them). Work: queries go in blocks of about ``W`` rows, and each block
    multiplies only the key span that holds its near pairs and the span that holds its far pairs, so a causal
    sequence costs about half a ``q k^T`` plus a band of width ``2 W`` instead of two full products.
    """
    if not isinstance(remap, (SelfExtend, ReRoPE)):
        raise TypeError(f"remap must be a SelfExtend or ReRoPE, got {type(remap).__name__}")
    _check_inputs(q, k, q_positions, k_positions)
    if log_scale_length is not None:
        _check_int("log_scale_length", log_scale_length, 2, "it is the training length L of log(i + 1) / log(L)")
        logs = (q_positions.double().clamp(min=0) + 1).log()  # [Tq] / [B, Tq]
        factor = (logs / math.log(log_scale_length)).clamp(min=1.0)
        factor = factor.unsqueeze(-1) if factor.dim() == 1 else factor[:, None, :, None]  # [Tq, 1] / [B, 1, Tq, 1]
        q = q * factor.to(q.dtype)
    Tq, Tk = q.shape[-2], k.shape[-2]
    root = math.sqrt(q.shape[-1])  # SDPA's scale, as a division (bit-equal to RoPE's q k^T / sqrt(D))
    if visible is not None:
        visible = visible.to(torch.bool)
        visible = visible.reshape((1,) * (4 - visible.dim()) + tuple(visible.shape)).expand(-1, -1, Tq, Tk)

    def rotated(a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return _rotate(q, a, inv_freq, attention_factor, interleaved), _rotate(
            k, b, inv_freq, attention_factor, interleaved
        )

    sides: dict[int, tuple[torch.Tensor, torch.Tensor]] = {0: rotated(q_positions, k_positions)}  # 0: near
    out: torch.Tensor | None = None
    block = max(64, remap.window)
    for r0 in range(0, Tq, block):
        rows = slice(r0, min(Tq, r0 + block))
        d = relative_distance(q_positions[..., rows], k_positions)
        d = d.unsqueeze(1) if d.dim() == 3 else d[None, None]  # [1 or B, 1, rows, Tk]
        masks = {0: d.abs() < remap.window, 1: d >= remap.window, -1: d <= -remap.window}
        for side, mask in masks.items():
            if visible is not None:
                mask = mask & visible[..., rows, :]
            cols = mask.flatten(0, -2).any(0).nonzero()  # keys this block needs on this side
            if not cols.numel():
                continue
            lo, hi = int(cols[0]), int(cols[-1]) + 1
            if side not in sides:
                sides[side] = rotated(*remap.far_positions(q_positions, k_positions, side))
            qa, kb = sides[side]
            raw = qa[..., rows, :] @ kb[..., lo:hi, :].transpose(-1, -2)  # [B, H, rows, hi - lo]
            part = raw / root if scale is None else raw * float(scale)
            if out is None:
                out = part.new_zeros(q.shape[0], q.shape[1], Tq, Tk)
            view = out[..., rows, lo:hi]
            view.copy_(torch.where(mask[..., lo:hi], part, view))
    if out is None:  # nothing visible
        out = q.new_zeros(q.shape[0], q.shape[1], Tq, Tk)
    return out
