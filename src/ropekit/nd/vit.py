"""A small Vision Transformer for the vision experiment, with a choice of position encoding.

Patch embedding (non-overlapping ``patch x patch`` conv), pre-norm blocks, mean pooling (no class token: a
class token without a position would make the relative encodings depend on absolute positions), linear head.

Position encodings (``PE_KINDS``):

* ``"absolute"``: learned ``[dim, G0, G0]`` table added to the patch embeddings (ViT); at another grid size or
  shift it is resampled bilinearly at the patch coordinates mapped into the training grid (DeiT-style
  interpolation), clamped at the border.
* ``"axial"``, ``"mixed"``, ``"lie_commuting"``, ``"liere"``: rotations of q and k in every attention layer
  (:mod:`ropekit.nd.modules`), driven by the patch coordinates ``(row + shift, col + shift)``.
* ``"none"``: no position information (a reference point).

Legend: ``images: [B, 1, S, S]`` float in [0, 1], ``G = S // patch`` patches per side, ``T = G * G`` tokens,
``x: [B, T, dim]``, ``q, k, v: [B, H, T, dh]``, logits ``[B, n_classes]``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ropekit.nd.functional import grid_positions
from ropekit.nd.modules import AxialRotaryEmbedding, CommutingLieEmbedding, LieREEmbedding, MixedRotaryEmbedding

__all__ = ["PE_KINDS", "TinyViT"]

PE_KINDS = ("absolute", "axial", "mixed", "lie_commuting", "liere", "none")
_ROTARY = {"axial", "mixed", "lie_commuting", "liere"}


def _rotary_module(kind: str, head_dim: int, heads: int, generator: torch.Generator) -> nn.Module:
    if kind == "axial":
        return AxialRotaryEmbedding(head_dim, 2, base=100.0)  # RoPE-ViT's base for images
    if kind == "mixed":
        return MixedRotaryEmbedding(head_dim, heads, 2, base=10.0, generator=generator)  # RoPE-Mixed's base
    if kind == "lie_commuting":
        return CommutingLieEmbedding(head_dim, 2, base=100.0)
    return LieREEmbedding(head_dim, 2, generator=generator)


class ViTBlock(nn.Module):
    def __init__(self, dim: int, heads: int, mlp_ratio: int, rotary: nn.Module | None) -> None:
        super().__init__()
        self.heads, self.rotary = heads, rotary
        self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.qkv, self.proj = nn.Linear(dim, 3 * dim), nn.Linear(dim, dim)
        self.mlp = nn.Sequential(nn.Linear(dim, mlp_ratio * dim), nn.GELU(), nn.Linear(mlp_ratio * dim, dim))

    def forward(self, x: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        B, T, dim = x.shape
        qkv = self.qkv(self.norm1(x)).view(B, T, 3, self.heads, dim // self.heads)  # [B, T, 3, H, dh]
        q, k, v = qkv.permute(2, 0, 3, 1, 4)  # each [B, H, T, dh]
        if self.rotary is not None:
            q, k = self.rotary(q, k, positions)
        att = F.scaled_dot_product_attention(q, k, v)  # [B, H, T, dh]
        x = x + self.proj(att.transpose(1, 2).reshape(B, T, dim))  # [B, T, dim]
        return x + self.mlp(self.norm2(x))


class TinyViT(nn.Module):
    """ViT classifier with a selectable position encoding (see the module docstring).

    Args:
        pe: one of ``PE_KINDS``.
        image_size: training side length ``S`` (sets the absolute table's grid ``G0 = S // patch``).
        patch, dim, depth, heads, mlp_ratio, n_classes: the usual sizes; ``dim / heads`` must be divisible by 4.
        seed: seeds the random initial frequencies / generators of ``mixed`` and ``liere``.
    """

    def __init__(
        self,
        pe: str,
        *,
        image_size: int = 28,
        patch: int = 7,
        dim: int = 64,
        depth: int = 2,
        heads: int = 4,
        mlp_ratio: int = 2,
        n_classes: int = 10,
        seed: int = 0,
    ) -> None:
        super().__init__()
        if pe not in PE_KINDS:
            raise ValueError(f"pe must be one of {PE_KINDS}, got {pe!r}")
        if dim % heads or (dim // heads) % 4:
            raise ValueError(f"dim / heads must be a multiple of 4 (two axes of pairs), got dim={dim}, heads={heads}")
        self.pe, self.patch, self.grid0 = pe, patch, image_size // patch
        self.embed = nn.Conv2d(1, dim, patch, stride=patch)
        gen = torch.Generator().manual_seed(seed)
        self.table = (
            nn.Parameter(0.02 * torch.randn(dim, self.grid0, self.grid0, generator=gen)) if pe == "absolute" else None
        )
        self.blocks = nn.ModuleList(
            ViTBlock(dim, heads, mlp_ratio, _rotary_module(pe, dim // heads, heads, gen) if pe in _ROTARY else None)
            for _ in range(depth)
        )
        self.norm, self.head = nn.LayerNorm(dim), nn.Linear(dim, n_classes)

    def _absolute(self, G: int, shift: float) -> torch.Tensor:
        """The table resampled at a ``G x G`` grid moved by ``shift`` training patches: ``[G*G, dim]``."""
        scale = (self.grid0 - 1) / max(G - 1, 1)
        assert self.table is not None  # the interpolated learned table exists for this kind
        coords = torch.arange(G, dtype=torch.float32, device=self.table.device) * scale + shift  # [G], grid units
        norm = 2 * coords / max(self.grid0 - 1, 1) - 1  # [G] in grid_sample's [-1, 1]
        gy, gx = torch.meshgrid(norm, norm, indexing="ij")  # [G, G] each
        grid = torch.stack((gx, gy), dim=-1).unsqueeze(0)  # [1, G, G, 2], (x = column, y = row)
        pe = F.grid_sample(self.table.unsqueeze(0), grid, mode="bilinear", padding_mode="border", align_corners=True)
        return pe[0].flatten(1).T  # [G*G, dim]

    def forward(self, images: torch.Tensor, *, shift: float = 0.0, interpolate_positions: bool = False) -> torch.Tensor:
        """``images: [B, 1, S, S]`` -> logits ``[B, n_classes]``; ``shift`` moves every patch coordinate.

        ``interpolate_positions``: rotary coordinates step by ``(G0 - 1) / (G - 1)`` so a larger grid spans the
        training range (position interpolation); default: integer patch indices (extrapolation, as RoPE-ViT).
        The absolute table is always interpolated.
        """
        if images.dim() != 4 or images.shape[1] != 1 or images.shape[-1] % self.patch:
            raise ValueError(
                f"images must be [B, 1, S, S] with S a multiple of patch={self.patch}, got {tuple(images.shape)}"
            )
        x = self.embed(images)  # [B, dim, G, G]
        G = x.shape[-1]
        x = x.flatten(2).transpose(1, 2)  # [B, T, dim], row-major patches
        if self.table is not None:
            x = x + self._absolute(G, shift)
        step = (self.grid0 - 1) / max(G - 1, 1) if interpolate_positions else 1.0
        positions = grid_positions(G, G, offset=shift, step=step).to(x.device)  # [T, 2], the patches' order
        for block in self.blocks:
            x = block(x, positions)
        return self.head(self.norm(x.mean(dim=1)))  # [B, n_classes]
