"""Read verified xz-compressed JSON-lines data files into validated records."""

from __future__ import annotations

import json
import lzma
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from ropekit.data.errors import DataError
from ropekit.data.manifest import FIX_HINT, file_entry

T = TypeVar("T")

__all__ = ["read_jsonl_xz"]


def read_jsonl_xz(path: Path, name: str, make: Callable[[dict[str, Any]], T]) -> tuple[T, ...]:
    """Decompress ``path``, parse one JSON object per line and convert each with ``make``.

    ``make`` may raise ``KeyError``, ``TypeError`` or ``ValueError`` for a malformed record; any of
    those, a decompression or JSON error, or a record count different from the manifest's becomes
    a :class:`DataError` naming the file and line.
    """
    try:
        raw = lzma.decompress(path.read_bytes())
        # split on "\n" only: JSON strings may hold U+2028, U+0085 etc. that str.splitlines splits on
        lines = raw.decode("utf-8").split("\n")
        if lines and lines[-1] == "":
            lines.pop()
    except (lzma.LZMAError, EOFError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: cannot decompress/decode as UTF-8 xz ({exc}). {FIX_HINT}") from exc
    records = []
    for number, line in enumerate(lines, start=1):
        try:
            obj = json.loads(line)
            if not isinstance(obj, dict):
                raise TypeError(f"expected a JSON object, got {type(obj).__name__}")
            records.append(make(obj))
        except (json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
            raise DataError(f"{path}, line {number}: malformed record ({type(exc).__name__}: {exc}). "
                            f"{FIX_HINT}") from exc
    expected = file_entry(name)["records"]
    if len(records) != expected:
        raise DataError(f"{path}: {len(records)} records, expected {expected}. {FIX_HINT}")
    return tuple(records)


def require(obj: dict[str, Any], key: str, kind: type | tuple[type, ...]) -> Any:
    """``obj[key]`` if it is an instance of ``kind``; else ``TypeError`` / ``KeyError``."""
    value = obj[key]
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise TypeError(f"field {key!r} should be {getattr(kind, '__name__', kind)}, "
                        f"got {type(value).__name__}")
    return value
