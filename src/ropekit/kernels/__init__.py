"""Kernel tier: the fused implementations behind :func:`ropekit.apply_rotary` and :func:`ropekit.apply_rotary_qk`.

Users never pick a backend: :mod:`~ropekit.kernels.dispatch` runs the compiled C++ kernel on CPU (eager
PyTorch if no compiler), Triton on CUDA, and the pure-torch form where the fused op does not apply. Tests and
benchmarks override with :func:`use_backend` (a context manager) or ``ROPEKIT_BACKEND`` (read at import). See
``docs/kernels.md``.
"""

from ropekit.kernels import dispatch
from ropekit.kernels.backend import BACKENDS, Backend, current_backend, use_backend

__all__ = ["BACKENDS", "Backend", "current_backend", "dispatch", "use_backend"]
