"""Rotary embedding speed against the memory floor (copying q and k) and against peer implementations.

Run: ``.venv/bin/python benchmarks/apply_rotary.py [--quick] [--markdown] [--csv PATH]``

Every implementation rotates q and k of shape ``[B, H, T, D]`` (torchtune gets its native ``[B, T, H, D]``) with
tables built outside the timed region. ropekit also runs the same data as ``[B, T, H, D]`` (``layout="bthd"``), as
packed varlen ``[total, H, D]`` (``layout="thd"`` with ``cu_seqlens`` of 4 sequences per batch row) and in place on
the q and k heads of one ``[B, T, 3H, D]`` buffer (forward only). Implementations are timed round-robin inside
each repetition, so they share the machine's noise, and the table reports medians and the ratio to the floor
measured in the same run: forward against one copy of q and k into reused buffers, forward+backward against twice
that copy, timed again in the forward+backward round-robin (the machine's noise comes in bursts of a few
repetitions, so a floor timed in the forward phase does not share the backward phase's noise).

Page faults: fresh multi-MiB allocations are served by mmap and fault on first touch, which is most of the noise
on this machine. The script re-executes itself with ``GLIBC_TUNABLES=glibc.malloc.mmap_max=0:
glibc.malloc.trim_threshold=68719476736`` (glibc then serves big blocks from a heap it never returns, so outputs
reuse warm pages), the floor copies into buffers allocated once, and every implementation is warmed up first.

Threads: one by default. On a shared 2-core machine a 2-thread op waits at a barrier for a second core that
another process holds: a plain 32 MiB copy measured 1.6 ms with one thread and 32-40 ms with two at load 4-7.
``--threads 2`` measures both cores when the machine is idle.

Peers (formulas re-typed here, or the installed library): transformers' ``apply_rotary_pos_emb`` eager and under
``torch.compile``; Meta's complex-multiply form (llama ``model.py``: ``view_as_complex(x.float()) * freqs_cis``);
rotary-embedding-torch's ``RotaryEmbedding.rotate_queries_or_keys``; torchtune's ``RotaryPositionalEmbeddings``
(its ``modules/position_embeddings.py`` loaded directly: torchtune's package import needs torchao). Peers that are
not installed are skipped with a note. CSV rows (machine, versions, UTC time) are appended to
``benchmarks/results/apply_rotary.csv``.

Table builder rows (``--only cos_sin`` for these alone, ``--only rotary`` to skip them): ``rope_cos_sin`` for
``arange(T)``, T = 4096 and 32768, head_dim 128 (r = 64), float32 output: ropekit's default (the fused C++ pass
on CPU), ropekit's pure-torch path (``use_backend("eager")``: the path before the C++ pass) and the float32 way
most libraries use (``positions.float()[:, None] * inv_freq``, then ``.cos()``/``.sin()``), timed round-robin;
ratios are to the float32 way (CSV pass ``cos_sin``, shape ``T x r``).
"""

from __future__ import annotations

import argparse
import csv
import datetime
import importlib.util
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

import ropekit
from ropekit import apply_rotary_qk, apply_rotary_qk_tablefree, rope_cos_sin, rope_frequencies
from ropekit.kernels import use_backend

TUNABLES = "glibc.malloc.mmap_max=0:glibc.malloc.trim_threshold=68719476736"
SHAPES = ((1, 32, 2048, 128), (4, 16, 1024, 64), (1, 8, 8192, 128), (8, 12, 512, 64))
QUICK_SHAPES = ((4, 16, 1024, 64), (8, 12, 512, 64))
COS_SIN_LENGTHS = (4096, 32768)
COS_SIN_HEAD_DIM = 128
RESULTS = Path(__file__).resolve().parent / "results" / "apply_rotary.csv"

Fn = Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]


def machine() -> str:
    model = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            model = next((ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")), model)
    except OSError:
        pass
    return f"{model}, {os.cpu_count()} cores, {torch.get_num_threads()} threads"


def _version(dist: str) -> str:
    try:
        import importlib.metadata as md

        return md.version(dist)
    except Exception:
        return "-"


# ---- peers -------------------------------------------------------------------------------------------------------


def _hf_rotate_half(x: torch.Tensor) -> torch.Tensor:
    x1, x2 = x[..., : x.shape[-1] // 2], x[..., x.shape[-1] // 2 :]
    return torch.cat((-x2, x1), dim=-1)


def hf_apply():
    """transformers' llama ``apply_rotary_pos_emb`` (the installed one when importable)."""
    try:
        from transformers.models.llama.modeling_llama import apply_rotary_pos_emb

        return apply_rotary_pos_emb, None
    except Exception as exc:  # transformers missing: re-typed formula
        return (lambda q, k, cos, sin: (q * cos + _hf_rotate_half(q) * sin, k * cos + _hf_rotate_half(k) * sin)), (
            f"transformers not importable ({type(exc).__name__}); its formula re-typed"
        )


def meta_complex(q: torch.Tensor, k: torch.Tensor, freqs_cis: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Meta llama's form: interleaved pairs as complex numbers times ``e^{i m theta}`` (``[T, D/2]`` complex64)."""
    qc = torch.view_as_complex(q.float().reshape(*q.shape[:-1], -1, 2))  # [B, H, T, D/2]
    kc = torch.view_as_complex(k.float().reshape(*k.shape[:-1], -1, 2))
    q_out = torch.view_as_real(qc * freqs_cis).flatten(3)  # [B, H, T, D]
    k_out = torch.view_as_real(kc * freqs_cis).flatten(3)
    return q_out.type_as(q), k_out.type_as(k)


def torchtune_module(head_dim: int, max_seq_len: int):
    spec = importlib.util.find_spec("torchtune")
    if spec is None or not spec.submodule_search_locations:
        return None, "torchtune not installed"
    path = Path(next(iter(spec.submodule_search_locations))) / "modules" / "position_embeddings.py"
    mod_spec = importlib.util.spec_from_file_location("_torchtune_position_embeddings", path)
    module = importlib.util.module_from_spec(mod_spec)
    mod_spec.loader.exec_module(module)
    return module.RotaryPositionalEmbeddings(head_dim, max_seq_len=max_seq_len), None


def lucidrains_module(head_dim: int):
    try:
        from rotary_embedding_torch import RotaryEmbedding
    except ImportError:
        return None, "rotary-embedding-torch not installed"
    return RotaryEmbedding(dim=head_dim), None


# ---- timing ------------------------------------------------------------------------------------------------------


def implementations(shape, dtype, q, k, notes: list[str]) -> dict[str, tuple[Fn, torch.Tensor, torch.Tensor]]:
    """name -> (fn(q, k), q, k) for one shape and dtype; inputs shared unless a peer needs its own layout."""
    T, D = shape[2], shape[3]
    inv_freq, _ = rope_frequencies(None, head_dim=D)
    cos, sin = rope_cos_sin(inv_freq, torch.arange(T))  # [T, D/2] float32
    positions = torch.arange(T)  # the table-free path forms each token's angles itself: no table
    hf, note = hf_apply()
    if note and note not in notes:
        notes.append(note)
    hf_cos = torch.cat((cos, cos), -1).to(dtype)[None]  # [1, T, D] like LlamaRotaryEmbedding (cast to x dtype)
    hf_sin = torch.cat((sin, sin), -1).to(dtype)[None]
    hf_compiled = torch.compile(hf)
    freqs_cis = torch.polar(torch.ones_like(cos), torch.atan2(sin, cos))  # [T, D/2] complex64
    qb, kb = torch.empty_like(q), torch.empty_like(k)
    impls: dict[str, tuple[Fn, torch.Tensor, torch.Tensor]] = {
        "copy floor": (lambda q, k: (qb.copy_(q), kb.copy_(k)), q, k),
        "ropekit": (lambda q, k: apply_rotary_qk(q, k, cos, sin), q, k),
        "ropekit inplace": (lambda q, k: apply_rotary_qk(q, k, cos, sin, inplace=True), q, k),
        "ropekit table-free": (lambda q, k: apply_rotary_qk_tablefree(q, k, inv_freq, positions=positions), q, k),
        "transformers eager": (lambda q, k: hf(q, k, hf_cos, hf_sin), q, k),
        "transformers compile": (lambda q, k: hf_compiled(q, k, hf_cos, hf_sin), q, k),
        "meta complex": (lambda q, k: meta_complex(q, k, freqs_cis), q, k),
    }
    # The same q and k in the engines' layouts (ropekit reads them through strides, no copy): flash-attention's
    # [B, T, H, D]; packed varlen [total, H, D] of 4 sequences per batch row (cu_seqlens, positions restart per
    # sequence); and in place on the q and k heads of one fused [B, T, 3H, D] projection buffer (v untouched).
    B, H = shape[0], shape[1]
    qt, kt = q.transpose(1, 2).contiguous(), k.transpose(1, 2).contiguous()  # [B, T, H, D]
    qv, kv = qt.view(B * T, H, D), kt.view(B * T, H, D)  # [total, H, D]
    cu = torch.arange(0, B * T + 1, T // 4, dtype=torch.int32)  # 4B sequences of T/4 tokens
    qkv = torch.cat((qt, kt, torch.zeros_like(qt)), dim=2)  # [B, T, 3H, D]
    qp, kp = qkv[:, :, :H], qkv[:, :, H : 2 * H]
    impls["ropekit bthd"] = (lambda q, k: apply_rotary_qk(q, k, cos, sin, layout="bthd"), qt, kt)
    impls["ropekit thd varlen"] = (lambda q, k: apply_rotary_qk(q, k, cos, sin, layout="thd", cu_seqlens=cu), qv, kv)
    impls["ropekit packed inplace"] = (
        lambda q, k: apply_rotary_qk(q, k, cos, sin, layout="bthd", inplace=True),
        qp,
        kp,
    )
    lucid, note = lucidrains_module(D)
    if lucid is None:
        notes.append(f"skipped rotary-embedding-torch: {note}")
    else:
        impls["rotary-embedding-torch"] = (
            lambda q, k: (lucid.rotate_queries_or_keys(q), lucid.rotate_queries_or_keys(k)),
            q,
            k,
        )
    tune, note = torchtune_module(D, T)
    if tune is None:
        notes.append(f"skipped torchtune: {note}")
    else:
        qt, kt = q.transpose(1, 2).contiguous(), k.transpose(1, 2).contiguous()  # [B, T, H, D], its layout
        impls["torchtune"] = (lambda q, k: (tune(q), tune(k)), qt, kt)
    return impls


def time_round_robin(impls, reps: int, backward: bool, grads) -> dict[str, float]:
    """Median seconds per implementation; forward, or forward+backward with the given upstream gradients."""

    def run(name, fn, q, k):
        if not backward or grads[name] is None:  # forward only (the copy floor in the backward round-robin)
            fn(q, k)
            return
        q.grad = k.grad = None
        out = fn(q, k)
        g = grads[name]
        torch.autograd.backward(out, g)

    times: dict[str, list[float]] = {n: [] for n in impls}
    for name, (fn, q, k) in impls.items():  # warm-up: compile, first-touch, caches
        for _ in range(2):
            run(name, fn, q, k)
    for _ in range(reps):
        for name, (fn, q, k) in impls.items():
            t0 = time.perf_counter()
            run(name, fn, q, k)
            times[name].append(time.perf_counter() - t0)
    return {n: statistics.median(v) for n, v in times.items()}


def bench(shapes, dtypes, reps: int) -> tuple[list[dict], list[str]]:
    rows, notes = [], []
    gen = torch.Generator().manual_seed(0)
    for shape in shapes:
        for dtype in dtypes:
            q = torch.randn(shape, generator=gen).to(dtype)
            k = torch.randn(shape, generator=gen).to(dtype)
            impls = implementations(shape, dtype, q, k, notes)
            fwd = time_round_robin(impls, reps, False, None)
            # forward+backward: out-of-place implementations with grad-requiring inputs; floor = 2 copies
            bwd_impls, grads = {}, {}
            for name, (fn, qi, ki) in impls.items():
                if name in ("copy floor", "ropekit inplace", "ropekit packed inplace"):
                    continue
                qg, kg = qi.detach().clone().requires_grad_(), ki.detach().clone().requires_grad_()
                bwd_impls[name] = (fn, qg, kg)
                grads[name] = (torch.randn_like(qg), torch.randn_like(kg))
            bwd_impls = {"copy floor": impls["copy floor"], **bwd_impls}
            grads["copy floor"] = None
            fb = time_round_robin(bwd_impls, reps, True, grads)
            fb["copy floor"] *= 2  # forward+backward floor: two copies, timed among the backward runs
            for name, sec in fwd.items():
                rows.append(
                    dict(shape=shape, dtype=dtype, mode="fwd", impl=name, sec=sec, ratio=sec / fwd["copy floor"])
                )
            for name, sec in fb.items():
                rows.append(
                    dict(shape=shape, dtype=dtype, mode="fwd+bwd", impl=name, sec=sec, ratio=sec / fb["copy floor"])
                )
            print(f"  done {list(shape)} {str(dtype).replace('torch.', '')}", file=sys.stderr, flush=True)
    return rows, list(dict.fromkeys(notes))


def _float32_way(inv_freq: torch.Tensor, positions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    angles = positions.float()[:, None] * inv_freq[None]  # [T, r]: what most libraries do
    return angles.cos(), angles.sin()


def _ropekit_torch_path(inv_freq: torch.Tensor, positions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    with use_backend("eager"):  # rope_cos_sin's pure-torch path (reference and fallback of the C++ pass)
        return rope_cos_sin(inv_freq, positions)


COS_SIN_IMPLS: dict[str, Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]] = {
    "float32 way": _float32_way,
    "ropekit": rope_cos_sin,
    "ropekit torch path": _ropekit_torch_path,
}


def bench_cos_sin(reps: int) -> list[dict]:
    """rope_cos_sin table builders, ``[T, r]`` float32 for ``arange(T)``; ratios to the float32 way."""
    inv, _ = rope_frequencies(None, head_dim=COS_SIN_HEAD_DIM)
    rows = []
    for length in COS_SIN_LENGTHS:
        positions = torch.arange(length)
        times: dict[str, list[float]] = {n: [] for n in COS_SIN_IMPLS}
        for fn in COS_SIN_IMPLS.values():  # warm-up: first touch, constants cache
            for _ in range(2):
                fn(inv, positions)
        for _ in range(reps):
            for name, fn in COS_SIN_IMPLS.items():
                t0 = time.perf_counter()
                fn(inv, positions)
                times[name].append(time.perf_counter() - t0)
        med = {n: statistics.median(v) for n, v in times.items()}
        shape = (length, inv.numel())
        for name, sec in med.items():
            rows.append(
                dict(
                    shape=shape, dtype=torch.float32, mode="cos_sin", impl=name, sec=sec, ratio=sec / med["float32 way"]
                )
            )
        print(f"  done rope_cos_sin T={length}", file=sys.stderr, flush=True)
    return rows


def print_cos_sin_table(rows: list[dict], markdown: bool) -> None:
    head = ["T x r", *(f"{n} ms (ratio)" for n in COS_SIN_IMPLS)]
    by = {(tuple(r["shape"]), r["impl"]): r for r in rows}
    lines = []
    for shape in dict.fromkeys(tuple(r["shape"]) for r in rows):
        cells = [f"{by[(shape, n)]['sec'] * 1e3:.3f} ({by[(shape, n)]['ratio']:.2f}x)" for n in COS_SIN_IMPLS]
        lines.append(["x".join(map(str, shape)), *cells])
    print("# rope_cos_sin table builders: float32 [T, r] for arange(T); ratios to the float32 way")
    _print_rows(head, lines, markdown)


def _print_rows(head: list[str], lines: list[list[str]], markdown: bool) -> None:
    """One table: markdown, or right-aligned plain text."""
    if markdown:
        print("| " + " | ".join(head) + " |")
        print("|" + "|".join("---" for _ in head) + "|")
        for line in lines:
            print("| " + " | ".join(line) + " |")
        return
    widths = [max(len(h), *(len(ln[i]) for ln in lines)) for i, h in enumerate(head)]
    print("  ".join(h.rjust(w) for h, w in zip(head, widths, strict=True)))
    for line in lines:
        print("  ".join(c.rjust(w) for c, w in zip(line, widths, strict=True)))


def print_table(rows: list[dict], markdown: bool) -> None:
    impl_names = list(dict.fromkeys(r["impl"] for r in rows))
    keys = list(dict.fromkeys((tuple(r["shape"]), r["dtype"], r["mode"]) for r in rows))
    by = {(tuple(r["shape"]), r["dtype"], r["mode"], r["impl"]): r for r in rows}
    head = ["shape", "dtype", "pass", "floor ms", *impl_names]

    def cell(key, name):
        r = by.get((*key, name))
        return "-" if r is None else f"{r['ratio']:.2f}x"

    lines = []
    for key in keys:
        shape, dtype, mode = key
        floor = by[(shape, dtype, mode, "copy floor")]["sec"] * 1e3
        lines.append(
            ["x".join(map(str, shape)), str(dtype).replace("torch.", ""), mode, f"{floor:.2f}"]
            + [cell(key, n) for n in impl_names]
        )
    _print_rows(head, lines, markdown)


def write_csv(rows: list[dict], path: Path, reps: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    new = not path.exists()
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    meta = dict(
        utc=stamp,
        machine=machine(),
        torch=torch.__version__,
        ropekit=ropekit.__version__,
        transformers=_version("transformers"),
        rotary_embedding_torch=_version("rotary-embedding-torch"),
        torchtune=_version("torchtune"),
        glibc_tunables=os.environ.get("GLIBC_TUNABLES", ""),
        reps=reps,
    )
    with path.open("a", newline="") as f:
        writer = csv.writer(f)
        if new:
            writer.writerow([*meta, "shape", "dtype", "pass", "impl", "median_ms", "ratio_to_floor"])
        for r in rows:
            shape = "x".join(map(str, r["shape"]))
            dtype = str(r["dtype"]).replace("torch.", "")
            writer.writerow(
                [*meta.values(), shape, dtype, r["mode"], r["impl"], f"{r['sec'] * 1e3:.4f}", f"{r['ratio']:.3f}"]
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="two shapes, 5 repetitions")
    parser.add_argument("--markdown", action="store_true", help="print the table as markdown")
    parser.add_argument("--reps", type=int, default=None, help="repetitions per implementation (default 21, quick 5)")
    parser.add_argument("--csv", type=Path, default=RESULTS, help=f"CSV to append to (default {RESULTS})")
    parser.add_argument("--no-csv", action="store_true", help="do not append CSV rows")
    parser.add_argument("--no-reexec", action="store_true", help="do not re-run under GLIBC_TUNABLES")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1, see the module doc)")
    parser.add_argument(
        "--only",
        choices=("rotary", "cos_sin"),
        default=None,
        help="run only the rotation rows or only the rope_cos_sin table-builder rows (default: both)",
    )
    args = parser.parse_args()
    if os.environ.get("GLIBC_TUNABLES") != TUNABLES and not args.no_reexec:
        env = {**os.environ, "GLIBC_TUNABLES": TUNABLES}
        os.execve(sys.executable, [sys.executable, *sys.argv], env)  # malloc settings only apply at startup
    torch.set_num_threads(args.threads)
    # One compiled transformers function meets 4 shapes x 3 dtypes x grad/no-grad: without a higher limit Dynamo
    # stops recompiling after 8 variants and silently runs it eagerly.
    torch._dynamo.config.recompile_limit = 64
    torch._dynamo.config.cache_size_limit = 64
    reps = args.reps or (5 if args.quick else 21)
    shapes = QUICK_SHAPES if args.quick else SHAPES
    from ropekit.kernels import cpu

    cpu.load()  # build or load the C++ kernel before timing
    path = "C++ kernel (compiled)" if cpu.load_error() is None else f"eager fallback ({cpu.load_error()})"
    print(f"# {machine()}; torch {torch.__version__}; ropekit CPU path: {path}")
    print(f"# GLIBC_TUNABLES={os.environ.get('GLIBC_TUNABLES', '(unset)')}; median of {reps}; ratios to the copy floor")
    rows: list[dict] = []
    if args.only != "cos_sin":
        rows, notes = bench(shapes, (torch.float32, torch.bfloat16, torch.float16), reps)
        print_table(rows, args.markdown)
        for note in notes:
            print(f"# note: {note}")
    if args.only != "rotary":
        cos_sin_rows = bench_cos_sin(reps)
        print_cos_sin_table(cos_sin_rows, args.markdown)
        rows += cos_sin_rows
    if not args.no_csv:
        write_csv(rows, args.csv, reps)
        print(f"# appended {len(rows)} rows to {args.csv}")


if __name__ == "__main__":
    main()
