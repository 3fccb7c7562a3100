"""RoPE's share of one attention block: q/k/v projections, RoPE, ``scaled_dot_product_attention``, output projection.

Run: ``.venv/bin/python benchmarks/attention_block.py [--quick] [--markdown] [--csv PATH]``

The same Llama-like block (GQA, causal, no biases) runs with five ways of rotating q and k, timed round-robin
inside each repetition so they share the machine's noise: no RoPE at all, ropekit (``apply_rotary_qk``, tables
built once outside the timed region, as a model holds them), transformers' ``apply_rotary_pos_emb`` eager, and
the same function under ``torch.compile``. RoPE's marginal share of a block is
``(t_impl - t_none) / t_impl`` with medians from the same run; a share below 0 is noise (the rotation costs less
than the run-to-run spread of the block). Forward runs under ``torch.no_grad()``; forward+backward sums the output
against a fixed gradient and back-propagates into the input and the weights.

Because the block's own spread on a shared machine is larger than the rotation, a second table times the rotation
alone on the q and k the block produces (the same ``[B, H, T, D]`` views of its projections; forward, or forward
then backward of fixed gradients), round-robin over five times as many repetitions, and reports its direct share
``t_rope / (t_none + t_rope)``: what the marginal share measures without the block's noise, leaving out only the
rotation's effect on the cache state the attention then meets.

One thread by default (see ``benchmarks/apply_rotary.py`` for why); CSV rows (machine, versions, UTC time) are
appended to ``benchmarks/results/attention_block.csv``.
"""

from __future__ import annotations

import argparse
import csv
import datetime
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from apply_rotary import TUNABLES, _version, machine

import ropekit
from ropekit import apply_rotary_qk, apply_rotary_qk_tablefree, rope_cos_sin, rope_frequencies

# (B, T, d_model, n_heads, n_kv_heads): Llama-like head_dim 128 with GQA, and a small head_dim-64 block
SHAPES = ((1, 1024, 1024, 8, 2), (4, 256, 512, 8, 8))
QUICK_SHAPES = ((4, 256, 512, 8, 8),)
RESULTS = Path(__file__).resolve().parent / "results" / "attention_block.csv"

Rope = Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]


class Block(nn.Module):
    """``x: [B, T, C]`` -> ``[B, T, C]``: projections, ``rope(q, k)`` on ``[B, H, T, D]``, causal SDPA, output."""

    def __init__(self, d_model: int, n_heads: int, n_kv_heads: int) -> None:
        super().__init__()
        self.n_heads, self.n_kv_heads, self.head_dim = n_heads, n_kv_heads, d_model // n_heads
        self.q_proj = nn.Linear(d_model, n_heads * self.head_dim, bias=False)
        self.k_proj = nn.Linear(d_model, n_kv_heads * self.head_dim, bias=False)
        self.v_proj = nn.Linear(d_model, n_kv_heads * self.head_dim, bias=False)
        self.o_proj = nn.Linear(n_heads * self.head_dim, d_model, bias=False)

    def forward(self, x: torch.Tensor, rope: Rope | None) -> torch.Tensor:
        B, T, _ = x.shape
        q = self.q_proj(x).view(B, T, self.n_heads, self.head_dim).transpose(1, 2)  # [B, H, T, D]
        k = self.k_proj(x).view(B, T, self.n_kv_heads, self.head_dim).transpose(1, 2)  # [B, Hk, T, D]
        v = self.v_proj(x).view(B, T, self.n_kv_heads, self.head_dim).transpose(1, 2)  # [B, Hk, T, D]
        if rope is not None:
            q, k = rope(q, k)
        out = F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=self.n_kv_heads != self.n_heads)
        return self.o_proj(out.transpose(1, 2).reshape(B, T, -1))  # [B, T, C]


def _tablefree(q: torch.Tensor, k: torch.Tensor, inv_freq: torch.Tensor, positions: torch.Tensor):
    out_q, out_k = apply_rotary_qk_tablefree(q, k, inv_freq, positions=positions)
    assert out_k is not None
    return out_q, out_k


def ropes(T: int, head_dim: int, dtype: torch.dtype, notes: list[str]) -> dict[str, Rope | None]:
    """The ways of rotating, each with its tables built once (as a model holds them)."""
    inv_freq, _ = rope_frequencies(None, head_dim=head_dim)
    cos, sin = rope_cos_sin(inv_freq, torch.arange(T))  # [T, D/2] float32, ropekit's layout
    positions = torch.arange(T)
    out: dict[str, Rope | None] = {
        "no RoPE": None,
        "ropekit": lambda q, k: apply_rotary_qk(q, k, cos, sin),
        "ropekit table-free": lambda q, k: _tablefree(q, k, inv_freq, positions),
    }
    try:
        from transformers.models.llama.modeling_llama import apply_rotary_pos_emb
    except ImportError:
        notes.append("transformers not installed: its rows are skipped")
        return out
    cos_hf = torch.cat((cos, cos), -1)[None].to(dtype)  # [1, T, D]: transformers' duplicated halves
    sin_hf = torch.cat((sin, sin), -1)[None].to(dtype)
    out["transformers eager"] = lambda q, k: apply_rotary_pos_emb(q, k, cos_hf, sin_hf)
    compiled = torch.compile(apply_rotary_pos_emb, dynamic=False)
    out["transformers compile"] = lambda q, k: compiled(q, k, cos_hf, sin_hf)
    return out


def time_round_robin(block: Block, impls: dict[str, Rope | None], x: torch.Tensor, grad: torch.Tensor,
                     reps: int, backward: bool) -> dict[str, float]:
    """Median milliseconds per implementation, all timed inside each repetition."""
    times: dict[str, list[float]] = {name: [] for name in impls}

    def once(rope: Rope | None) -> None:
        if backward:
            block(x, rope).backward(grad)
        else:
            with torch.no_grad():
                block(x, rope)

    for rope in impls.values():  # warm-up (compilation, allocator)
        once(rope)
        once(rope)
    for _ in range(reps):
        for name, rope in impls.items():
            start = time.perf_counter()
            once(rope)
            times[name].append((time.perf_counter() - start) * 1e3)
    return {name: statistics.median(t) for name, t in times.items()}


def time_rotation_alone(block: Block, impls: dict[str, Rope | None], x: torch.Tensor, reps: int,
                        backward: bool) -> dict[str, float]:
    """Median milliseconds of each rotation alone on the block's own q and k, all timed inside each repetition."""
    B, T, _ = x.shape
    with torch.no_grad():
        q0 = block.q_proj(x).view(B, T, block.n_heads, block.head_dim).transpose(1, 2)
        k0 = block.k_proj(x).view(B, T, block.n_kv_heads, block.head_dim).transpose(1, 2)
    q, k = q0.clone().requires_grad_(backward), k0.clone().requires_grad_(backward)
    gq, gk = torch.randn_like(q0), torch.randn_like(k0)
    ropes_only = {name: rope for name, rope in impls.items() if rope is not None}
    times: dict[str, list[float]] = {name: [] for name in ropes_only}

    def once(rope: Rope) -> None:
        if backward:
            q.grad = k.grad = None
            torch.autograd.backward(rope(q, k), (gq, gk))
        else:
            with torch.no_grad():
                rope(q0, k0)

    for rope in ropes_only.values():
        once(rope)
        once(rope)
    for _ in range(reps):
        for name, rope in ropes_only.items():
            start = time.perf_counter()
            once(rope)
            times[name].append((time.perf_counter() - start) * 1e3)
    return {name: statistics.median(t) for name, t in times.items()}


Shape = tuple[int, int, int, int, int]


def bench(shapes: tuple[Shape, ...], dtypes: list[torch.dtype], reps: int) -> tuple[list[dict], list[str]]:
    rows: list[dict] = []
    notes: list[str] = []
    for B, T, d_model, n_heads, n_kv in shapes:
        for dtype in dtypes:
            torch.manual_seed(0)
            block = Block(d_model, n_heads, n_kv).to(dtype)
            x = torch.randn(B, T, d_model, dtype=dtype, requires_grad=True)
            grad = torch.randn(B, T, d_model, dtype=dtype)
            impls = ropes(T, d_model // n_heads, dtype, notes)
            for backward in (False, True):
                medians = time_round_robin(block, impls, x, grad, reps, backward)
                alone = time_rotation_alone(block, impls, x, 5 * reps, backward)
                base = medians["no RoPE"]
                for name, ms in medians.items():
                    rows.append({
                        "shape": f"B{B} T{T} d{d_model} H{n_heads} Hk{n_kv}",
                        "dtype": str(dtype).removeprefix("torch."),
                        "pass": "fwd+bwd" if backward else "fwd",
                        "impl": name,
                        "ms": ms,
                        "share": None if name == "no RoPE" else (ms - base) / ms,
                        "rope_ms": alone.get(name),
                        "direct_share": alone[name] / (base + alone[name]) if name in alone else None,
                    })
    return rows, sorted(set(notes))


def print_table(rows: list[dict], markdown: bool, key: str = "share") -> None:
    """One row per shape, dtype and pass; ``key``: the marginal ``share`` or the rotation-alone ``direct_share``."""
    impls = list(dict.fromkeys(r["impl"] for r in rows))
    groups = list(dict.fromkeys((r["shape"], r["dtype"], r["pass"]) for r in rows))
    word = "share" if key == "share" else "alone"
    header = ["shape", "dtype", "pass", "block ms (no RoPE)", *[f"{i} {word}" for i in impls if i != "no RoPE"]]
    lines = [header]
    for g in groups:
        by = {r["impl"]: r for r in rows if (r["shape"], r["dtype"], r["pass"]) == g}
        cells = [*g, f"{by['no RoPE']['ms']:.1f}"]
        cells += [f"{100 * by[i][key]:+.1f}%" if i in by else "-" for i in impls if i != "no RoPE"]
        lines.append(cells)
    if markdown:
        print("| " + " | ".join(header) + " |")
        print("|" + "---|" * len(header))
        for cells in lines[1:]:
            print("| " + " | ".join(cells) + " |")
    else:
        widths = [max(len(str(c[i])) for c in lines) for i in range(len(header))]
        for cells in lines:
            print("  ".join(str(c).rjust(w) for c, w in zip(cells, widths, strict=True)))


def write_csv(rows: list[dict], path: Path, reps: int) -> None:
    """Append ``rows``; a file written before the rotation-alone columns existed is first rewritten with them."""
    path.parent.mkdir(parents=True, exist_ok=True)
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    meta = {"utc": stamp, "machine": machine(), "torch": torch.__version__, "ropekit": ropekit.__version__,
            "transformers": _version("transformers"), "reps": reps, "load1": f"{os.getloadavg()[0]:.1f}"}
    fields = [*meta, "shape", "dtype", "pass", "impl", "ms", "share", "rope_ms", "direct_share"]
    old: list[dict] | None = None
    if path.exists():
        with path.open(newline="") as f:
            reader = csv.DictReader(f)
            if reader.fieldnames != fields:
                old = list(reader)
    if old is not None:
        tmp = path.with_suffix(".csv.tmp")
        with tmp.open("w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=fields)
            writer.writeheader()
            writer.writerows(old)
        tmp.replace(path)
    new = not path.exists()
    with path.open("a", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields)
        if new:
            writer.writeheader()
        for r in rows:
            writer.writerow({**meta, **r})


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="one small shape, fewer repetitions")
    p.add_argument("--reps", type=int, default=None, help="repetitions (default 9, quick 5)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--dtypes", default="float32,bfloat16")
    p.add_argument("--markdown", action="store_true")
    p.add_argument("--csv", default=str(RESULTS), help="CSV file to append rows to ('' for none)")
    args = p.parse_args()
    if os.environ.get("GLIBC_TUNABLES") != TUNABLES:  # re-exec with warm-page malloc (see apply_rotary.py)
        os.execve(sys.executable, [sys.executable, *sys.argv], {**os.environ, "GLIBC_TUNABLES": TUNABLES})
    if args.threads < 1:
        p.error(f"--threads must be >= 1, got {args.threads}")
    torch.set_num_threads(args.threads)
    dtypes = [getattr(torch, name) for name in args.dtypes.split(",")]
    reps = args.reps or (5 if args.quick else 9)
    rows, notes = bench(QUICK_SHAPES if args.quick else SHAPES, dtypes, reps)
    print(f"# {machine()}, torch {torch.__version__}, medians of {reps}, load {os.getloadavg()[0]:.1f}")
    print("# marginal share: (block with RoPE - block without) / block with RoPE")
    print_table(rows, args.markdown)
    print(f"# rotation alone on the block's q and k (medians of {5 * reps}): t_rope / (block without + t_rope)")
    print_table(rows, args.markdown, key="direct_share")
    for n in notes:
        print(f"note: {n}")
    if args.csv:
        write_csv(rows, Path(args.csv), reps)


if __name__ == "__main__":
    main()
