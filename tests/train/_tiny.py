"""Tiny synthetic tasks and configs shared by the training tests (no bundled data needed)."""

from __future__ import annotations

from types import SimpleNamespace

import torch

from ropekit.models import ModelConfig
from ropekit.train import ClassifyTask, LMTask, ReverseTask, TrainConfig

V = 24


def stream(n: int = 4000, seed: int = 0) -> torch.Tensor:
    """A learnable stream: a noisy repeating pattern over ``V - 3`` symbols."""
    g = torch.Generator().manual_seed(seed)
    base = torch.arange(n) % 7 + (torch.arange(n) // 7) % 3
    noise = (torch.rand(n, generator=g) < 0.1).long() * torch.randint(0, V - 3, (n,), generator=g)
    return (base + noise) % (V - 3)


def lm_task(context_len: int = 16) -> LMTask:
    return LMTask(
        stream(), stream(800, seed=1), context_len=context_len, vocab_size=V, eval_windows=8, source="synthetic"
    )


def classify_task() -> ClassifyTask:
    g = torch.Generator().manual_seed(0)

    def split(n: int) -> SimpleNamespace:
        labels = torch.randint(0, 2, (n,), generator=g)
        lengths = torch.randint(4, 17, (n,), generator=g)
        ids = torch.randint(0, 10, (n, 16), generator=g) + 10 * labels.unsqueeze(-1)  # class-specific symbols
        ids[torch.arange(16) >= lengths.unsqueeze(-1)] = V - 1
        return SimpleNamespace(ids=ids, lengths=lengths, labels=labels)

    return ClassifyTask(split(128), split(32), vocab_size=V, n_classes=2, eval_split="synthetic", max_len=16)


def reverse_task() -> ReverseTask:
    return ReverseTask(
        stream(),
        stream(800, seed=1),
        vocab_size=V,
        pad_id=V - 3,
        bos_id=V - 2,
        eos_id=V - 1,
        max_span=10,
        eval_examples=16,
    )


def model_cfg(pe: object = "rope") -> ModelConfig:
    return ModelConfig(d_model=32, n_heads=4, n_layers=2, max_len=64, pe=pe)


def train_cfg(**kw: object) -> TrainConfig:
    base = {"steps": 8, "batch_size": 8, "lr": 3e-3, "warmup": 2, "eval_every": 4, "ckpt_every": 2, "threads": 1}
    return TrainConfig(**{**base, **kw})
