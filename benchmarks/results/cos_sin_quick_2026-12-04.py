"""Quick timing of the fused exact ``rope_cos_sin`` pass against the float32 way, plus a table-free parity check."""

from __future__ import annotations

import time
from collections.abc import Callable

import torch

from ropekit import rope_frequencies
from ropekit.kernels import tablefree

torch.set_num_threads(1)
inv, _ = rope_frequencies(None, head_dim=128)
pos = torch.arange(4096)


def f32() -> object:
    a = pos.float()[:, None] * inv
    return a.cos(), a.sin()


def fused() -> object:
    return tablefree.cos_sin(inv, pos)


def bench(fn: Callable[[], object], n: int = 200) -> float:
    fn()
    ts = []
    for _ in range(7):
        t = time.perf_counter()
        for _ in range(n):
            fn()
        ts.append((time.perf_counter() - t) / n * 1e6)
    ts.sort()
    return ts[3]


for run in range(2):
    a, b = bench(f32), bench(fused)
    print(f"run{run}: float32 way {a:.1f} us, fused {b:.1f} us, ratio {b / a:.2f}")
q, k = torch.randn(2, 8, 64, 128), torch.randn(2, 2, 64, 128)
p2 = torch.arange(64)[None] * 1000 + 2**40
qo, ko = tablefree.rotate(q, k, p2, inv, interleaved=False, conj=False, offset=0, backend="cpp")
qr, kr = tablefree.rotate(q, k, p2, inv, interleaved=False, conj=False, offset=0, backend="reference")
assert ko is not None and kr is not None
print("tablefree cpp vs torch max err", (qo - qr).abs().max().item(), (ko - kr).abs().max().item())
