"""An order-blind reference model for classification: logistic regression on token counts (bag of tokens).

It sees the same tokens as :class:`~ropekit.models.EncoderClassifier` but no order at all, so the gap between the two
is what order (and a deeper model) adds. Features are ``log1p(count)`` per vocabulary id over the real tokens,
standardised with statistics fitted once on the training rows (:meth:`BagOfTokensClassifier.fit_scaling`).

Legend: ``ids: [B, T]`` int64 right-padded tokens, ``lengths: [B]`` real tokens per row, ``logits: [B, K]``.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["BagOfTokensClassifier"]


class BagOfTokensClassifier(nn.Module):
    """``logits = W standardise(log1p(counts(ids))) + b``; invariant to any permutation of a row's real tokens."""

    mean: torch.Tensor
    std: torch.Tensor

    def __init__(self, vocab_size: int, n_classes: int = 2) -> None:
        super().__init__()
        self.vocab_size = vocab_size
        self.linear = nn.Linear(vocab_size, n_classes)
        nn.init.zeros_(self.linear.weight)
        nn.init.zeros_(self.linear.bias)
        self.register_buffer("mean", torch.zeros(vocab_size))
        self.register_buffer("std", torch.ones(vocab_size))

    def counts(self, ids: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        """``log1p`` token counts over the real tokens: ``[B, V]``."""
        keep = torch.ones_like(ids, dtype=torch.float32)
        if lengths is not None:
            keep = (torch.arange(ids.shape[1], device=ids.device) < lengths.unsqueeze(-1)).float()  # [B, T]
        c = torch.zeros(ids.shape[0], self.vocab_size, device=ids.device).scatter_add_(1, ids, keep)
        return torch.log1p(c)

    @torch.no_grad()
    def fit_scaling(self, ids: torch.Tensor, lengths: torch.Tensor | None = None) -> BagOfTokensClassifier:
        """Set the feature mean and std from training rows (ids unseen in training get std 1)."""
        feats = self.counts(ids, lengths)
        self.mean.copy_(feats.mean(0))
        self.std.copy_(feats.std(0).clamp(min=1e-6))
        return self

    def forward(self, ids: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        """``ids: [B, T]``, ``lengths: [B]`` -> ``logits: [B, K]``."""
        return self.linear((self.counts(ids, lengths) - self.mean) / self.std)
