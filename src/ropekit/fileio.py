"""Writing files without losing any: one atomic writer, and a guard on the folders commands write into.

``atomic_write(path, data)`` writes a temporary file in the target's own folder, fsyncs it, renames it over
``path`` with ``os.replace`` and fsyncs the folder: a reader (or a power cut) sees the old file or the new one,
never half of either. Rewriting a file in place keeps its permission bits (a fresh file gets ``0666 & ~umask``,
as ``open`` would give it). ``data`` is bytes, or a function that writes the temporary path itself (safetensors'
``save_file``), so large files are not held in memory twice.

``claim_output_folder(folder, command=..., entries=...)`` is the rule every ``--out`` follows: a command writes
only into a folder that is absent, empty, or marked as its own by ``.ropekit-output.json``. The marker names the
command, a fresh ``run_id`` and the entries (top-level names) the command writes; ``overwrite=True`` removes
exactly those entries and nothing else, so the user's own files in the folder survive any command.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

__all__ = [
    "MARKER",
    "OutputFolderError",
    "atomic_write",
    "claim_output_folder",
    "fsync_dir",
    "read_marker",
    "run_id_of",
]

MARKER = ".ropekit-output.json"


class OutputFolderError(ValueError):
    """An output folder is not one the command may write into (the user's own files would be overwritten)."""


def fsync_dir(folder: str | os.PathLike[str]) -> None:
    """Flush a folder's entries (a rename or a new file) to disk; a no-op where folders cannot be opened."""
    try:
        fd = os.open(os.fspath(folder), os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _new_file_mode() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def atomic_write(path: str | os.PathLike[str], data: bytes | Callable[[str], None]) -> Path:
    """Replace ``path`` by ``data`` atomically and durably; returns ``path``.

    ``data``: the bytes, or ``writer(tmp_path)`` that writes the file at ``tmp_path`` (it must not rename it).
    The temporary file is ``.<name>.<random>.tmp`` next to ``path`` (same filesystem, so the rename is atomic);
    it is removed if writing fails. ``ValueError`` (not ``IsADirectoryError``) when ``path`` is a folder or its
    folder does not exist.
    """
    path = Path(path)
    if path.is_dir():
        raise ValueError(f"cannot write the file {path}: it is a folder; give a file path")
    folder = path.parent if str(path.parent) else Path(".")
    if not folder.is_dir():
        raise ValueError(f"cannot write {path}: its folder {folder} does not exist or is not a folder")
    try:
        mode = path.stat().st_mode & 0o7777  # an in-place rewrite keeps the file's permissions
    except FileNotFoundError:
        mode = _new_file_mode()
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=folder)
    try:
        if callable(data):
            os.close(fd)
            fd = -1
            data(tmp)
        else:
            with os.fdopen(fd, "wb") as f:
                fd = -1
                f.write(data)
        with open(tmp, "rb+") as f:  # fsync what the writer wrote, whoever opened it
            os.fsync(f.fileno())
        os.chmod(tmp, mode)  # mkstemp creates 0600
        os.replace(tmp, path)
    except BaseException:
        if fd >= 0:
            os.close(fd)
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
    fsync_dir(folder)
    return path


def read_marker(folder: str | os.PathLike[str]) -> dict[str, Any] | None:
    """The ownership marker of ``folder`` (``None`` when it has none or it is not a JSON object)."""
    try:
        data = json.loads((Path(folder) / MARKER).read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def run_id_of(folder: str | os.PathLike[str]) -> str | None:
    """The ``run_id`` recorded in ``folder``'s marker, or ``None``."""
    marker = read_marker(folder)
    value = marker.get("run_id") if marker else None
    return value if isinstance(value, str) else None


def _write_marker(folder: Path, command: str, entries: Sequence[str]) -> dict[str, Any]:
    marker = {"command": command, "run_id": uuid.uuid4().hex, "entries": sorted(set(entries))}
    atomic_write(folder / MARKER, json.dumps(marker, indent=1).encode())
    return marker


def _remove_entries(folder: Path, entries: Sequence[str]) -> None:
    for name in entries:
        if not name or "/" in name or name in (".", "..", MARKER):
            continue  # a marker edited by hand never makes us delete outside the listed top-level names
        target = folder / name
        if target.is_dir() and not target.is_symlink():
            shutil.rmtree(target)
        elif target.exists() or target.is_symlink():
            target.unlink()


def claim_output_folder(
    folder: str | os.PathLike[str],
    *,
    command: str,
    entries: Sequence[str],
    overwrite: bool = False,
    flag: str = "--out",
    adopt: Callable[[Path], bool] | None = None,
) -> dict[str, Any]:
    """Make ``folder`` ``command``'s output folder and return its marker ``{"command", "run_id", "entries"}``.

    * absent or empty: created and marked (a fresh ``run_id``);
    * marked by ``command``: kept as it is (the command updates its own output, e.g. a cache or a resume), or,
      with ``overwrite=True``, the marked ``entries`` are removed and the folder gets a fresh ``run_id``;
    * marked by another command, a file, or holding files nobody marked: :class:`OutputFolderError`, naming
      ``flag`` and what is there. ``adopt(folder)`` may recognise output written before markers existed.
    """
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise OutputFolderError(f"{flag} {folder} is a file, not a folder; give a new or empty folder")
    if not folder.exists():
        try:
            folder.mkdir(parents=True)
        except OSError as e:
            raise OutputFolderError(f"{flag} {folder} cannot be created ({e.strerror or e})") from None
        return _write_marker(folder, command, entries)
    marker = read_marker(folder)
    if marker is None:
        present = sorted(p.name for p in folder.iterdir())
        if not present:
            return _write_marker(folder, command, entries)
        if adopt is None or not adopt(folder):
            shown = ", ".join(present[:5]) + (", ..." if len(present) > 5 else "")
            raise OutputFolderError(
                f"{flag} {folder} is not empty and was not written by `ropekit {command}` (it holds {shown}); "
                f"refusing to overwrite files ropekit did not write: give a new or empty folder"
                + (" (--overwrite only replaces ropekit's own output)" if overwrite else "")
            )
        marker = {
            "command": command,
            "run_id": None,
            "entries": sorted(set(entries)),
            "adopted": True,
        }  # pre-marker output
    if marker.get("command") != command:
        raise OutputFolderError(
            f"{flag} {folder} holds the output of `ropekit {marker.get('command')}`, not of `ropekit {command}`; "
            f"give another folder"
        )
    if overwrite:
        _remove_entries(folder, [str(e) for e in marker.get("entries", [])])
        return _write_marker(folder, command, entries)
    if marker.get("run_id") is None or sorted(set(entries) | set(marker.get("entries", []))) != marker.get("entries"):
        marker = {**marker, "run_id": marker.get("run_id") or uuid.uuid4().hex}
        marker["entries"] = sorted(set(entries) | set(marker.get("entries", [])))
        atomic_write(folder / MARKER, json.dumps(marker, indent=1).encode())
    return marker
