"""Which implementation runs: automatic by default, overridable for tests and benchmarks.

Names: ``"auto"`` (default: Triton for CUDA tensors when triton imports, else the compiled C++ kernel on CPU,
else the eager fallback), ``"cpp"`` (compiled CPU kernel, eager fallback if it cannot be built), ``"triton"``
(CUDA tensors, or CPU tensors under ``TRITON_INTERPRET=1``), ``"eager"`` (pure PyTorch with the fused op's
contract, no compiler needed) and ``"reference"`` (:func:`ropekit.reference.apply_rotary_reference`, plain
autograd). Override with ``with use_backend("cpp"): ...`` or the ``ROPEKIT_BACKEND`` environment variable;
the context manager wins.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

__all__ = ["BACKENDS", "current_backend", "use_backend"]

BACKENDS = ("auto", "cpp", "triton", "eager", "reference")
_stack: list[str] = []  # innermost use_backend() last; read at call time (and as a guard under torch.compile)


def _check(name: str, source: str) -> str:
    if name not in BACKENDS:
        raise ValueError(f"unknown rotary backend {name!r} from {source}; expected one of {BACKENDS}")
    return name


def current_backend() -> str:
    """The backend name in force: innermost :func:`use_backend`, else ``$ROPEKIT_BACKEND``, else ``"auto"``."""
    if _stack:
        return _stack[-1]
    return _check(os.environ.get("ROPEKIT_BACKEND", "auto") or "auto", "ROPEKIT_BACKEND")


@contextlib.contextmanager
def use_backend(name: str) -> Iterator[None]:
    """Run the rotary ops inside the block with backend ``name`` (one of :data:`BACKENDS`)."""
    _stack.append(_check(name, "use_backend()"))
    try:
        yield
    finally:
        _stack.pop()
