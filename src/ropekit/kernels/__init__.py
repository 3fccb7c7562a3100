"""Kernel tier: implementations behind :func:`ropekit.apply_rotary` and :func:`ropekit.apply_rotary_qk`.

``dispatch`` picks the implementation; today the only backend is the pure-torch reference.
"""

from ropekit.kernels import dispatch

__all__ = ["dispatch"]
