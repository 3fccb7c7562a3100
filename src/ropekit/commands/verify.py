"""``ropekit verify``: check the theorems and compatibility promises on the installed package.

Each check returns the worst error it saw and its tolerance; the command prints a pass/fail table and
exits non-zero when any check fails. The test suite checks the same properties more thoroughly.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable
from dataclasses import dataclass

import torch

from ropekit.functional import apply_rotary, rope_cos_sin
from ropekit.layout import convert_qk_layout
from ropekit.reference import apply_rotary_complex, apply_rotary_matrix, apply_rotary_reference
from ropekit.scaling import rope_frequencies

__all__ = ["CheckResult", "register", "run_checks"]

_LAYOUTS = (False, True)


@dataclass(frozen=True)
class CheckResult:
    name: str
    error: float
    tolerance: float
    detail: str = ""

    @property
    def passed(self) -> bool:
        return self.error <= self.tolerance


def _tables(head_dim: int, positions: torch.Tensor, partial: float = 1.0, theta: float = 10_000.0):
    inv, _ = rope_frequencies({"rope_theta": theta, "partial_rotary_factor": partial}, head_dim=head_dim)
    return rope_cos_sin(inv, positions)


def _check_forms() -> CheckResult:
    g = torch.Generator().manual_seed(0)
    worst = 0.0
    for interleaved in _LAYOUTS:
        for partial in (1.0, 0.5):
            x = torch.randn(2, 3, 17, 64, generator=g, dtype=torch.float64)
            cos, sin = _tables(64, torch.arange(17), partial)
            a = apply_rotary_reference(x, cos, sin, interleaved=interleaved)
            for other in (apply_rotary_complex, apply_rotary_matrix):
                worst = max(worst, (a - other(x, cos, sin, interleaved=interleaved)).abs().max().item())
    return CheckResult("three forms agree (matrix, complex, cos/sin; both layouts; partial)", worst, 1e-12)


def _check_relativity() -> CheckResult:
    g = torch.Generator().manual_seed(1)
    worst = 0.0
    for interleaved in _LAYOUTS:
        q = torch.randn(64, dtype=torch.float64, generator=g)
        k = torch.randn(64, dtype=torch.float64, generator=g)
        for m, n in ((3, 10), (1000, 1017), (70_000, 70_007)):
            cos, sin = _tables(64, torch.tensor([m, n]))
            rq = apply_rotary(q.expand(2, 64), cos, sin, interleaved=interleaved)[0]
            rk = apply_rotary(k.expand(2, 64), cos, sin, interleaved=interleaved)[1]
            cos0, sin0 = _tables(64, torch.tensor([0, n - m]))
            rk0 = apply_rotary(k.expand(2, 64), cos0, sin0, interleaved=interleaved)[1]
            worst = max(worst, abs((rq @ rk - q @ rk0).item()))
    return CheckResult("relativity <R_m q, R_n k> = <q, R_(n-m) k>", worst, 1e-5)


def _check_orthogonality() -> CheckResult:
    g = torch.Generator().manual_seed(2)
    x = torch.randn(4, 1000, 128, dtype=torch.float64, generator=g)
    worst = 0.0
    for interleaved in _LAYOUTS:
        cos, sin = _tables(128, torch.arange(1000) * 997)
        y = apply_rotary(x, cos, sin, interleaved=interleaved)
        worst = max(worst, (y.norm(dim=-1) / x.norm(dim=-1) - 1).abs().max().item())
        back = apply_rotary(y, cos, -sin, interleaved=interleaved)
        worst = max(worst, (back - x).abs().max().item())
    return CheckResult("orthogonality (norms kept) and inverse = rotation by -theta", worst, 1e-6)


def _check_identities() -> CheckResult:
    d, L = 128, 4096
    default, _ = rope_frequencies(None, head_dim=d)
    cases = {
        "linear": {"rope_type": "linear", "factor": 1.0},
        "ntk": {"rope_type": "ntk", "factor": 1.0},
        "dynamic": {"rope_type": "dynamic", "factor": 1.0},
        "yarn": {"rope_type": "yarn", "factor": 1.0, "original_max_position_embeddings": L},
        "llama3": {
            "rope_type": "llama3",
            "factor": 1.0,
            "low_freq_factor": 1.0,
            "high_freq_factor": 4.0,
            "original_max_position_embeddings": L,
        },
        "longrope": {
            "rope_type": "longrope",
            "short_factor": [1.0] * (d // 2),
            "long_factor": [1.0] * (d // 2),
            "original_max_position_embeddings": L,
            "factor": 1.0,
        },
        "dynamic below L": {"rope_type": "dynamic", "factor": 8.0},
    }
    worst = 0.0
    for params in cases.values():
        inv, af = rope_frequencies(params, head_dim=d, max_position_embeddings=L, seq_len=L)
        worst = max(worst, (inv / default - 1).abs().max().item(), abs(af - 1))
    # PI by positions (m / s) equals PI by frequencies (theta / s)
    s = 4.0
    pi, _ = rope_frequencies({"rope_type": "linear", "factor": s}, head_dim=d)
    m = torch.arange(0, 8192, 4)
    by_freq = rope_cos_sin(pi, m)[0]
    by_pos = rope_cos_sin(default, m // 4)[0]
    worst = max(worst, (by_freq - by_pos).abs().max().item())
    # YaRN lies between default / factor and default; default attention factor 0.1 ln s + 1
    yarn, af = rope_frequencies(
        {"rope_type": "yarn", "factor": 16.0, "original_max_position_embeddings": L}, head_dim=d
    )
    lo, hi = default / 16.0, default
    outside = torch.relu(lo - yarn) + torch.relu(yarn - hi)
    worst = max(worst, (outside / default).max().item(), abs(af - (0.1 * math.log(16.0) + 1)))
    return CheckResult("scaling identities (factor 1 = default, dynamic <= L, PI, YaRN bounds)", worst, 2e-6)


def _check_precision() -> CheckResult:
    inv, _ = rope_frequencies(None, head_dim=128)
    positions = torch.tensor([2**20, 2**22, 2**24 - 1, 2**24], dtype=torch.int64) - torch.arange(4)
    cos, sin = rope_cos_sin(inv, positions)
    angle = positions.double()[:, None] * inv.double()[None]
    err = max((cos.double() - angle.cos()).abs().max().item(), (sin.double() - angle.sin()).abs().max().item())
    return CheckResult("cos/sin vs float64 at positions up to 2**24", err, 2e-6)


def _check_layout_conversion() -> CheckResult:
    g = torch.Generator().manual_seed(3)
    n_heads, head_dim, hidden, T = 4, 32, 64, 9
    wq = torch.randn(n_heads * head_dim, hidden, dtype=torch.float64, generator=g)
    wk = torch.randn(n_heads * head_dim, hidden, dtype=torch.float64, generator=g)
    x = torch.randn(T, hidden, dtype=torch.float64, generator=g)
    cos, sin = _tables(head_dim, torch.arange(T))

    def scores(wq, wk, interleaved):
        q = (x @ wq.T).view(T, n_heads, head_dim).transpose(0, 1)  # [H, T, D]
        k = (x @ wk.T).view(T, n_heads, head_dim).transpose(0, 1)
        q, k = apply_rotary(q, cos, sin, interleaved=interleaved), apply_rotary(k, cos, sin, interleaved=interleaved)
        return q @ k.transpose(-1, -2)  # [H, T, T]

    base = scores(wq, wk, True)
    conv = scores(
        convert_qk_layout(wq, n_heads, head_dim, to="half"), convert_qk_layout(wk, n_heads, head_dim, to="half"), False
    )
    return CheckResult(
        "interleaved weights converted to half pairing give equal scores", (base - conv).abs().max().item(), 1e-10
    )


def _check_transformers() -> CheckResult | None:
    try:
        from ropekit.hf.parity import max_relative_difference
    except ImportError:
        return None
    return CheckResult(
        "inv_freq and attention factor equal transformers' for every rope type", max_relative_difference(), 2e-6
    )


CHECKS: tuple[Callable[[], CheckResult | None], ...] = (
    _check_forms,
    _check_relativity,
    _check_orthogonality,
    _check_identities,
    _check_precision,
    _check_layout_conversion,
    _check_transformers,
)


def run_checks() -> list[CheckResult]:
    """Run every check (skipping the transformers one when transformers is absent)."""
    return [r for r in (check() for check in CHECKS) if r is not None]


def _run(args: argparse.Namespace) -> int:
    results = run_checks()
    width = max(len(r.name) for r in results)
    print(f"{'check':<{width}}  {'worst error':>11}  {'tolerance':>9}  result")
    for r in results:
        print(f"{r.name:<{width}}  {r.error:>11.3g}  {r.tolerance:>9.1g}  {'PASS' if r.passed else 'FAIL'}")
    failed = sum(not r.passed for r in results)
    print(f"{len(results) - failed} passed, {failed} failed")
    return 1 if failed else 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("verify", help="check RoPE's properties and HF compatibility on this installation")
    p.set_defaults(func=_run)
