"""One command for a lent CUDA GPU: Triton parity on the GPU, then the Triton kernel against the copy floor and peers.

Run on a CUDA machine: ``python benchmarks/gpu_check.py [--csv PATH] [--reps N]`` (about 3-5 minutes on one H200;
``--quick`` runs one shape). ``python benchmarks/gpu_check.py --dry-run`` checks the script itself on a CPU
under ``TRITON_INTERPRET=1`` at tiny shapes (what CI can do; no figure from a dry run is a GPU figure).

1. Parity: ropekit's Triton backend against :func:`ropekit.reference.apply_rotary_reference` computed in float64,
   over both pairings, partial rotary, GQA, per-token positions, fp32/bf16, forward and backward with the same
   upstream gradient; tolerance from the output dtype's rounding (``4 * eps`` relative to the largest value).
2. Timing with CUDA events after warm-up, medians, for Llama-3-8B heads (Hq 32, Hk 8, D 128) and Llama-3-70B
   heads (Hq 64, Hk 8, D 128) at T = 4096 and 32768, fp32/bf16, forward and forward+backward: the copy floor
   (q and k copied into reused buffers; twice that for forward+backward), ropekit (Triton), transformers'
   ``apply_rotary_pos_emb`` under ``torch.compile`` (the formula re-typed if transformers is missing), Meta's
   complex-multiply form, and Liger-Kernel's ``liger_rotary_pos_emb`` when importable. Ratios are to the floor
   of the same run. CSV rows carry the GPU's name, versions and UTC time.
"""

from __future__ import annotations

import argparse
import csv
import datetime
import functools
import os
import statistics
import sys
from collections.abc import Callable
from pathlib import Path

import torch

RESULTS = Path(__file__).resolve().parent / "results" / "gpu_check.csv"
SHAPES = ((1, 32, 8, 4096, 128), (1, 64, 8, 4096, 128), (1, 32, 8, 32768, 128), (1, 64, 8, 32768, 128))
QUICK_SHAPES = ((1, 32, 8, 4096, 128),)
DRY_SHAPES = ((1, 4, 2, 16, 16),)

Fn = Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]


def _rotate_half(x: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


def _hf_formula() -> tuple[Callable[..., tuple[torch.Tensor, torch.Tensor]], str | None]:
    try:
        from transformers.models.llama.modeling_llama import apply_rotary_pos_emb

        return apply_rotary_pos_emb, None
    except ImportError:
        return (lambda q, k, c, s: (q * c + _rotate_half(q) * s, k * c + _rotate_half(k) * s)), (
            "transformers not importable: its formula re-typed"
        )


def _meta_complex(q: torch.Tensor, k: torch.Tensor, freqs_cis: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    qc = torch.view_as_complex(q.float().reshape(*q.shape[:-1], -1, 2))  # [B, H, T, D/2]
    kc = torch.view_as_complex(k.float().reshape(*k.shape[:-1], -1, 2))
    q_out = torch.view_as_real(qc * freqs_cis).flatten(3)  # [B, H, T, D]
    k_out = torch.view_as_real(kc * freqs_cis).flatten(3)
    return q_out.type_as(q), k_out.type_as(k)


def parity(device: torch.device) -> list[str]:
    """Failures (empty when every case matches the float64 reference)."""
    from ropekit import apply_rotary_qk, rope_cos_sin, rope_frequencies, use_backend
    from ropekit.reference import apply_rotary_reference

    failures = []
    gen = torch.Generator().manual_seed(0)
    for dtype in (torch.float32, torch.bfloat16):
        for interleaved in (False, True):
            for partial in (1.0, 0.5):
                for with_positions in (False, True):
                    B, Hq, Hk, T, D = 2, 4, 1, 33, 64
                    inv, _ = rope_frequencies({"partial_rotary_factor": partial}, head_dim=D)
                    L = 100
                    pos = torch.randint(0, L, (B, T), generator=gen)
                    q = torch.randn(B, Hq, T, D, generator=gen).to(dtype)
                    k = torch.randn(B, Hk, T, D, generator=gen).to(dtype)
                    gq = torch.randn(q.shape, generator=gen).to(dtype)
                    gk = torch.randn(k.shape, generator=gen).to(dtype)
                    if with_positions:
                        cos, sin = rope_cos_sin(inv, torch.arange(L))  # [L, r]
                        ref_cos, ref_sin = cos[pos][:, None], sin[pos][:, None]  # [B, 1, T, r]
                    else:
                        cos, sin = rope_cos_sin(inv, torch.arange(T))  # [T, r]
                        ref_cos, ref_sin = cos, sin
                    qd, kd = q.to(device, copy=True).requires_grad_(), k.to(device, copy=True).requires_grad_()
                    extra = {"positions": pos.to(device)} if with_positions else {}
                    with use_backend("triton"):
                        tables = cos.to(device), sin.to(device)
                        oq, ok = apply_rotary_qk(qd, kd, *tables, interleaved=interleaved, **extra)
                    torch.autograd.backward((oq, ok), (gq.to(device), gk.to(device)))
                    q64, k64 = q.double().requires_grad_(), k.double().requires_grad_()
                    rq = apply_rotary_reference(q64, ref_cos.double(), ref_sin.double(), interleaved=interleaved)
                    rk = apply_rotary_reference(k64, ref_cos.double(), ref_sin.double(), interleaved=interleaved)
                    torch.autograd.backward((rq, rk), (gq.double(), gk.double()))
                    eps = torch.finfo(dtype).eps
                    pairs = (("q", oq, rq), ("k", ok, rk), ("dq", qd.grad, q64.grad), ("dk", kd.grad, k64.grad))
                    for name, ours, ref in pairs:
                        assert ours is not None and ref is not None
                        err = (ours.detach().double().cpu() - ref.detach()).abs().max().item()
                        tol = 4 * eps * max(ref.detach().abs().max().item(), 1.0)
                        if not err <= tol:
                            failures.append(
                                f"{name} {dtype} interleaved={interleaved} partial={partial} "
                                f"positions={with_positions}: max err {err:.2e} > {tol:.2e}"
                            )
    failures += _tablefree_parity(device, gen)
    return failures


def _tablefree_parity(device: torch.device, gen: torch.Generator) -> list[str]:
    """The table-free Triton path against float64 rotation by rope_angles' float32 angles, positions to 2**50."""
    from ropekit import apply_rotary_qk_tablefree, rope_frequencies, use_backend
    from ropekit.angles import exact_position_angles
    from ropekit.reference import apply_rotary_reference

    failures = []
    for dtype in (torch.float32, torch.bfloat16):
        for interleaved in (False, True):
            for start in (0, 2**40 + 3, -(2**50)):
                inv, _ = rope_frequencies(None, head_dim=64)
                pos = start + torch.randint(0, 100_000, (2, 33), generator=gen)
                q = torch.randn(2, 8, 33, 64, generator=gen).to(dtype)
                k = torch.randn(2, 2, 33, 64, generator=gen).to(dtype)
                gq = torch.randn(q.shape, generator=gen).to(dtype)
                qd, kd = q.to(device, copy=True).requires_grad_(), k.to(device, copy=True).requires_grad_()
                with use_backend("triton"):
                    oq, ok = apply_rotary_qk_tablefree(qd, kd, inv.to(device), positions=pos.to(device),
                                                       interleaved=interleaved)
                assert ok is not None
                oq.backward(gq.to(device))
                a = exact_position_angles(inv, pos).double()[:, None]  # [B, 1, T, r]
                q64 = q.double().requires_grad_()
                rq = apply_rotary_reference(q64, a.cos(), a.sin(), interleaved=interleaved)
                rk = apply_rotary_reference(k.double(), a.cos(), a.sin(), interleaved=interleaved)
                rq.backward(gq.double())
                eps = torch.finfo(dtype).eps
                assert qd.grad is not None and q64.grad is not None
                for name, ours, ref in (("q", oq, rq), ("k", ok, rk), ("dq", qd.grad, q64.grad)):
                    err = (ours.detach().double().cpu() - ref.detach()).abs().max().item()
                    tol = 4 * eps * max(ref.detach().abs().max().item(), 1.0)
                    if not err <= tol:
                        failures.append(f"table-free {name} {dtype} interleaved={interleaved} start={start}: "
                                        f"max err {err:.2e} > {tol:.2e}")
    return failures


def sweep(device: torch.device, reps: int, shape: tuple[int, ...]) -> list[dict]:
    """Block sizes and warps of both Triton kernels on one shape (bf16, forward, raw launches)."""
    from ropekit import rope_cos_sin, rope_frequencies
    from ropekit.kernels import tablefree, triton_rotary

    B, Hq, Hk, T, D = shape
    rows = []
    cuda = device.type == "cuda"
    q = torch.randn(B, Hq, T, D, device=device, dtype=torch.bfloat16)
    k = torch.randn(B, Hk, T, D, device=device, dtype=torch.bfloat16)
    qo, ko = torch.empty_like(q), torch.empty_like(k)
    inv, _ = rope_frequencies(None, head_dim=D)
    cos, sin = (t.to(device) for t in rope_cos_sin(inv, torch.arange(T)))
    pos = torch.arange(T, device=device)[None]
    cst = tablefree.device_constants(inv, device)
    floor = _time(lambda: (qo.copy_(q), ko.copy_(k)), reps, cuda)
    names = ("_BLOCK_M", "_NUM_WARPS", "_BLOCK_TT", "_NUM_WARPS_TT", "_BLOCK_T", "_NUM_WARPS_T", "_TOKEN_PROGRAMS")
    saved = {n: getattr(triton_rotary, n) for n in names}
    kinds = (  # (kernel, block variable, warps variable, blocks)
        ("table rows", "_BLOCK_M", "_NUM_WARPS", (8, 16, 32)),
        ("table tokens", "_BLOCK_TT", "_NUM_WARPS_TT", (1, 2, 4, 8)),
        ("table-free", "_BLOCK_T", "_NUM_WARPS_T", (1, 2, 4, 8)),
    )
    try:
        for kernel, block_var, warps_var, blocks in kinds:
            triton_rotary._TOKEN_PROGRAMS = kernel == "table tokens"
            for warps in (1, 2, 4):
                setattr(triton_rotary, warps_var, warps)
                for block in blocks:
                    setattr(triton_rotary, block_var, block)
                    if kernel == "table-free":
                        call = lambda: triton_rotary.rotary_qk_angles(q, k, qo, ko, pos, cst, 1.0, False, False)  # noqa: E731
                    else:
                        call = lambda: triton_rotary.rotary_qk(q, k, qo, ko, cos, sin, None, False, False)  # noqa: E731
                    ms = _time(call, reps, cuda)
                    rows.append({"kernel": kernel, "block": block, "warps": warps, "ms": ms, "ratio": ms / floor})
    finally:
        for n, v in saved.items():
            setattr(triton_rotary, n, v)
    print(f"# sweep: {B}x{Hq}/{Hk}x{T}x{D} bf16 forward, raw launches, copy floor {floor:.3f} ms")
    print("| kernel | block | warps | ms | ratio to floor |")
    print("|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['kernel']} | {r['block']} | {r['warps']} | {r['ms']:.3f} | {r['ratio']:.2f}x |")
    return rows


def _time(fn: Callable[[], object], reps: int, cuda: bool, inner: int = 10) -> float:
    """Median milliseconds per call of ``fn`` after warm-up: each sample times ``inner`` calls in a row between two
    CUDA events (perf_counter on a dry run), so a call's time is the larger of its GPU time and its host-side
    dispatch (launches are asynchronous and queue up)."""
    import time

    for _ in range(3):
        fn()
    if cuda:
        torch.cuda.synchronize()
    samples = []
    for _ in range(reps):
        if cuda:
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            for _ in range(inner):
                fn()
            end.record()
            torch.cuda.synchronize()
            samples.append(start.elapsed_time(end) / inner)
        else:
            t0 = time.perf_counter()
            fn()
            samples.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(samples)


@functools.cache
def _compiled_hf() -> tuple[Callable[..., tuple[torch.Tensor, torch.Tensor]], str | None]:
    """transformers' formula under ``torch.compile`` (one compiled function for every shape: dynamic)."""
    hf, note = _hf_formula()
    return torch.compile(hf, dynamic=True), note


def implementations(q: torch.Tensor, k: torch.Tensor, notes: list[str]) -> dict[str, Fn]:
    from ropekit import apply_rotary_qk, apply_rotary_qk_tablefree, rope_cos_sin, rope_frequencies
    from ropekit.kernels import triton_rotary

    T, D, device, dtype = q.shape[-2], q.shape[-1], q.device, q.dtype
    inv, _ = rope_frequencies(None, head_dim=D)
    inv_dev = inv.to(device)
    positions = torch.arange(T, device=device)[None]  # [1, T]
    cos, sin = (t.to(device) for t in rope_cos_sin(inv, torch.arange(T)))  # [T, D/2] float32
    hf_cos = torch.cat((cos, cos), -1).to(dtype)[None]  # [1, T, D]: transformers' duplicated halves
    hf_sin = torch.cat((sin, sin), -1).to(dtype)[None]
    hf_compiled, note = _compiled_hf()
    if note:
        notes.append(note)
    freqs_cis = torch.polar(torch.ones_like(cos), torch.atan2(sin, cos))  # [T, D/2] complex64
    qb, kb = torch.empty_like(q), torch.empty_like(k)

    def raw(q: torch.Tensor, k: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        q_out, k_out = torch.empty_like(q), torch.empty_like(k)
        triton_rotary.rotary_qk(q, k, q_out, k_out, cos, sin, None, False, False)
        return q_out, k_out

    def tablefree(q: torch.Tensor, k: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out_q, out_k = apply_rotary_qk_tablefree(q, k, inv_dev, positions=positions)
        assert out_k is not None
        return out_q, out_k

    impls: dict[str, Fn] = {
        "copy floor": lambda q, k: (qb.copy_(q), kb.copy_(k)),
        "ropekit triton": lambda q, k: apply_rotary_qk(q, k, cos, sin),
        "ropekit table-free": tablefree,
        "transformers compile": lambda q, k: hf_compiled(q, k, hf_cos, hf_sin),
        "meta complex": lambda q, k: _meta_complex(q, k, freqs_cis),
    }
    if not q.requires_grad:
        impls["triton launch only"] = raw  # the kernel without ropekit's checks and dispatch (forward rows only)
    try:
        from liger_kernel.transformers.rope import liger_rotary_pos_emb

        impls["liger"] = lambda q, k: liger_rotary_pos_emb(q, k, hf_cos, hf_sin)
    except ImportError:
        notes.append("Liger-Kernel not importable: its rows are skipped")
    return impls


def _fwd_bwd(fn: Fn, q: torch.Tensor, k: torch.Tensor, grads: tuple[torch.Tensor, torch.Tensor]) -> None:
    q.grad = k.grad = None  # autograd then hands over the gradient buffer instead of adding into the last one
    torch.autograd.backward(fn(q, k), grads)


def bench(shapes: tuple[tuple[int, ...], ...], device: torch.device, reps: int) -> tuple[list[dict], list[str]]:
    from ropekit import use_backend

    rows, notes = [], []
    cuda = device.type == "cuda"
    for B, Hq, Hk, T, D in shapes:
        for dtype in (torch.float32, torch.bfloat16):
            q = torch.randn(B, Hq, T, D, device=device, dtype=dtype)
            k = torch.randn(B, Hk, T, D, device=device, dtype=dtype)
            gq, gk = torch.randn_like(q), torch.randn_like(k)
            impls = implementations(q, k, notes)
            qg, kg = q.clone().requires_grad_(), k.clone().requires_grad_()
            with use_backend("triton"):
                for backward in (False, True):
                    ms = {}
                    for name, fn in impls.items():
                        if backward and name == "triton launch only":
                            continue
                        if not backward:
                            ms[name] = _time(lambda fn=fn, q=q, k=k: fn(q, k), reps, cuda)
                        elif name == "copy floor":
                            ms[name] = 2 * _time(lambda fn=fn, q=q, k=k: fn(q, k), reps, cuda)
                        else:
                            ms[name] = _time(functools.partial(_fwd_bwd, fn, qg, kg, (gq, gk)), reps, cuda)
                    for name, t in ms.items():
                        rows.append({"shape": f"{B}x{Hq}/{Hk}x{T}x{D}", "dtype": str(dtype).removeprefix("torch."),
                                     "pass": "fwd+bwd" if backward else "fwd", "impl": name, "ms": t,
                                     "ratio": t / ms["copy floor"]})
    return rows, sorted(set(notes))


def print_table(rows: list[dict]) -> None:
    impls = list(dict.fromkeys(r["impl"] for r in rows))
    print("| shape (B x Hq/Hk x T x D) | dtype | pass | floor ms | " + " | ".join(impls) + " |")
    print("|" + "---|" * (4 + len(impls)))
    for g in dict.fromkeys((r["shape"], r["dtype"], r["pass"]) for r in rows):
        by = {r["impl"]: r for r in rows if (r["shape"], r["dtype"], r["pass"]) == g}
        cells = [f"{by[i]['ratio']:.2f}x" if i in by else "-" for i in impls]
        print(f"| {' | '.join(g)} | {by['copy floor']['ms']:.3f} | " + " | ".join(cells) + " |")


def write_csv(rows: list[dict], path: Path, device_name: str, reps: int) -> None:
    import ropekit

    path.parent.mkdir(parents=True, exist_ok=True)
    new = not path.exists()
    try:
        import triton

        triton_version = triton.__version__
    except ImportError:
        triton_version = "-"
    meta = {"utc": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "device": device_name, "torch": torch.__version__, "triton": triton_version,
            "ropekit": ropekit.__version__, "reps": reps}
    with path.open("a", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=[*meta, "shape", "dtype", "pass", "impl", "ms", "ratio"])
        if new:
            writer.writeheader()
        for r in rows:
            writer.writerow({**meta, **r})


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dry-run", action="store_true", help="CPU, TRITON_INTERPRET=1, tiny shapes (checks the script)")
    p.add_argument("--quick", action="store_true", help="one shape")
    p.add_argument("--reps", type=int, default=20)
    p.add_argument("--csv", default=str(RESULTS), help="CSV file to append rows to ('' for none)")
    p.add_argument("--sweep", action="store_true",
                   help="first time block sizes / warps of both Triton kernels, then time everything with the best")
    args = p.parse_args()
    if args.dry_run:
        if os.environ.get("TRITON_INTERPRET") != "1":  # must be set before triton is imported
            os.execve(sys.executable, [sys.executable, *sys.argv], {**os.environ, "TRITON_INTERPRET": "1"})
        device, name, shapes = torch.device("cpu"), "cpu (dry run, TRITON_INTERPRET=1)", DRY_SHAPES
    elif torch.cuda.is_available():
        device, name = torch.device("cuda"), torch.cuda.get_device_name()
        shapes = QUICK_SHAPES if args.quick else SHAPES
    else:
        print("gpu_check: no CUDA device; run with --dry-run to check the script on the CPU", file=sys.stderr)
        return 2
    failures = parity(device)
    print(f"# parity on {name}: {'PASS' if not failures else f'FAIL ({len(failures)})'}")
    for f in failures:
        print(f"  {f}")
    if args.sweep:
        from ropekit.kernels import triton_rotary

        swept = sweep(device, 2 if args.dry_run else args.reps, DRY_SHAPES[0] if args.dry_run else SHAPES[-1])
        best = {kind: min((r for r in swept if r["kernel"] == kind), key=lambda r: r["ms"]) for kind in
                ("table rows", "table tokens", "table-free")}
        triton_rotary._TOKEN_PROGRAMS = best["table tokens"]["ms"] <= best["table rows"]["ms"]
        triton_rotary._BLOCK_M, triton_rotary._NUM_WARPS = best["table rows"]["block"], best["table rows"]["warps"]
        triton_rotary._BLOCK_TT = best["table tokens"]["block"]
        triton_rotary._NUM_WARPS_TT = best["table tokens"]["warps"]
        triton_rotary._BLOCK_T, triton_rotary._NUM_WARPS_T = best["table-free"]["block"], best["table-free"]["warps"]
        print("# timing below with the sweep's best: " + "; ".join(
            f"{kind} block={r['block']} warps={r['warps']}" for kind, r in best.items())
            + f"; token programs for tables: {triton_rotary._TOKEN_PROGRAMS}")
    rows, notes = bench(shapes, device, 2 if args.dry_run else args.reps)
    print(f"# {name}, torch {torch.__version__}, medians of {args.reps} (CUDA events), ratio to the copy floor")
    print_table(rows)
    for n in notes:
        print(f"note: {n}")
    if args.csv and not args.dry_run:
        write_csv(rows, Path(args.csv), name, args.reps)
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
