"""Spam/ham classification tensors from the bundled SpamAssassin bodies."""

from __future__ import annotations

import os
from typing import NamedTuple

import torch

from ropekit.data.spam import LABELS, load_spam
from ropekit.data.tokenizer import ByteTokenizer, Tokenizer

__all__ = ["ClassificationData", "classification_dataset"]


class ClassificationData(NamedTuple):
    """Padded token ids with lengths and labels for one split.

    Attributes:
        ids: int64 ``[N, max_len]``; row ``i`` is ``[bos_id, t_1, ..., t_{L-1}]`` then ``pad_id``
            up to ``max_len``.
        lengths: int64 ``[N]``; ``L`` = number of non-pad positions (>= 1 because of ``bos``).
        labels: int64 ``[N]``; 0 = ham, 1 = spam (index into :data:`~ropekit.data.spam.LABELS`).
        mail_ids: the :class:`~ropekit.data.spam.Mail` ids of the rows, in the same order.
    """

    ids: torch.Tensor
    lengths: torch.Tensor
    labels: torch.Tensor
    mail_ids: tuple[str, ...]


def classification_dataset(
    split: str,
    tokenizer: Tokenizer | None = None,
    max_len: int = 512,
    *,
    root: str | os.PathLike[str] | None = None,
) -> ClassificationData:
    """Tokenize one split of the spam corpus into fixed-size rows.

    Truncation: each body is encoded in full, then only its first ``max_len - 1`` tokens are kept
    after a leading ``bos_id`` (head truncation; nothing from the end of long messages survives).
    Shorter rows are right-padded with ``pad_id``. Rows keep the id order of :func:`load_spam`.

    Args:
        split: ``"train"``, ``"validation"``, ``"test"`` or ``"all"``.
        tokenizer: default :class:`ByteTokenizer`.
        max_len: row length, >= 2.
        root: folder holding ``spam_assassin.jsonl.xz`` (default: bundled).
    """
    if max_len < 2:
        raise ValueError(f"max_len={max_len}: must be >= 2 (bos plus at least one token)")
    tokenizer = tokenizer if tokenizer is not None else ByteTokenizer()
    mails = load_spam(split, root=root)
    ids = torch.full((len(mails), max_len), tokenizer.pad_id, dtype=torch.int64)
    lengths = torch.empty(len(mails), dtype=torch.int64)
    for row, mail in enumerate(mails):
        if isinstance(tokenizer, ByteTokenizer):  # same result as encode(), without the full list
            tokens = list(tokenizer.encode_bytes(mail.text)[: max_len - 1])
        else:
            tokens = tokenizer.encode(mail.text)[: max_len - 1]
        seq = [tokenizer.bos_id, *tokens]
        ids[row, : len(seq)] = torch.tensor(seq, dtype=torch.int64)
        lengths[row] = len(seq)
    labels = torch.tensor([LABELS.index(m.label) for m in mails], dtype=torch.int64)
    return ClassificationData(ids, lengths, labels, tuple(m.id for m in mails))
