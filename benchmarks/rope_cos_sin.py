"""Cost of precise cos/sin tables: ropekit's rope_cos_sin vs the usual float32 ``(positions * inv_freq).cos()``.

Run: ``.venv/bin/python benchmarks/rope_cos_sin.py`` (one thread; medians of interleaved repetitions;
also prints the worst |error| of each against float64 at the largest position of each row).
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from ropekit import rope_cos_sin, rope_frequencies


def float32_way(inv_freq: torch.Tensor, positions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    angles = positions.float()[:, None] * inv_freq[None]  # what most libraries do
    return angles.cos(), angles.sin()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=15)
    parser.add_argument("--head-dim", type=int, default=128)
    args = parser.parse_args()
    torch.set_num_threads(1)
    inv, _ = rope_frequencies(None, head_dim=args.head_dim)
    print(f"torch {torch.__version__}, 1 thread, head_dim {args.head_dim}, median of {args.reps}")
    print(f"{'positions':>22} {'float32 ms':>11} {'ropekit ms':>11} {'ratio':>6} {'f32 err':>9} {'ropekit err':>11}")
    for start, count in ((0, 4096), (0, 32_768), (0, 131_072), (2**20, 4096), (2**24 - 4096, 4096)):
        positions = torch.arange(start, start + count)
        times: dict[str, list[float]] = {"f32": [], "rk": []}
        for _ in range(args.reps):
            for name, fn in (("f32", float32_way), ("rk", rope_cos_sin)):
                t0 = time.perf_counter()
                fn(inv, positions)
                times[name].append(time.perf_counter() - t0)
        truth = (positions.double()[:, None] * inv.double()[None]).cos()
        err = {
            n: (fn(inv, positions)[0].double() - truth).abs().max().item()
            for n, fn in (("f32", float32_way), ("rk", rope_cos_sin))
        }
        f32, rk = statistics.median(times["f32"]) * 1e3, statistics.median(times["rk"]) * 1e3
        label = f"[{start}, {start + count})"
        print(f"{label:>22} {f32:>11.2f} {rk:>11.2f} {rk / f32:>6.2f} {err['f32']:>9.1e} {err['rk']:>11.1e}")


if __name__ == "__main__":
    main()
