"""Run the rotary ops on the eager backend in this folder's tests: the compiled C++ kernel is tested in
tests/kernels, and its first build in a fresh environment takes about a minute, which would dominate this folder's
time budget. A per-test fixture (not a module-level ``os.environ`` write) so other folders keep their backend."""

import pytest


@pytest.fixture(autouse=True)
def _eager_rotary_backend(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ROPEKIT_BACKEND", "eager")
