"""Kernel tier: the fused implementations behind :func:`ropekit.apply_rotary` and :func:`ropekit.apply_rotary_qk`.

Users never pick a backend: :mod:`~ropekit.kernels.dispatch` runs the compiled C++ kernel on CPU (eager
PyTorch if no compiler), Triton on CUDA, and the reference where the fused op does not apply. Tests and
benchmarks override with :func:`use_backend` or ``ROPEKIT_BACKEND``. See ``docs/kernels.md``.
"""

from ropekit.kernels import dispatch
from ropekit.kernels.backend import BACKENDS, current_backend, use_backend

__all__ = ["BACKENDS", "current_backend", "dispatch", "use_backend"]
