"""The rows another CPU kind runs: a second build of the kernel one instruction-set tier down, against the reference.

ropekit compiles its kernel with ``-march=native``, so each machine tests only its own rows: an AVX-512 machine
never compiles the AVX2 rows, an AVX2 machine never the plain loops. Here the kernel is built again without the
top tier (``-mno-avx512f`` on AVX-512 machines, ``-mno-avx2`` on AVX2 ones; one extra compile, cached like the
main build) and checked like the main build: bit for bit against the reference for tables and positions, both
pairings, forward and conjugate, in place, streaming stores, partial groups of heads; the table-free rows bit for
bit against the main build.
"""

from __future__ import annotations

import itertools
from types import ModuleType

import pytest
import torch
from kernel_helpers import make_case

from ropekit.kernels import cpu, tablefree
from ropekit.reference import apply_rotary_reference

# (head_dim, pairs): the unrolled 32 and 64 pairs, a vector step plus a scalar tail with pass-through, 48 pairs
ROWS = ((64, 32), (128, 64), (80, 20), (96, 48), (56, 24))


def _lower_tier_flags() -> tuple[str, ...] | None:
    flags = set(cpu._cpu_signature().split())
    if {"avx512f", "avx512bw", "avx512vl"} <= flags:
        return ("-mno-avx512f",)  # the AVX2 rows (Zen 2/3, Haswell..Alder Lake)
    if "avx2" in flags:
        return ("-mno-avx2",)  # the plain loops
    return None


@pytest.fixture(scope="module")
def lower() -> ModuleType:
    if cpu.load(warn=False) is None:
        pytest.skip(f"compiled kernel unavailable: {cpu.load_error()}")
    flags = _lower_tier_flags()
    if flags is None:
        pytest.skip("this CPU's build already runs the plain loops")
    return cpu.load_variant(flags)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
def test_lower_tier_rows_are_bitwise_the_reference(lower: ModuleType, dtype: torch.dtype) -> None:
    cases = itertools.product(ROWS, (False, True), (False, True), ("table", "batch_table", "pos2d"), (0, -1))
    for i, ((d, r), interleaved, conj, mode, stream) in enumerate(cases):
        case = make_case(dtype, mode, Hq=5, Hk=1, T=9, D=d, r=r, seed=i)
        sin_full = -case.sin_full if conj else case.sin_full
        ref_q, ref_k = (
            apply_rotary_reference(x, case.cos_full, sin_full, interleaved=interleaved) for x in (case.q, case.k)
        )
        args = (case.cos, case.sin, case.positions, interleaved, conj, stream)
        q_out, k_out = torch.empty_like(case.q), torch.empty_like(case.k)
        lower.rotary_qk(case.q, case.k, q_out, k_out, *args)
        assert torch.equal(q_out, ref_q) and torch.equal(k_out, ref_k), (d, r, interleaved, conj, mode, stream)
        q_in, k_in = case.q.clone(), case.k.clone()
        lower.rotary_qk(q_in, k_in, q_in, k_in, *args)  # in place
        assert torch.equal(q_in, ref_q) and torch.equal(k_in, ref_k), (d, r, interleaved, conj, mode, "in place")


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
def test_lower_tier_tablefree_rows_equal_the_main_build(lower: ModuleType, dtype: torch.dtype) -> None:
    main = cpu.load()
    assert main is not None
    cases = itertools.product(ROWS, (False, True), (False, True), (1, 6), (1, 2))
    for (d, r), interleaved, conj, hq, pos_rows in cases:
        g = torch.Generator().manual_seed(d + r)
        q = torch.randn(2, hq, 70, d, generator=g).to(dtype)
        k = torch.randn(2, 1, 70, d, generator=g).to(dtype)
        positions = torch.randint(-(2**40), 2**40, (pos_rows, 70), generator=g)  # one row: shared by the batch
        inv_freq = 1.0 / 10000 ** (torch.arange(r, dtype=torch.float32) / r)
        cst = tablefree.device_constants(inv_freq, q.device)
        outs = []
        for module in (main, lower):
            q_out, k_out = torch.empty_like(q), torch.empty_like(k)
            module.rotary_qk_angles(q, k, q_out, k_out, positions, cst, 1.0, interleaved, conj, -1)
            outs.append((q_out, k_out))
        assert torch.equal(outs[0][0], outs[1][0]) and torch.equal(outs[0][1], outs[1][1]), (d, r, interleaved, conj)
