"""The one attention block all models share, on ``torch.nn.functional.scaled_dot_product_attention``.

Legend: ``x: [B, T, C]`` (``C = d_model``), ``memory: [B, S, C]`` encoder output, ``q: [B, H, T, D]``,
``k, v: [B, Hk, Tk, D]`` (``Hk`` KV heads, grouped-query attention when ``Hk < H``), ``key_mask: [B, Tk]`` bool
(True = a real token), ``positions``: int offset or int64 ``[T]``/``[B, T]`` (see :mod:`ropekit.models.positions`).

Causal masking is by token order (key ``j`` visible to query ``i`` iff ``j <= i`` in the sequence, cache included),
never by position values, so randomized or explicit positions do not change what a token can see. A sliding
window (Gemma 3 local layers) is by token order too: query ``i`` sees key ``j`` iff ``i - W < j <= i``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from ropekit.models.positions import PositionEncoding, positions_tensor

__all__ = ["Attention", "KVCache", "LayerCache"]


@dataclass
class LayerCache:
    """One layer's cached keys/values: self-attention ``k, v: [B, Hk, Tk, D]`` (already rotated) with their
    positions ``[B, Tk]``; cross-attention keys/values of the encoder memory, computed once."""

    k: torch.Tensor | None = None
    v: torch.Tensor | None = None
    positions: torch.Tensor | None = None
    cross_k: torch.Tensor | None = None
    cross_v: torch.Tensor | None = None


@dataclass
class KVCache:
    """Cache for incremental decoding: one :class:`LayerCache` per decoder layer and the tokens seen so far."""

    layers: list[LayerCache] = field(default_factory=list)
    length: int = 0

    @classmethod
    def empty(cls, n_layers: int) -> KVCache:
        return cls([LayerCache() for _ in range(n_layers)], 0)


class Attention(nn.Module):
    """Multi-head (grouped-query) attention with a pluggable position encoding.

    Args:
        d_model: model width ``C``; ``head_dim = C / n_heads``.
        n_heads: query heads ``H``. n_kv_heads: key/value heads ``Hk`` (divides ``H``; default ``H``).
        causal: mask future tokens (decoders). cross: keys/values come from ``memory`` and no position
            encoding is applied (T5, the original Transformer).
        dropout: attention-probability dropout while training.
        window: sliding-window size ``W`` (local layers, Gemma 3's ``sliding_window``): causal and within the
            last ``W`` tokens. ``None``: full attention.
        temperature: ``(floor_scale, attn_scale)``: Llama 4's NoPE-layer attention temperature tuning, queries at
            token index ``t`` scaled by ``1 + attn_scale * log1p(floor((t + 1) / floor_scale))`` (transformers,
            ``models/llama4/modeling_llama4.py``, ``Llama4TextAttention``; Nakanishi 2025, "Scalable-Softmax Is
            Superior for Attention"). ``None``: no scaling.
    """

    def __init__(
        self,
        d_model: int,
        n_heads: int,
        n_kv_heads: int | None = None,
        *,
        causal: bool = False,
        cross: bool = False,
        dropout: float = 0.0,
        window: int | None = None,
        temperature: tuple[float, float] | None = None,
    ) -> None:
        super().__init__()
        n_kv_heads = n_kv_heads or n_heads
        if window is not None and (not causal or cross or isinstance(window, bool) or not isinstance(window, int)):
            raise ValueError(f"window must be an int on causal self-attention, got {window!r} (causal={causal})")
        if window is not None and window < 1:
            raise ValueError(f"window must be a positive number of tokens, got {window}")
        if temperature is not None and (len(temperature) != 2 or not temperature[0] > 0 or cross):
            raise ValueError(
                f"temperature must be (floor_scale > 0, attn_scale), self-attention only, got {temperature}"
            )
        self.window, self.temperature = window, temperature
        if d_model % n_heads:
            raise ValueError(f"d_model={d_model} must be divisible by n_heads={n_heads}")
        if n_heads % n_kv_heads:
            raise ValueError(f"n_heads={n_heads} must be a multiple of n_kv_heads={n_kv_heads}")
        self.n_heads, self.n_kv_heads, self.head_dim = n_heads, n_kv_heads, d_model // n_heads
        self.causal, self.cross, self.dropout = causal, cross, dropout
        self.q_proj = nn.Linear(d_model, n_heads * self.head_dim, bias=False)
        self.k_proj = nn.Linear(d_model, n_kv_heads * self.head_dim, bias=False)
        self.v_proj = nn.Linear(d_model, n_kv_heads * self.head_dim, bias=False)
        self.o_proj = nn.Linear(n_heads * self.head_dim, d_model, bias=False)

    def _heads(self, x: torch.Tensor, n: int) -> torch.Tensor:
        B, T, _ = x.shape
        return x.view(B, T, n, self.head_dim).transpose(1, 2)  # [B, n, T, D]

    def forward(
        self,
        x: torch.Tensor,
        pe: PositionEncoding | None = None,
        positions: torch.Tensor | int = 0,
        *,
        memory: torch.Tensor | None = None,
        key_mask: torch.Tensor | None = None,
        cache: LayerCache | None = None,
    ) -> torch.Tensor:
        """``x: [B, T, C]`` -> ``[B, T, C]``. ``key_mask: [B, Tk]`` (memory's mask for cross-attention)."""
        B, T, _ = x.shape
        q = self._heads(self.q_proj(x), self.n_heads)  # [B, H, T, D]
        bias = None
        if self.cross:
            if memory is None:
                raise ValueError("cross-attention needs the encoder output: pass memory=[B, S, C]")
            if cache is not None and cache.cross_k is not None and cache.cross_v is not None:
                k, v = cache.cross_k, cache.cross_v
            else:
                k = self._heads(self.k_proj(memory), self.n_kv_heads)  # [B, Hk, S, D]
                v = self._heads(self.v_proj(memory), self.n_kv_heads)
                if cache is not None:
                    cache.cross_k, cache.cross_v = k, v
            past = 0
        else:
            k = self._heads(self.k_proj(x), self.n_kv_heads)  # [B, Hk, T, D]
            v = self._heads(self.v_proj(x), self.n_kv_heads)
            own_scores = pe is not None and pe.computes_scores
            if pe is not None and not own_scores:
                q, k = pe.rotate(q, k, positions)
            past = 0 if cache is None or cache.k is None else cache.k.shape[-2]
            if self.temperature is not None:
                q = q * self._query_scale(past, T, q.device).to(q.dtype)  # [T, 1] over [B, H, T, D]
            q_pos = positions_tensor(positions, T, x.device).expand(B, T)  # [B, T]
            if cache is not None:
                if cache.k is not None and cache.v is not None and cache.positions is not None:
                    k, v = torch.cat((cache.k, k), dim=-2), torch.cat((cache.v, v), dim=-2)  # [B, Hk, Tk, D]
                    k_pos = torch.cat((cache.positions, q_pos), dim=-1)  # [B, Tk]
                else:
                    k_pos = q_pos
                cache.k, cache.v, cache.positions = k, v, k_pos
            else:
                k_pos = q_pos
            if pe is not None and own_scores:
                out = self._attend_scores(pe, q, k, v, q_pos, k_pos, key_mask, past)
                return self.o_proj(out.transpose(1, 2).reshape(B, T, -1))  # [B, T, C]
            if pe is not None:
                bias = pe.bias(q_pos, k_pos)  # [1 or B, H, T, Tk] or None
        out = self._attend(q, k, v, bias, key_mask, past)
        return self.o_proj(out.transpose(1, 2).reshape(B, T, -1))  # [B, T, C]

    def _query_scale(self, past: int, T: int, device: torch.device) -> torch.Tensor:
        """Llama 4 temperature of the queries at token indices ``past .. past + T - 1``: ``[T, 1]`` float32."""
        assert self.temperature is not None
        floor_scale, attn_scale = self.temperature
        t = torch.arange(past, past + T, device=device, dtype=torch.float32)
        return (torch.log1p(torch.floor((t + 1.0) / floor_scale)) * attn_scale + 1.0).unsqueeze(-1)

    @torch.no_grad()
    def logits(
        self, x: torch.Tensor, pe: PositionEncoding | None = None, positions: torch.Tensor | int = 0
    ) -> torch.Tensor:
        """Pre-softmax self-attention scores ``[B, H, T, T]`` of this layer for input ``x: [B, T, C]`` (the input of
        :meth:`forward`, i.e. after the block's norm): ``q k^T / sqrt(D)`` after the position encoding's rotation, plus
        its bias; no mask. For measuring how scores depend on distance (no KV cache, no cross-attention)."""
        if self.cross:
            raise ValueError("logits() measures self-attention; this layer is cross-attention")
        B, T, _ = x.shape
        q = self._heads(self.q_proj(x), self.n_heads)  # [B, H, T, D]
        k = self._heads(self.k_proj(x), self.n_kv_heads)  # [B, Hk, T, D]
        own_scores = pe is not None and pe.computes_scores
        if pe is not None and not own_scores:
            q, k = pe.rotate(q, k, positions)
        if self.temperature is not None:
            q = q * self._query_scale(0, T, q.device).to(q.dtype)
        k = k.repeat_interleave(self.n_heads // self.n_kv_heads, dim=1)  # [B, H, T, D]
        pos = positions_tensor(positions, T, x.device).expand(B, T)  # [B, T]
        if pe is not None and own_scores:  # content-dependent kinds see the layer's own visibility (causal)
            visible = self._visible(T, T, 0, None, x.device)
            every = torch.ones(1, 1, T, T, dtype=torch.bool, device=x.device)
            return pe.scores(q, k, pos, pos, every if visible is None else visible)
        scores = q @ k.transpose(-1, -2) / q.shape[-1] ** 0.5  # [B, H, T, T]; SDPA's scale (PoPE: q is 2D wide)
        if pe is not None:
            bias = pe.bias(pos, pos)
            if bias is not None:
                scores = scores + bias
        return scores

    def _attend(
        self,
        q: torch.Tensor,
        k: torch.Tensor,
        v: torch.Tensor,
        bias: torch.Tensor | None,
        key_mask: torch.Tensor | None,
        past: int,
    ) -> torch.Tensor:
        T, Tk = q.shape[-2], k.shape[-2]
        dropout = self.dropout if self.training else 0.0
        gqa = self.n_kv_heads != self.n_heads
        if bias is None and key_mask is None and self.causal and past == 0 and Tk == T and self.window is None:
            return F.scaled_dot_product_attention(q, k, v, is_causal=True, dropout_p=dropout, enable_gqa=gqa)
        mask = torch.zeros(1, 1, T, Tk, device=q.device, dtype=q.dtype) if bias is None else bias.to(q.dtype)
        visible = self._visible(T, Tk, past, key_mask, q.device)
        if visible is not None:
            mask = mask.masked_fill(~visible, float("-inf"))  # [1 or B, .., T, Tk]
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout, enable_gqa=gqa)

    def _visible(
        self, T: int, Tk: int, past: int, key_mask: torch.Tensor | None, device: torch.device
    ) -> torch.Tensor | None:
        """``[1 or B, 1, T, Tk]`` bool, True where query ``i`` may see key ``j`` (causal by token order, the
        sliding window, ``key_mask``), or ``None`` when every key is visible."""
        visible = None
        if self.causal:
            query_index = (past + torch.arange(T, device=device)).unsqueeze(-1)  # [T, 1]
            visible = torch.arange(Tk, device=device) <= query_index
            if self.window is not None:
                visible &= torch.arange(Tk, device=device) > query_index - self.window
            visible = visible[None, None]  # [1, 1, T, Tk]
        if key_mask is not None:
            keys = key_mask[:, None, None, :].to(torch.bool)  # [B, 1, 1, Tk]
            visible = keys if visible is None else visible & keys
        return visible

    def _attend_scores(
        self,
        pe: PositionEncoding,
        q: torch.Tensor,
        k: torch.Tensor,
        v: torch.Tensor,
        q_pos: torch.Tensor,
        k_pos: torch.Tensor,
        key_mask: torch.Tensor | None,
        past: int,
    ) -> torch.Tensor:
        """Attention with the encoding's own logits (:attr:`PositionEncoding.computes_scores`): ``[B, H, T, D]``."""
        T, Tk = q.shape[-2], k.shape[-2]
        groups = self.n_heads // self.n_kv_heads
        k, v = k.repeat_interleave(groups, dim=1), v.repeat_interleave(groups, dim=1)  # [B, H, Tk, D]
        visible = self._visible(T, Tk, past, key_mask, q.device)
        if visible is None:
            visible = torch.ones(1, 1, T, Tk, dtype=torch.bool, device=q.device)
        scores = pe.scores(q, k, q_pos, k_pos, visible)  # [B, H, T, Tk]
        weights = torch.softmax(scores.float().masked_fill(~visible, float("-inf")), dim=-1).to(v.dtype)
        weights = F.dropout(weights, p=self.dropout if self.training else 0.0)
        return weights @ v  # [B, H, T, D]
