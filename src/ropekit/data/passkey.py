"""Passkey retrieval prompts (Mohtashami & Jaggi, 2023, "Landmark Attention"), built in token space.

A prompt is, in order::

    TASK_DESCRIPTION "\\n"
    filler ... (depth * F tokens)
    "\\nThe pass key is NNNNN. Remember it. NNNNN is the pass key.\\n"
    filler ... (the other (1 - depth) * F tokens)
    "\\nWhat is the pass key? The pass key is"

and the answer is " NNNNN". The task description, key sentence and question are the paper's;
differences from the paper: the prompt is assembled from token ids so its length is exact, the
filler can be any token stream (default: the paper's repeated "The grass is green..." text, see
:func:`default_filler`), and the pass key is always five digits (10000-99999) so every prompt of a
given length has the same layout.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from ropekit.data.tokenizer import ByteTokenizer, Tokenizer

__all__ = ["FILLER_TEXT", "QUESTION", "TASK_DESCRIPTION", "PasskeySample", "default_filler", "passkey_sample"]

TASK_DESCRIPTION = (
    "There is an important info hidden inside a lot of irrelevant text. Find it and memorize them. "
    "I will quiz you about the important information there."
)
FILLER_TEXT = "The grass is green. The sky is blue. The sun is yellow. Here we go. There and back again."
QUESTION = "What is the pass key? The pass key is"


def key_sentence(passkey: int) -> str:
    """``"The pass key is N. Remember it. N is the pass key."``"""
    return f"The pass key is {passkey}. Remember it. {passkey} is the pass key."


@dataclass(frozen=True)
class PasskeySample:
    """One passkey prompt.

    Attributes:
        prompt_ids: int64 ``[length]``, the full prompt ending with "... The pass key is".
        answer_ids: int64 ``[k]``, the tokens of ``" NNNNN"`` that should follow the prompt.
        passkey: the five-digit key.
        key_start: index in ``prompt_ids`` where the key sentence (with its leading newline) begins.
        key_len: number of tokens of the key sentence block.
        depth: achieved relative depth = filler tokens before the key / all filler tokens.
    """

    prompt_ids: torch.Tensor
    answer_ids: torch.Tensor
    passkey: int
    key_start: int
    key_len: int
    depth: float


def default_filler(tokenizer: Tokenizer | None = None, min_tokens: int = 4096) -> list[int]:
    """Token ids of the paper's filler text repeated (space separated) to at least ``min_tokens``."""
    tokenizer = tokenizer if tokenizer is not None else ByteTokenizer()
    unit = tokenizer.encode(FILLER_TEXT + " ")
    return unit * (max(1, min_tokens) // len(unit) + 1)


def _randint(rng: random.Random | np.random.Generator, low: int, high: int) -> int:
    """Uniform integer in ``[low, high]`` from either kind of generator."""
    if isinstance(rng, np.random.Generator):
        return int(rng.integers(low, high + 1))
    return rng.randint(low, high)


def passkey_sample(
    filler_tokens: Sequence[int] | torch.Tensor,
    length: int,
    depth: float,
    rng: random.Random | np.random.Generator,
    tokenizer: Tokenizer | None = None,
    *,
    filler_offset: int | None = None,
) -> PasskeySample:
    """Build one passkey prompt of exactly ``length`` tokens with the key at relative ``depth``.

    Args:
        filler_tokens: filler token ids (non-empty); read cyclically, starting at ``filler_offset``.
        length: total prompt length in tokens.
        depth: where the key goes, 0.0 (right after the task description) to 1.0 (right before
            the question), as a fraction of the filler tokens placed before it.
        rng: draws the pass key (and the filler offset when ``filler_offset`` is None).
        tokenizer: encodes the fixed sentences; must match ``filler_tokens``. Default byte-level.
        filler_offset: start position in ``filler_tokens``; None = random, 0 = from the start.

    Raises:
        ValueError: ``depth`` outside [0, 1], empty filler, or ``length`` too small to hold the
            task description, key sentence and question.
    """
    if not 0.0 <= depth <= 1.0:
        raise ValueError(f"depth={depth}: must be in [0, 1]")
    filler = torch.as_tensor(filler_tokens, dtype=torch.int64).flatten()
    if filler.numel() == 0:
        raise ValueError("filler_tokens is empty")
    tokenizer = tokenizer if tokenizer is not None else ByteTokenizer()
    passkey = _randint(rng, 10000, 99999)
    head = tokenizer.encode(TASK_DESCRIPTION + "\n")
    key = tokenizer.encode("\n" + key_sentence(passkey) + "\n")
    tail = tokenizer.encode("\n" + QUESTION)
    n_fill = length - len(head) - len(key) - len(tail)
    if n_fill < 0:
        raise ValueError(f"length={length} is too small: the fixed text alone takes "
                         f"{len(head) + len(key) + len(tail)} tokens")
    offset = _randint(rng, 0, filler.numel() - 1) if filler_offset is None else filler_offset
    stream = filler[(offset + torch.arange(n_fill)) % filler.numel()]
    n_before = round(depth * n_fill)
    prompt = torch.cat([
        torch.tensor(head, dtype=torch.int64),
        stream[:n_before],
        torch.tensor(key, dtype=torch.int64),
        stream[n_before:],
        torch.tensor(tail, dtype=torch.int64),
    ])
    return PasskeySample(
        prompt_ids=prompt,
        answer_ids=torch.tensor(tokenizer.encode(f" {passkey}"), dtype=torch.int64),
        passkey=passkey,
        key_start=len(head) + n_before,
        key_len=len(key),
        depth=n_before / n_fill if n_fill else depth,
    )
