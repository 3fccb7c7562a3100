"""A deliberately small transformer for the report's experiments, with switchable position encodings.

Legend: ``ids: [B, T]`` int64 tokens, ``h: [B, T, C]`` hidden states (``C = d_model``),
``q, k, v: [B, H, T, D]`` (``D = C / H``), ``positions: [T]`` or ``[B, T]`` int64, ``bias: [H, T, T]``.

Position encodings (``PosSpec.kind``):

* ``rope``: rotary on q and k with any Hugging Face ``rope_parameters`` (swappable after training:
  that is how the zero-shot scaling rows are evaluated), via :func:`ropekit.rope_frequencies`,
  :func:`ropekit.rope_cos_sin` and :func:`ropekit.apply_rotary`.
* ``prope``: p-RoPE (Barbero et al. 2024): only the highest-frequency fraction ``p`` of pairs rotates.
* ``rand_rope``: RoPE trained on randomized positions (Ruoss et al. 2023): a sorted random subset of
  ``[0, rand_max)`` per row while training, ``arange(T)`` at evaluation.
* ``xpos``: RoPE with xPos scaling (Sun et al. 2022): ``q * zeta^(n/B)``, ``k * zeta^(-n/B)``,
  ``zeta_i = (2 floor(i/2) / d + 0.4) / 1.4`` per feature (pairs in the half layout share ``i``), ``B = 512``.
* ``alibi``: linear bias ``-slope_h * |i - j|`` (Press et al. 2022), slopes ``2^(-8h/H)``.
* ``sinusoidal``: Vaswani et al.'s table added to the embeddings; ``learned``: ``nn.Embedding(max_len, C)``.
* ``nope``: nothing (causal masking alone carries order in a decoder).

This module exists so the report does not depend on the models package while it is being written; it is
a plain pre-norm transformer (attention + GELU MLP), nothing more.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ropekit import apply_rotary, rope_cos_sin, rope_frequencies, sinusoidal_table

__all__ = ["KINDS", "PosSpec", "TinyLM", "TinyTransformer", "random_positions", "train_steps"]

KINDS = ("rope", "prope", "rand_rope", "xpos", "alibi", "sinusoidal", "learned", "nope")


@dataclass(frozen=True)
class PosSpec:
    """Which position encoding, and its few parameters."""

    kind: str = "rope"
    rope_parameters: Mapping[str, Any] = field(default_factory=lambda: {"rope_type": "default", "rope_theta": 10000.0})
    p: float = 0.75  # p-RoPE: fraction of (highest-frequency) pairs that rotate
    rand_max: int = 1024  # randomized positions are drawn from [0, rand_max)
    max_len: int = 512  # learned absolute table size
    xpos_scale_base: float = 512.0

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown position encoding {self.kind!r}; expected one of {KINDS}")
        if not 0.0 <= self.p <= 1.0:
            raise ValueError(f"p-RoPE fraction p={self.p} must be in [0, 1]")


def random_positions(batch: int, length: int, rand_max: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """Sorted random subsets of ``[0, rand_max)``: ``[batch, length]`` int64 (Ruoss et al. 2023)."""
    if length > rand_max:
        raise ValueError(f"cannot draw {length} distinct positions from [0, {rand_max}); raise rand_max")
    scores = torch.rand(batch, rand_max, generator=generator)
    picked = scores.topk(length, dim=-1).indices  # [B, T] distinct
    return picked.sort(dim=-1).values


def alibi_slopes(n_heads: int) -> torch.Tensor:
    """``[H]`` geometric slopes ``2^(-8 h / H)``, h = 1..H (Press et al. 2022, for H a power of two)."""
    return torch.tensor([2.0 ** (-8.0 * (h + 1) / n_heads) for h in range(n_heads)])


class _Block(nn.Module):
    def __init__(self, d_model: int, n_heads: int) -> None:
        super().__init__()
        self.n_heads = n_heads
        self.ln1, self.ln2 = nn.LayerNorm(d_model), nn.LayerNorm(d_model)
        self.qkv = nn.Linear(d_model, 3 * d_model, bias=False)
        self.out = nn.Linear(d_model, d_model, bias=False)
        self.mlp = nn.Sequential(nn.Linear(d_model, 4 * d_model), nn.GELU(), nn.Linear(4 * d_model, d_model))

    def forward(self, h: torch.Tensor, rotate: Any, mask: torch.Tensor | None, causal: bool) -> torch.Tensor:
        B, T, C = h.shape
        q, k, v = self.qkv(self.ln1(h)).view(B, T, 3, self.n_heads, C // self.n_heads).permute(2, 0, 3, 1, 4)
        # q, k, v: [B, H, T, D]
        if rotate is not None:
            q, k = rotate(q, k)
        a = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=causal and mask is None)
        h = h + self.out(a.transpose(1, 2).reshape(B, T, C))  # [B, T, C]
        return h + self.mlp(self.ln2(h))


class TinyTransformer(nn.Module):
    """Embedding, ``n_layers`` pre-norm blocks, final norm; ``forward`` returns hidden states ``[B, T, C]``.

    ``causal=True`` for language models, ``False`` for the classifier (then pass ``pad_mask``).
    ``set_rope_parameters`` swaps the rotary scaling after training (rope kinds only).
    """

    def __init__(
        self, vocab_size: int, *, d_model: int = 64, n_heads: int = 4, n_layers: int = 2, pos: PosSpec, causal: bool
    ) -> None:
        super().__init__()
        if d_model % n_heads or (d_model // n_heads) % 2:
            raise ValueError(f"d_model={d_model} must split into {n_heads} heads of even size")
        self.pos, self.causal, self.n_heads = pos, causal, n_heads
        self.head_dim = d_model // n_heads
        self.embed = nn.Embedding(vocab_size, d_model)
        self.blocks = nn.ModuleList(_Block(d_model, n_heads) for _ in range(n_layers))
        self.norm = nn.LayerNorm(d_model)
        self.learned = nn.Embedding(pos.max_len, d_model) if pos.kind == "learned" else None
        self.rope_parameters: Mapping[str, Any] = pos.rope_parameters
        self.max_position_embeddings: int | None = None
        if pos.kind == "xpos":  # zeta per feature in the half layout: feature j and j + r share pair j
            r = self.head_dim // 2
            zeta = (2 * torch.arange(r, dtype=torch.float32) / self.head_dim + 0.4) / 1.4
            self.register_buffer("xpos_zeta", torch.cat([zeta, zeta]), persistent=False)

    def set_rope_parameters(self, params: Mapping[str, Any], max_position_embeddings: int | None = None) -> None:
        """Use new ``rope_parameters`` (e.g. a scaling type) from now on; weights are untouched."""
        if self.pos.kind not in ("rope", "rand_rope", "xpos"):
            raise ValueError(f"set_rope_parameters needs a rotary model, this one uses {self.pos.kind!r}")
        self.rope_parameters = dict(params)
        self.max_position_embeddings = max_position_embeddings

    def _rotary(self, positions: torch.Tensor, seq_len: int) -> Any:
        inv_freq, attention_factor = rope_frequencies(
            self.rope_parameters,
            head_dim=self.head_dim,
            max_position_embeddings=self.max_position_embeddings,
            seq_len=seq_len,
        )
        if self.pos.kind == "prope":  # keep the highest-frequency fraction p of pairs; the rest do not rotate
            keep = round(self.pos.p * inv_freq.numel())
            inv_freq = torch.cat([inv_freq[:keep], torch.zeros(inv_freq.numel() - keep)])
        cos, sin = rope_cos_sin(inv_freq, positions, attention_factor=attention_factor)  # [T, r] or [B, T, r]
        if cos.dim() == 3:
            cos, sin = cos[:, None], sin[:, None]  # [B, 1, T, r]
        if self.pos.kind != "xpos":
            return lambda q, k: (apply_rotary(q, cos, sin), apply_rotary(k, cos, sin))
        power = (positions.to(torch.float32) / self.pos.xpos_scale_base)[..., None]  # [T, 1] or [B, T, 1]
        scale = self.xpos_zeta**power  # [T, D] or [B, T, D]
        if scale.dim() == 3:
            scale = scale[:, None]  # [B, 1, T, D]
        return lambda q, k: (apply_rotary(q * scale, cos, sin), apply_rotary(k / scale, cos, sin))

    def _alibi_mask(self, T: int, device: torch.device) -> torch.Tensor:
        i = torch.arange(T, device=device)
        dist = (i[:, None] - i[None, :]).abs().to(torch.float32)  # [T, T]
        bias = -alibi_slopes(self.n_heads).to(device)[:, None, None] * dist  # [H, T, T]
        if self.causal:
            bias = bias.masked_fill(i[None, :] > i[:, None], float("-inf"))
        return bias

    def forward(
        self,
        ids: torch.Tensor,
        *,
        positions: torch.Tensor | None = None,
        pad_mask: torch.Tensor | None = None,
        seq_len: int | None = None,
    ) -> torch.Tensor:
        """``ids: [B, T]``; ``positions`` default ``arange(T)``; ``pad_mask: [B, T]`` True at real tokens.

        ``seq_len``: the length that length-dependent scalings (dynamic NTK) see; default ``positions.max() + 1``.
        """
        T = ids.shape[1]
        if positions is None:
            positions = torch.arange(T, device=ids.device)
        h = self.embed(ids)  # [B, T, C]
        kind = self.pos.kind
        if kind == "sinusoidal":
            h = h + sinusoidal_table(positions, h.shape[-1]).to(h.dtype)
        elif kind == "learned":
            if int(positions.max()) >= self.pos.max_len:
                raise ValueError(
                    f"learned positions cover {self.pos.max_len} positions, got position "
                    f"{int(positions.max())}; raise PosSpec.max_len"
                )
            h = h + self.learned(positions)
        rotate = None
        if kind in ("rope", "prope", "rand_rope", "xpos"):
            rotate = self._rotary(positions, seq_len or int(positions.max()) + 1)
        mask: torch.Tensor | None = self._alibi_mask(T, ids.device) if kind == "alibi" else None
        if pad_mask is not None:
            keep = pad_mask[:, None, None, :]  # [B, 1, 1, T]: attend only to real keys
            pad_bias = torch.zeros(keep.shape, dtype=h.dtype, device=ids.device).masked_fill(~keep, float("-inf"))
            mask = pad_bias if mask is None else mask[None] + pad_bias
            if self.causal:
                i = torch.arange(T, device=ids.device)
                mask = mask.masked_fill(i[None, :] > i[:, None], float("-inf"))
        for block in self.blocks:
            h = block(h, rotate, mask, self.causal)
        return self.norm(h)


def lm_head_logits(model: TinyTransformer, head: nn.Linear, ids: torch.Tensor, **kwargs: Any) -> torch.Tensor:
    """``[B, T, V]`` next-token logits."""
    return head(model(ids, **kwargs))


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def cosine_lr(step: int, total: int, peak: float, warmup: int = 20) -> float:
    """Linear warm-up then cosine decay to 10% of ``peak``."""
    if step < warmup:
        return peak * (step + 1) / warmup
    t = (step - warmup) / max(1, total - warmup)
    return peak * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, t))))


class TinyLM(nn.Module):
    """Decoder-only LM: :class:`TinyTransformer` (causal) plus an untied output layer. ``logits: [B, T, V]``."""

    def __init__(
        self, vocab_size: int, *, pos: PosSpec, d_model: int = 64, n_heads: int = 4, n_layers: int = 2
    ) -> None:
        super().__init__()
        self.body = TinyTransformer(
            vocab_size, d_model=d_model, n_heads=n_heads, n_layers=n_layers, pos=pos, causal=True
        )
        self.head = nn.Linear(d_model, vocab_size, bias=False)

    def forward(self, ids: torch.Tensor, **kwargs: Any) -> torch.Tensor:
        return self.head(self.body(ids, **kwargs))


def train_steps(
    model: nn.Module,
    loss_fn: Any,
    batches: Any,
    *,
    steps: int,
    lr: float,
    desc: str,
    weight_decay: float = 0.01,
) -> list[float]:
    """AdamW with warm-up + cosine decay and grad-norm clipping at 1; ``loss_fn(model, batch) -> scalar``.

    Returns the training loss of every step.
    """
    from ropekit.experiments._common import progress

    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay, betas=(0.9, 0.98))
    model.train()
    losses = []
    for step in progress(range(steps), desc=desc):
        for group in opt.param_groups:
            group["lr"] = cosine_lr(step, steps, lr, warmup=min(50, steps // 10 + 1))
        loss = loss_fn(model, next(batches))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        losses.append(float(loss.detach()))
    model.eval()
    return losses
