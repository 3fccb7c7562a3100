"""Where the bf16 time goes: the raw C++ kernel on cache-resident and DRAM-sized q/k, in both storage orders.

Run: ``.venv/bin/python benchmarks/bf16_bound.py`` (one thread, regular stores, medians; about 20 s).

For each shape and dtype it times, round-robin, copying q and k into reused buffers (the floor), the kernel on
``[B, H, T, D]`` storage (head-major rows: one table row read per head and token) and on the same values stored
``[B, T, H, D]`` (token-major rows: one table row per token, reused for every head). Printed per element of q and
k, in ns, with the ratio to the copy of the same run. Small shapes fit in L2, so they show the kernel's own
arithmetic; the large ones show memory traffic (docs/kernels.md, "What bounds bf16").
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from typing import Any

import torch

from ropekit import rope_cos_sin, rope_frequencies
from ropekit.kernels import cpu

SHAPES = ((1, 4, 256, 64), (1, 2, 256, 128), (4, 16, 1024, 64), (1, 32, 2048, 128))


def measure(module: Any, shape: tuple[int, int, int, int], dtype: torch.dtype) -> str:
    """One table row: copy, head-major and token-major kernel times per element of q and k."""
    q, k = torch.randn(shape).to(dtype), torch.randn(shape).to(dtype)
    qo, ko = torch.empty_like(q), torch.empty_like(k)
    inv_freq, _ = rope_frequencies(None, head_dim=shape[-1])
    cos, sin = rope_cos_sin(inv_freq, torch.arange(shape[2]))
    qt = q.transpose(1, 2).contiguous().transpose(1, 2)  # same values, [B, T, H, D] storage
    kt = k.transpose(1, 2).contiguous().transpose(1, 2)
    qto, kto = torch.empty_like(qt), torch.empty_like(kt)
    fns: dict[str, Callable[[], object]] = {
        "copy": lambda: (qo.copy_(q), ko.copy_(k)),
        "bhtd": lambda: module.rotary_qk(q, k, qo, ko, cos, sin, None, False, False, -1),
        "bthd": lambda: module.rotary_qk(qt, kt, qto, kto, cos, sin, None, False, False, -1),
    }
    reps = 200 if q.numel() < 100_000 else 15
    times: dict[str, list[float]] = {name: [] for name in fns}
    for fn in fns.values():
        fn()
        fn()
    for _ in range(reps):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    med = {name: statistics.median(t) for name, t in times.items()}
    per = {name: med[name] / (2 * q.numel()) * 1e9 for name in med}
    kib = 2 * q.numel() * q.element_size() // 1024
    cells = [f"{per[n]:.3f} ({med[n] / med['copy']:.2f}x)" for n in ("bhtd", "bthd")]
    name = "x".join(map(str, shape))
    return f"| {name} | {str(dtype).removeprefix('torch.')} | {kib} | {per['copy']:.3f} | " + " | ".join(cells) + " |"


def main() -> None:
    torch.set_num_threads(1)
    module = cpu.load()
    if module is None:
        raise SystemExit(f"the C++ kernel is not available: {cpu.load_error()}")
    print("| shape | dtype | q+k KiB | copy ns/el | [B, H, T, D] ns/el | [B, T, H, D] ns/el |")
    print("|---|---|---|---|---|---|")
    for shape in SHAPES:
        for dtype in (torch.float32, torch.bfloat16):
            print(measure(module, shape, dtype), flush=True)


if __name__ == "__main__":
    main()
