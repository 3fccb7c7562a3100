"""Language-modelling data from the State of the Union corpus: fixed splits, token streams, windows.

Split rule (by speech, never by position inside a speech): each speech's id is hashed,
``h = int(sha256("ropekit-sotu-split-v1:" + id)[:8], 16)``; speeches are sorted by ``(h, id)`` and
the first 80% (186) go to train, the next 10% (23) to validation, the rest (24) to test. The rule
depends only on the ids, so it never changes; :func:`sotu_split_of` exposes it.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator, Sequence
from typing import NamedTuple

import numpy as np
import torch
from torch.utils.data import Dataset

from ropekit.data.sotu import Speech, load_sotu
from ropekit.data.tokenizer import ByteTokenizer, Tokenizer

__all__ = ["LMSplits", "LMWindows", "lm_batches", "lm_eval_windows", "lm_splits", "sotu_split_of"]

_SALT = "ropekit-sotu-split-v1"
_FRACTIONS = (("train", 0.8), ("validation", 0.1), ("test", 0.1))


class LMSplits(NamedTuple):
    """Token streams, each a 1-D int64 tensor: speeches in year order, each followed by ``eos_id``."""

    train: torch.Tensor
    validation: torch.Tensor
    test: torch.Tensor


def _key(speech_id: str) -> tuple[int, str]:
    return int(hashlib.sha256(f"{_SALT}:{speech_id}".encode()).hexdigest()[:8], 16), speech_id


def sotu_split_of(speeches: Sequence[Speech]) -> dict[str, str]:
    """Map speech id -> ``"train"``/``"validation"``/``"test"`` by the module's fixed rule."""
    order = sorted((s.id for s in speeches), key=_key)
    n = len(order)
    n_train = round(_FRACTIONS[0][1] * n)
    n_val = round(_FRACTIONS[1][1] * n)
    return {sid: ("train" if i < n_train else "validation" if i < n_train + n_val else "test")
            for i, sid in enumerate(order)}


def _encode_stream(texts: Sequence[str], tokenizer: Tokenizer) -> torch.Tensor:
    eos = tokenizer.eos_id
    if isinstance(tokenizer, ByteTokenizer):  # fast path: bytes -> uint8 array, no Python ints
        parts = []
        for t in texts:
            parts.append(np.frombuffer(tokenizer.encode_bytes(t), dtype=np.uint8).astype(np.int64))
            parts.append(np.array([eos], dtype=np.int64))
        return torch.from_numpy(np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64))
    ids: list[int] = []
    for t in texts:
        ids.extend(tokenizer.encode(t))
        ids.append(eos)
    return torch.tensor(ids, dtype=torch.int64)


def lm_splits(tokenizer: Tokenizer | None = None, *, root: str | os.PathLike[str] | None = None) -> LMSplits:
    """Tokenize the State of the Union corpus into fixed train/validation/test streams.

    Args:
        tokenizer: any :class:`~ropekit.data.tokenizer.Tokenizer`; default :class:`ByteTokenizer`.
        root: folder holding ``sotu.jsonl.xz`` (default: bundled).

    Returns:
        :class:`LMSplits` of 1-D int64 tensors. Each split concatenates its speeches in (year, id)
        order, each speech followed by one ``eos_id``. With the byte tokenizer the sizes are
        8,967,735 / 884,120 / 909,536 tokens.
    """
    tokenizer = tokenizer if tokenizer is not None else ByteTokenizer()
    speeches = load_sotu(root)
    split_of = sotu_split_of(speeches)
    streams = {name: _encode_stream([s.text for s in speeches if split_of[s.id] == name], tokenizer)
               for name, _ in _FRACTIONS}
    return LMSplits(**streams)


def _check_stream(ids: torch.Tensor, context_len: int) -> None:
    if ids.dim() != 1:
        raise ValueError(f"ids must be a 1-D token stream, got shape {tuple(ids.shape)}")
    if context_len < 1:
        raise ValueError(f"context_len={context_len}: must be >= 1")
    if ids.numel() < context_len + 1:
        raise ValueError(f"stream of {ids.numel()} tokens is too short for context_len={context_len} "
                         f"(need at least {context_len + 1})")


class LMWindows(Dataset[tuple[torch.Tensor, torch.Tensor]]):
    """Random next-token windows of a token stream, as a map-style ``Dataset``.

    Item ``i`` is ``(x, y)``, both int64 ``[context_len]``, with ``y = ids[s+1 : s+1+context_len]``
    the targets of ``x = ids[s : s+context_len]``. The ``num_samples`` start offsets ``s`` are drawn
    uniformly once, at construction, from ``torch.Generator().manual_seed(seed)``: the dataset is
    fixed and reproducible (shuffle it with a ``DataLoader`` as usual).
    """

    def __init__(self, ids: torch.Tensor, context_len: int, num_samples: int, seed: int = 0) -> None:
        _check_stream(ids, context_len)
        if num_samples < 1:
            raise ValueError(f"num_samples={num_samples}: must be >= 1")
        self.ids = ids.to(torch.int64)
        self.context_len = context_len
        gen = torch.Generator().manual_seed(seed)
        self.starts = torch.randint(0, ids.numel() - context_len, (num_samples,), generator=gen)

    def __len__(self) -> int:
        return int(self.starts.numel())

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        s = int(self.starts[index])
        window = self.ids[s : s + self.context_len + 1]
        return window[:-1], window[1:]


def lm_batches(
    ids: torch.Tensor, context_len: int, batch_size: int, generator: torch.Generator | None = None
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Endless random batches of next-token windows from a token stream.

    Yields:
        ``(x, y)``, both int64 ``[batch_size, context_len]``, ``y`` shifted one token right of ``x``.
        Pass a seeded ``generator`` for reproducible batches.
    """
    _check_stream(ids, context_len)
    if batch_size < 1:
        raise ValueError(f"batch_size={batch_size}: must be >= 1")
    ids = ids.to(torch.int64)
    offsets = torch.arange(context_len + 1)
    while True:
        starts = torch.randint(0, ids.numel() - context_len, (batch_size, 1), generator=generator)
        windows = ids[starts + offsets]
        yield windows[:, :-1], windows[:, 1:]


def lm_eval_windows(ids: torch.Tensor, context_len: int) -> tuple[torch.Tensor, torch.Tensor]:
    """All non-overlapping next-token windows of a stream, for evaluation (e.g. perplexity).

    Returns:
        ``(x, y)``, both int64 ``[n, context_len]`` with ``n = (len(ids) - 1) // context_len``; the
        leftover tail tokens are dropped.
    """
    _check_stream(ids, context_len)
    n = (ids.numel() - 1) // context_len
    ids = ids.to(torch.int64)
    x = ids[: n * context_len].view(n, context_len)
    y = ids[1 : n * context_len + 1].view(n, context_len)
    return x, y
