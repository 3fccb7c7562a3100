"""Backend selection, the no-compiler fallback, and positions= validation."""

from __future__ import annotations

import itertools
import warnings

import pytest
import torch
from kernel_helpers import assert_matches, make_case, reference_qk

from ropekit import apply_rotary, apply_rotary_qk, rope_cos_sin
from ropekit.kernels import cpu, current_backend, use_backend


def test_use_backend_nests_and_is_an_enum() -> None:
    from ropekit.kernels import Backend

    assert current_backend() == "auto" and current_backend() is Backend.AUTO
    with use_backend("reference") as chosen:
        assert chosen is Backend.REFERENCE and current_backend() == "reference"
        with use_backend(Backend.CPP):
            assert current_backend() == "cpp"
        assert current_backend() == "reference"
    assert current_backend() == "auto"
    with pytest.raises(ValueError, match="expected one of"), use_backend("cuda"):
        pass


def test_use_backend_is_per_thread() -> None:
    import threading

    seen = []
    with use_backend("eager"):
        worker = threading.Thread(target=lambda: seen.append(current_backend()))
        worker.start()
        worker.join()
    assert seen == ["auto"]  # a ContextVar: another thread does not see this block's choice


def test_env_var_is_read_once_at_import_and_validated() -> None:
    import os
    import subprocess
    import sys

    code = "import ropekit.kernels as k; print(k.current_backend().value)"
    env = {**os.environ, "ROPEKIT_BACKEND": "eager"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "eager"
    env["ROPEKIT_BACKEND"] = "fast"
    bad = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert bad.returncode != 0 and "ROPEKIT_BACKEND" in bad.stderr and "expected one of" in bad.stderr


def test_no_compiler_falls_back_to_eager_with_one_warning(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cpu, "_state", {})  # forget the loaded module for this test only
    monkeypatch.setenv("ROPEKIT_NO_BUILD", "1")
    case = make_case(torch.bfloat16, "pos1d")
    ref_q, ref_k = reference_qk(case, False)
    with pytest.warns(RuntimeWarning, match="eager PyTorch fallback"), use_backend("cpp"):
        out_q, out_k = apply_rotary_qk(case.q, case.k, case.cos, case.sin, positions=case.positions)
    assert_matches(out_q, ref_q)
    assert_matches(out_k, ref_k)
    assert cpu.load_error() == "ROPEKIT_NO_BUILD=1 is set"
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a second call must not warn again
        with use_backend("cpp"):
            apply_rotary(case.q, case.cos, case.sin, positions=case.positions)


def test_positions_errors_say_what_to_do() -> None:
    case = make_case(torch.float32, "pos1d", T=5)  # tables of T + 9 = 14 rows
    q, cos, sin = case.q, case.cos, case.sin
    with pytest.raises(ValueError, match="table has 14 rows"):
        apply_rotary(q, cos, sin, positions=torch.arange(5) + 10)
    with pytest.raises(ValueError, match=r"\[0, 13\]"):
        apply_rotary(q, cos, sin, positions=torch.tensor([0, 1, -1, 2, 3]))
    with pytest.raises(ValueError, match=r"must be \[T\] or \[B, T\]"):
        apply_rotary(q, cos, sin, positions=torch.arange(4))
    with pytest.raises(ValueError, match=r"B = x\.shape\[0\]"):
        apply_rotary(q, cos, sin, positions=torch.zeros(3, 5, dtype=torch.long))
    with pytest.raises(ValueError, match="integer"):
        apply_rotary(q, cos, sin, positions=torch.arange(5.0))
    with pytest.raises(ValueError, match=r"\[L, rotary_dim/2\] tables"):
        apply_rotary(q, cos[None], sin[None], positions=torch.arange(5))
    with pytest.raises(ValueError, match="head_dim"):
        apply_rotary(q[..., :8], cos, sin, positions=torch.arange(5))


def test_compiled_kernel_checks_positions_itself() -> None:
    """Below the validated API (e.g. under torch.compile, where the range check is skipped) the C++ kernel
    still refuses out-of-range positions instead of reading out of bounds."""
    module = cpu.load()
    if module is None:
        pytest.skip(f"compiled kernel unavailable: {cpu.load_error()}")
    q = torch.randn(1, 1, 3, 8)
    table = torch.randn(4, 4)
    with pytest.raises(RuntimeError, match="outside the cos/sin table"):
        module.rotary_qk(q, q, q.clone(), q.clone(), table, table, torch.tensor([[0, 9, 1]]), False, False, -1)


def test_broadcast_fast_path_agrees_with_torch() -> None:
    """The validation's shortcut accepts exactly the cos/sin shapes that torch.broadcast_shapes maps onto x."""
    from ropekit.functional import _broadcasts_onto

    xs = [(5,), (3, 5), (2, 3, 5), (1, 3, 5), (2, 1, 5)]
    cs = [(), (5,), (1,), (4,), (1, 5), (3, 5), (3, 1), (2, 3, 5), (1, 1, 5), (1, 2, 3, 5), (2, 1, 1), (3, 4)]
    for x, c in itertools.product(xs, cs):
        try:
            expected = torch.broadcast_shapes(torch.Size(x), torch.Size(c)) == torch.Size(x)
        except RuntimeError:
            expected = False
        assert _broadcasts_onto(torch.Size(c), torch.Size(x)) == expected, (x, c)


def test_backend_is_a_graph_constant_under_compile_and_import_stays_light() -> None:
    import subprocess
    import sys

    from ropekit.kernels import backend

    def probe() -> int:
        return 0

    torch.compiler.assume_constant_result(probe)
    assert probe._dynamo_marked_constant is True  # what backend._traced_backend carries without importing dynamo
    assert backend._traced_backend._dynamo_marked_constant is True
    code = "import sys, ropekit; print('torch._dynamo' in sys.modules, 'triton' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]  # import ropekit neither loads dynamo nor triton

    cos, sin = rope_cos_sin(1.0 / 100 ** (torch.arange(4) / 4), torch.arange(8))
    q = torch.randn(1, 2, 8, 8)
    for name in ("eager", "cpp"):
        torch._dynamo.reset()
        with use_backend(name):
            got = torch.compile(lambda q: apply_rotary(q, cos, sin), fullgraph=True, backend="eager")(q)
        assert_matches(got, apply_rotary(q, cos, sin))
