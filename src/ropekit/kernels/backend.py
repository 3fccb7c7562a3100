"""Which implementation runs: automatic by default, overridable for tests and benchmarks.

:class:`Backend` names them: ``"auto"`` (default: Triton for CUDA tensors when triton imports, else the compiled
C++ kernel on CPU, else the eager fallback), ``"cpp"`` (compiled CPU kernel, eager fallback if it cannot be
built), ``"triton"`` (CUDA tensors, or CPU tensors under ``TRITON_INTERPRET=1``), ``"eager"`` (pure PyTorch with
the fused op's contract, no compiler needed) and ``"reference"`` (:func:`ropekit.reference.apply_rotary_reference`,
plain autograd).

The choice in force is a :class:`contextvars.ContextVar`, so ``with use_backend("cpp"): ...`` holds for the
block in this thread or asyncio task only. Its default comes from the ``ROPEKIT_BACKEND`` environment variable,
read once when this module is imported (an unknown name is a ``ValueError`` then, not at the first op); setting
the variable later has no effect: use :func:`use_backend`. Under ``torch.compile`` the backend is read once
while tracing and is a constant of the graph (Dynamo cannot trace ``ContextVar.get``; no recompilation follows a
later :func:`use_backend`: compile inside the block, or call ``torch._dynamo.reset()``).
"""

from __future__ import annotations

import contextlib
import contextvars
import enum
import os
from collections.abc import Iterator

import torch

__all__ = ["BACKENDS", "Backend", "current_backend", "use_backend"]


class Backend(str, enum.Enum):
    """A rotary implementation; string-valued, so ``Backend.CPP == "cpp"`` and ``use_backend("cpp")`` work."""

    AUTO = "auto"
    CPP = "cpp"
    TRITON = "triton"
    EAGER = "eager"
    REFERENCE = "reference"

    def __str__(self) -> str:
        return self.value


BACKENDS = tuple(b.value for b in Backend)


def parse_backend(name: object, source: str = "use_backend()") -> Backend:
    """``name`` (a :class:`Backend` or its string) as a :class:`Backend`; ``ValueError`` naming ``source``."""
    try:
        return Backend(name)
    except ValueError:
        raise ValueError(f"unknown rotary backend {name!r} from {source}; expected one of {BACKENDS}") from None


def _from_environment(value: str | None) -> Backend:
    return parse_backend(value, "the ROPEKIT_BACKEND environment variable") if value else Backend.AUTO


ENV_BACKEND: Backend = _from_environment(os.environ.get("ROPEKIT_BACKEND"))  # read once, at import
_current: contextvars.ContextVar[Backend] = contextvars.ContextVar("ropekit_backend", default=ENV_BACKEND)


def current_backend() -> Backend:
    """The backend in force: the innermost :func:`use_backend`, else ``$ROPEKIT_BACKEND`` at import, else auto."""
    if torch.compiler.is_compiling():
        return Backend(_traced_backend())
    return _current.get()


def _traced_backend() -> str:
    """The backend name read while ``torch.compile`` traces (Dynamo cannot trace ``ContextVar.get``): a constant of
    the graph, so a compiled function keeps the backend it was traced with."""
    return _current.get().value


# What ``torch.compiler.assume_constant_result`` does (it sets this one attribute), without calling it: the call
# imports torch._dynamo, which costs 1.2 s at ``import ropekit`` and imports triton before a test can set
# TRITON_INTERPRET. tests/kernels/test_kernel_backend.py checks that torch's decorator still sets this attribute.
_traced_backend._dynamo_marked_constant = True  # type: ignore[attr-defined]


@contextlib.contextmanager
def use_backend(name: str | Backend) -> Iterator[Backend]:
    """Run the rotary ops inside the block with backend ``name`` (a :class:`Backend` or one of :data:`BACKENDS`)."""
    token = _current.set(parse_backend(name))
    try:
        yield _current.get()
    finally:
        _current.reset(token)
