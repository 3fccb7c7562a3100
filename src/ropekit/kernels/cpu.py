"""The compiled CPU backend: C++ built on first use with the machine's compiler, cached by torch.

``load()`` returns the extension module or ``None`` (no compiler, build error, ``ROPEKIT_NO_BUILD=1``); the
failure is warned about once and the eager fallback runs instead. The build lands in torch's extension cache
(``TORCH_EXTENSIONS_DIR``, default ``~/.cache/torch_extensions``) under a name that hashes the source, the flags,
this CPU's feature flags (``-march=native`` code must never run on another CPU model) and the torch build it
links against (version and install folder), so the first use on a
machine pays the compile (about 30-60 s here) and later processes load the cached ``.so`` in milliseconds.

The source is ``rotary_cpu.cpp`` next to this file (package data); its legend is at its top.
"""

from __future__ import annotations

import glob
import hashlib
import os
import platform
import threading
import warnings
from types import ModuleType

import torch

__all__ = ["SOURCE", "STREAM_MIN_BYTES", "build_name", "load", "load_error", "load_variant"]

SOURCE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "rotary_cpu.cpp")  # shipped as package data

_CFLAGS = ["-O3", "-march=native", "-fopenmp", "-ffp-contract=off"]  # no FMA contraction: same rounding as torch
_LDFLAGS = ["-fopenmp"]
_lock = threading.Lock()
_state: dict[str, object] = {}


def _last_level_cache_bytes() -> int:
    """Size of the CPU's largest cache (Linux sysfs: ``32768K``); 32 MiB when it cannot be read."""
    units = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
    best = 0
    for path in glob.glob("/sys/devices/system/cpu/cpu0/cache/index*/size"):
        try:
            with open(path) as f:
                text = f.read().strip()
            best = max(best, int(text[:-1]) * units[text[-1]] if text[-1] in units else int(text))
        except (OSError, ValueError, IndexError):
            continue
    return best or 32 << 20


# Out-of-place outputs (q and k together) of at least this many bytes are written with non-temporal stores,
# which skip the read-for-ownership of each output line; outputs larger than the last-level cache would be evicted
# before anyone reads them anyway. Measured here (AMD EPYC Zen 3, AVX2, one thread, raw kernel, ratio to the copy):
# float32 0.90-0.93x -> 0.65-0.68x on all four benchmark shapes; bf16 outputs of 32-64 MiB 1.07-1.39x ->
# 1.02-1.23x (better in 9 of 10 samples), bf16 outputs below the cache size no better or worse (1.36x -> 1.44x),
# hence the threshold. The AVX2 and AVX-512 rows implement them (float32, bf16, fp16; the plain loops ignore it).
# dtype -> bytes; absent: never.
_LLC_BYTES = _last_level_cache_bytes()
STREAM_MIN_BYTES: dict[torch.dtype, int] = dict.fromkeys((torch.float32, torch.bfloat16, torch.float16), _LLC_BYTES)


def _cpu_signature() -> str:
    """The CPU model and feature flags (Linux), so a cached ``-march=native`` build is per CPU kind."""
    try:
        with open("/proc/cpuinfo") as f:
            lines = [ln for ln in f if ln.startswith(("flags", "model name"))][:2]
    except OSError:
        lines = [platform.processor()]
    return "".join(lines)


def build_name(extra_cflags: tuple[str, ...] = ()) -> str:
    """Extension name: ``ropekit_rotary_<hash of the source file's bytes, flags, cpu, torch build and location>``.

    torch's version and install folder are part of the name: the binary links against that torch (an upgrade
    must not load an old build), and two environments sharing the cache would otherwise rebuild it in turn
    (their include paths differ, which torch's own check treats as a new version of the same name).
    """
    import torch

    torch_build = f"{torch.__version__} {os.path.dirname(torch.__file__)}"
    with open(SOURCE, "rb") as f:
        source = f.read()
    key = "\n".join([*_CFLAGS, *extra_cflags, *_LDFLAGS, _cpu_signature(), torch_build]).encode()
    return "ropekit_rotary_" + hashlib.sha256(source + b"\n" + key).hexdigest()[:16]


def load(*, warn: bool = True) -> ModuleType | None:
    """Build (first use) or load (cached) the extension; ``None`` when unavailable, warning once why.

    ``warn=False`` (the table builder's fast path, whose fallback gives the same numbers) defers the warning to
    the first call that warns, so it is raised once, by a rotary op.
    """
    with _lock:
        if "module" in _state:
            cached = _state["module"]
            if cached is None and warn:
                _warn_unavailable()
            return cached  # type: ignore[return-value]
        module: ModuleType | None = None
        if os.environ.get("ROPEKIT_NO_BUILD") == "1":
            _state["error"] = "ROPEKIT_NO_BUILD=1 is set"
        else:
            try:
                from torch.utils.cpp_extension import load as load_extension

                module = load_extension(
                    name=build_name(),
                    sources=[SOURCE],
                    extra_cflags=_CFLAGS,
                    extra_ldflags=_LDFLAGS,
                    verbose=False,
                )
            except Exception as exc:  # compiler missing, headers missing, build error: fall back, never crash
                _state["error"] = f"{type(exc).__name__}: {str(exc).strip().splitlines()[-1] if str(exc) else ''}"
        _state["module"] = module
        if module is None and warn:
            _warn_unavailable()
        return module


def load_variant(extra_cflags: tuple[str, ...]) -> ModuleType:
    """A second build of the kernel with extra compiler flags (raises if it cannot be built), not the one ropekit
    dispatches to: e.g. ``("-mno-avx512f",)`` compiles the AVX2 rows on an AVX-512 machine, so the tests check the
    rows another CPU kind would run (tests/kernels/test_kernel_other_rows.py)."""
    from torch.utils.cpp_extension import load as load_extension

    return load_extension(  # type: ignore[no-any-return]
        name=build_name(extra_cflags),
        sources=[SOURCE],
        extra_cflags=[*_CFLAGS, *extra_cflags],
        extra_ldflags=_LDFLAGS,
        verbose=False,
    )


def _warn_unavailable() -> None:
    """The once-per-process warning that the build is unavailable (callers hold ``_lock``)."""
    if _state.get("warned"):
        return
    _state["warned"] = True
    warnings.warn(
        f"ropekit: the compiled CPU rotary kernel is unavailable ({_state['error']}); using the eager "
        "PyTorch fallback (correct, slower). Install a C++ compiler (g++) to get the fused kernel.",
        RuntimeWarning,
        stacklevel=4,
    )


def load_error() -> str | None:
    """Why the last ``load()`` failed, or ``None``."""
    return _state.get("error")  # type: ignore[return-value]
