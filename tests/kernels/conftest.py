"""Kernel tests setup: the Triton kernels run under the interpreter on CPU tensors when no GPU exists.

``TRITON_INTERPRET=1`` must be set before :mod:`ropekit.kernels.triton_rotary` is imported, so it is set here,
at collection time. Helpers shared by the test files live in ``kernel_helpers.py``.
"""

from __future__ import annotations

import os

import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")
