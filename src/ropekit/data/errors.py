"""The one exception type raised for problems with bundled data files."""

from __future__ import annotations

__all__ = ["DataError"]


class DataError(ValueError):
    """A bundled data file is missing, truncated, corrupt or malformed.

    The message names the file, says what was expected and how to fix it (usually: re-clone the
    repository or re-install the package, or rebuild with ``scripts/build_datasets.py``).
    """
