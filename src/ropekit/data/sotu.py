"""State of the Union addresses (1790-2021), bundled as ``files/sotu.jsonl.xz``."""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ropekit.data._records import read_jsonl_xz, require
from ropekit.data.manifest import cache_key, verified_path

__all__ = ["SOTU_FILE", "Speech", "load_sotu"]

SOTU_FILE = "sotu.jsonl.xz"


@dataclass(frozen=True)
class Speech:
    """One State of the Union address.

    Attributes:
        id: unique id ``"<year>_<president slug>"``, e.g. ``"1790_george_washington"`` (1953 and
            1961 each have two speeches, by the outgoing and the incoming president).
        year: year the address was given.
        president: the president's name as in the source, e.g. ``"Franklin D Roosevelt"``.
        party: the president's party, e.g. ``"Democratic"``; ``None`` for no party (Washington).
        text: the full address, one paragraph of plain UTF-8 text (no newlines in the source).
    """

    id: str
    year: int
    president: str
    party: str | None
    text: str


def _speech(obj: dict[str, Any]) -> Speech:
    party = obj["party"]
    if party is not None and not isinstance(party, str):
        raise TypeError(f"field 'party' should be str or null, got {type(party).__name__}")
    return Speech(
        id=require(obj, "id", str),
        year=require(obj, "year", int),
        president=require(obj, "president", str),
        party=party,
        text=require(obj, "text", str),
    )


@functools.lru_cache(maxsize=4)
def _load(key: tuple[str, int, int]) -> tuple[Speech, ...]:
    return read_jsonl_xz(Path(key[0]), SOTU_FILE, _speech)


def load_sotu(root: str | os.PathLike[str] | None = None) -> list[Speech]:
    """All 233 State of the Union addresses, sorted by year then id.

    Args:
        root: folder holding ``sotu.jsonl.xz``; default the bundled files. The file is checked
            against the bundled ``MANIFEST.json`` (size and sha256) before it is parsed.

    Returns:
        A new list of frozen :class:`Speech` records (parsing is cached per file).

    Raises:
        DataError: the file is missing, truncated, corrupt or malformed.
    """
    path = verified_path(SOTU_FILE, root)
    return list(_load(cache_key(path)))
