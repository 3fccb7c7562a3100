"""SpamAssassin public mail corpus, message bodies only, bundled as ``files/spam_assassin.jsonl.xz``."""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ropekit.data._records import read_jsonl_xz, require
from ropekit.data.manifest import cache_key, verified_path

__all__ = ["LABELS", "SPAM_FILE", "SPLITS", "Mail", "load_spam"]

SPAM_FILE = "spam_assassin.jsonl.xz"
SPLITS: tuple[str, ...] = ("train", "validation", "test")
"""The fixed splits stored in the file (80/10/10 per source group; see ``docs/data.md``)."""
LABELS: tuple[str, ...] = ("ham", "spam")
"""Label names; their index is the integer class used by :func:`classification_dataset`."""
_GROUPS = ("easy-ham-1", "easy-ham-2", "hard-ham-1", "spam-1", "spam-2")
_SOURCES = ("text/plain", "text/html", "raw")


@dataclass(frozen=True)
class Mail:
    """One message of the corpus, headers removed.

    Attributes:
        id: stable id ``"<group>/<number>.<md5 prefix>"``, e.g. ``"easy-ham-1/00001.7c53336b"``,
            from the source file name (the md5 prefix is that of the original message).
        group: source folder: ``easy-ham-1``, ``easy-ham-2``, ``hard-ham-1``, ``spam-1`` or ``spam-2``.
        label: ``"ham"`` or ``"spam"``.
        split: ``"train"``, ``"validation"`` or ``"test"`` (fixed, stored in the file).
        source: where the text came from: ``"text/plain"`` parts, the visible text of
            ``"text/html"`` parts, or ``"raw"`` body bytes when the message had neither.
        text: the body text; may be empty (17 image-only spams).
    """

    id: str
    group: str
    label: str
    split: str
    source: str
    text: str

    @property
    def is_spam(self) -> bool:
        """True for spam, False for ham."""
        return self.label == "spam"


def _choice(obj: dict[str, Any], key: str, allowed: tuple[str, ...]) -> str:
    value = require(obj, key, str)
    if value not in allowed:
        raise ValueError(f"field {key!r} is {value!r}, expected one of {allowed}")
    return value


def _mail(obj: dict[str, Any]) -> Mail:
    mail = Mail(
        id=require(obj, "id", str),
        group=_choice(obj, "group", _GROUPS),
        label=_choice(obj, "label", LABELS),
        split=_choice(obj, "split", SPLITS),
        source=_choice(obj, "source", _SOURCES),
        text=require(obj, "text", str),
    )
    if mail.label != ("spam" if mail.group.startswith("spam") else "ham"):
        raise ValueError(f"label {mail.label!r} does not match group {mail.group!r}")
    return mail


@functools.lru_cache(maxsize=4)
def _load(key: tuple[str, int, int]) -> tuple[Mail, ...]:
    return read_jsonl_xz(Path(key[0]), SPAM_FILE, _mail)


def load_spam(split: str = "all", root: str | os.PathLike[str] | None = None) -> list[Mail]:
    """Messages of one split of the SpamAssassin corpus, in id order.

    Args:
        split: ``"train"`` (4,838 messages), ``"validation"`` (605), ``"test"`` (603) or ``"all"``
            (6,046).
        root: folder holding ``spam_assassin.jsonl.xz``; default the bundled files. The file is
            checked against the bundled ``MANIFEST.json`` (size and sha256) before it is parsed.

    Raises:
        ValueError: unknown ``split``.
        DataError: the file is missing, truncated, corrupt or malformed.
    """
    if split != "all" and split not in SPLITS:
        raise ValueError(f"split={split!r}: expected one of {', '.join((*SPLITS, 'all'))}")
    path = verified_path(SPAM_FILE, root)
    mails = _load(cache_key(path))
    return [m for m in mails if split in ("all", m.split)]
