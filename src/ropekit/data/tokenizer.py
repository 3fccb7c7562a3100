"""Tokenizers sharing one small protocol: a byte-level default and an optional trained BPE.

Protocol (:class:`Tokenizer`): ``encode(str) -> list[int]``, ``decode(list[int]) -> str`` and the
integer attributes ``vocab_size``, ``pad_id``, ``bos_id``, ``eos_id``.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

__all__ = ["BPETokenizer", "ByteTokenizer", "Tokenizer", "train_bpe"]


@runtime_checkable
class Tokenizer(Protocol):
    """What the dataset helpers need from a tokenizer."""

    @property
    def vocab_size(self) -> int: ...
    @property
    def pad_id(self) -> int: ...
    @property
    def bos_id(self) -> int: ...
    @property
    def eos_id(self) -> int: ...

    def encode(self, text: str) -> list[int]:
        """Token ids of ``text`` (no special tokens added)."""
        ...

    def decode(self, ids: Sequence[int]) -> str:
        """Text of ``ids``; special ids are skipped."""
        ...

    def byte_lengths(self) -> list[int]:
        """Bytes of text each id covers (for loss per byte)."""
        ...


@dataclass(frozen=True)
class ByteTokenizer:
    """UTF-8 bytes as tokens: ids 0..255 are the byte values, then five special ids.

    ======  ======
    id      token
    ======  ======
    0-255   byte
    256     pad
    257     bos
    258     eos
    259     sep
    260     mask
    ======  ======

    ``decode(encode(s)) == s`` for every string that is valid Unicode (no lone surrogates).
    Decoding skips special ids and replaces invalid UTF-8 (e.g. a sequence cut mid-character)
    with U+FFFD.
    """

    pad_id: int = field(default=256, init=False)
    bos_id: int = field(default=257, init=False)
    eos_id: int = field(default=258, init=False)
    sep_id: int = field(default=259, init=False)
    mask_id: int = field(default=260, init=False)
    vocab_size: int = field(default=261, init=False)

    def encode(self, text: str) -> list[int]:
        """The UTF-8 bytes of ``text`` as ids 0..255.

        Raises:
            ValueError: ``text`` holds a lone surrogate, which has no UTF-8 encoding.
        """
        try:
            return list(text.encode("utf-8"))
        except UnicodeEncodeError as exc:
            raise ValueError(f"cannot encode text as UTF-8 ({exc.reason} at index {exc.start}); "
                             "strings must not contain lone surrogates") from exc

    def encode_bytes(self, text: str) -> bytes:
        """Like :meth:`encode` but as ``bytes`` (ids < 256), for fast conversion to arrays."""
        return text.encode("utf-8")

    def byte_lengths(self) -> list[int]:
        """UTF-8 bytes each id stands for: 1 for ids 0..255, 0 for the special ids."""
        return [1] * 256 + [0] * (self.vocab_size - 256)

    def decode(self, ids: Iterable[int]) -> str:
        """Text from ids; ids >= 256 (special) are skipped, invalid UTF-8 becomes U+FFFD.

        Raises:
            ValueError: an id is negative or >= ``vocab_size``.
        """
        out = bytearray()
        for i in ids:
            i = int(i)
            if i < 256:
                if i < 0:
                    raise ValueError(f"token id {i} is negative")
                out.append(i)
            elif i >= self.vocab_size:
                raise ValueError(f"token id {i} is out of range (vocab_size={self.vocab_size})")
        return out.decode("utf-8", errors="replace")


_SPECIALS = ("<pad>", "<bos>", "<eos>")
_TRAIN_HINT = "install the training extra: pip install 'ropekit[train]' (or pip install tokenizers)"


def _tokenizers_module() -> Any:
    try:
        import tokenizers
    except ImportError as exc:
        raise ImportError(f"train_bpe and BPETokenizer need the `tokenizers` package; {_TRAIN_HINT}") from exc
    return tokenizers


class BPETokenizer:
    """A byte-level BPE tokenizer (Hugging Face ``tokenizers``) behind the :class:`Tokenizer` protocol.

    Special ids: ``<pad>`` = 0, ``<bos>`` = 1, ``<eos>`` = 2. Byte-level pre-tokenization makes
    ``decode(encode(s)) == s`` for any valid Unicode string. Build with :func:`train_bpe` or
    :meth:`from_file`.
    """

    def __init__(self, backend: Any) -> None:
        """Wrap a ``tokenizers.Tokenizer`` that defines ``<pad>``, ``<bos>`` and ``<eos>``."""
        ids = [backend.token_to_id(t) for t in _SPECIALS]
        if any(i is None for i in ids):
            raise ValueError(f"the tokenizer must define the special tokens {_SPECIALS}")
        self._backend = backend
        self.pad_id, self.bos_id, self.eos_id = ids

    @property
    def vocab_size(self) -> int:
        """Number of ids, special tokens included."""
        return int(self._backend.get_vocab_size(with_added_tokens=True))

    @property
    def backend(self) -> Any:
        """The wrapped ``tokenizers.Tokenizer``."""
        return self._backend

    def encode(self, text: str) -> list[int]:
        """Token ids of ``text`` (no special tokens added)."""
        return list(self._backend.encode(text, add_special_tokens=False).ids)

    def encode_batch(self, texts: Sequence[str]) -> list[list[int]]:
        """:meth:`encode` for many texts at once (parallel in the Rust backend)."""
        return [list(e.ids) for e in self._backend.encode_batch(list(texts), add_special_tokens=False)]

    def decode(self, ids: Sequence[int]) -> str:
        """Text of ``ids``; special ids are skipped."""
        return str(self._backend.decode([int(i) for i in ids], skip_special_tokens=True))

    def byte_lengths(self) -> list[int]:
        """UTF-8 bytes each id stands for (0 for the special ids).

        Byte-level BPE spells every token with one printable character per byte (GPT-2's byte-to-unicode
        alphabet), so a token's length in characters is its length in bytes.
        """
        specials = {self.pad_id, self.bos_id, self.eos_id}
        return [0 if i in specials else len(self._backend.id_to_token(i)) for i in range(self.vocab_size)]

    def to_json(self) -> str:
        """The tokenizer as one JSON document (the content :meth:`save` writes)."""
        return str(self._backend.to_str())

    @classmethod
    def from_json(cls, text: str) -> BPETokenizer:
        """Rebuild a tokenizer from :meth:`to_json`.

        Raises:
            ValueError: ``text`` is not a tokenizer JSON document with the three special tokens.
        """
        try:
            backend = _tokenizers_module().Tokenizer.from_str(text)
        except Exception as exc:  # the Rust backend raises a bare Exception on malformed input
            raise ValueError(f"not a valid tokenizers JSON document ({exc})") from None
        return cls(backend)

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the tokenizer as one JSON file (readable by :meth:`from_file`).

        Written with :func:`ropekit.fileio.atomic_write` (temporary file, fsync, rename), so a crash never leaves
        a half-written file.
        """
        from ropekit.fileio import atomic_write

        atomic_write(path, self.to_json().encode("utf-8"))

    @classmethod
    def from_file(cls, path: str | os.PathLike[str]) -> BPETokenizer:
        """Load a tokenizer written by :meth:`save`.

        Raises:
            FileNotFoundError: ``path`` does not exist.
            ValueError: the file is not a tokenizer JSON document (e.g. truncated or edited).
        """
        with open(os.fspath(path), encoding="utf-8", errors="replace") as f:
            text = f.read()
        try:
            return cls.from_json(text)
        except ValueError as exc:
            raise ValueError(f"{os.fspath(path)}: {exc}; expected a file written by BPETokenizer.save") from None


def train_bpe(texts: Iterable[str], vocab_size: int, *, min_frequency: int = 2) -> BPETokenizer:
    """Train a byte-level BPE tokenizer on ``texts``.

    Args:
        texts: training texts (e.g. ``[s.text for s in load_sotu()]`` restricted to the train split).
        vocab_size: target size including the 256 byte symbols and 3 special tokens; must be >= 259.
        min_frequency: minimum pair count for a merge.

    Returns:
        A :class:`BPETokenizer`; deterministic for the same texts and arguments.

    Raises:
        ImportError: ``tokenizers`` is not installed (it comes with the ``ropekit[train]`` extra).
        ValueError: ``vocab_size`` < 259.
    """
    if vocab_size < 256 + len(_SPECIALS):
        raise ValueError(f"vocab_size={vocab_size}: must be at least {256 + len(_SPECIALS)} "
                         "(256 byte symbols + 3 special tokens)")
    tk = _tokenizers_module()
    backend = tk.Tokenizer(tk.models.BPE())
    backend.pre_tokenizer = tk.pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    backend.decoder = tk.decoders.ByteLevel()
    trainer = tk.trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=min_frequency,
        special_tokens=list(_SPECIALS),
        initial_alphabet=tk.pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    backend.train_from_iterator(texts, trainer=trainer)
    return BPETokenizer(backend)
