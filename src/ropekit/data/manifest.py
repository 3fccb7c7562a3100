"""Locate bundled data files and verify them against ``files/MANIFEST.json`` before use.

``MANIFEST.json`` (written by ``scripts/build_datasets.py``) records for every data file its sha256,
its size in bytes, its source package and licence, and its record count. The manifest shipped with
the package is the reference: a ``root`` argument only says where to look for the data files
themselves (tests point it at damaged copies), never where to read the expected checksums from.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
from pathlib import Path
from typing import Any

from ropekit.data.errors import DataError

__all__ = ["DATA_DIR", "FIX_HINT", "cache_key", "file_entry", "load_manifest", "resolve", "verified_path"]

DATA_DIR: Path = Path(__file__).resolve().parent / "files"
"""Folder of the bundled data files (``src/ropekit/data/files`` in a checkout)."""

MANIFEST_NAME = "MANIFEST.json"

FIX_HINT = (
    "The bundled data files are immutable: restore them with `git checkout -- src/ropekit/data/files` "
    "(or re-clone / re-install ropekit), or rebuild them with `python scripts/build_datasets.py`."
)


@functools.lru_cache(maxsize=1)
def load_manifest() -> dict[str, Any]:
    """The parsed ``MANIFEST.json`` shipped with the package.

    Returns:
        ``{"format_version": 1, "files": {name: {"sha256", "size", "records", "source", ...}}}``.

    Raises:
        DataError: the manifest is missing or is not valid JSON of that shape.
    """
    path = DATA_DIR / MANIFEST_NAME
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DataError(f"{path}: data manifest not found. {FIX_HINT}") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DataError(f"{path}: data manifest is unreadable ({exc}). {FIX_HINT}") from exc
    files = manifest.get("files") if isinstance(manifest, dict) else None
    if not isinstance(files, dict) or not all(
        isinstance(e, dict) and {"sha256", "size", "records"} <= e.keys() for e in files.values()
    ):
        raise DataError(f"{path}: expected {{'files': {{name: {{'sha256', 'size', 'records', ...}}}}}}. "
                        f"{FIX_HINT}")
    return manifest


def file_entry(name: str) -> dict[str, Any]:
    """The manifest entry of data file ``name`` (e.g. ``"sotu.jsonl.xz"``)."""
    files = load_manifest()["files"]
    if name not in files:
        raise DataError(f"{name}: not listed in {DATA_DIR / MANIFEST_NAME} "
                        f"(listed: {', '.join(sorted(files))}). {FIX_HINT}")
    return files[name]


def resolve(name: str, root: str | os.PathLike[str] | None = None) -> Path:
    """Path of data file ``name`` in ``root`` (default: the bundled ``files`` folder)."""
    return (Path(root) if root is not None else DATA_DIR) / name


def verified_path(name: str, root: str | os.PathLike[str] | None = None) -> Path:
    """Return the path of data file ``name`` after checking its size and sha256 against the manifest.

    Args:
        name: file name as listed in the manifest.
        root: folder holding the file; default the bundled ``files`` folder.

    Raises:
        DataError: the file is missing, has the wrong size (truncated / extended) or the wrong sha256
            (corrupt); the message names the file, the expected and actual values and the fix.
    """
    path = resolve(name, root)
    try:
        st = path.stat()
    except FileNotFoundError:
        raise DataError(f"{path}: data file is missing. {FIX_HINT}") from None
    except OSError as exc:
        raise DataError(f"{path}: cannot read data file ({exc}). {FIX_HINT}") from exc
    _verify(str(path), name, st.st_size, st.st_mtime_ns)
    return path


@functools.lru_cache(maxsize=64)
def _verify(path: str, name: str, size: int, mtime_ns: int) -> None:
    """Check one file once per (path, size, mtime); raises DataError on mismatch."""
    entry = file_entry(name)
    if size != entry["size"]:
        what = "truncated" if size < entry["size"] else "larger than expected"
        raise DataError(f"{path}: data file is {what}: {size} bytes, expected {entry['size']} bytes. "
                        f"{FIX_HINT}")
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    if digest.hexdigest() != entry["sha256"]:
        raise DataError(f"{path}: data file is corrupt: sha256 {digest.hexdigest()}, expected "
                        f"{entry['sha256']}. {FIX_HINT}")


def cache_key(path: Path) -> tuple[str, int, int]:
    """A key that changes whenever the file at ``path`` is replaced or modified."""
    st = path.stat()
    return str(path), st.st_size, st.st_mtime_ns
