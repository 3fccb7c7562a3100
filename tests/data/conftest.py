"""Shared fixtures for the data tests; makes ``src/`` importable when ropekit is not installed."""

from __future__ import annotations

import importlib.util
import shutil
import sys
from pathlib import Path
from types import ModuleType

import pytest

REPO = Path(__file__).resolve().parents[2]

try:
    import ropekit  # noqa: F401
except ImportError:  # not pip-installed yet: use the checkout
    sys.path.insert(0, str(REPO / "src"))


@pytest.fixture(scope="session")
def build_script() -> ModuleType:
    """``scripts/build_datasets.py`` imported as a module (it has no import-time side effects)."""
    path = REPO / "scripts" / "build_datasets.py"
    spec = importlib.util.spec_from_file_location("ropekit_build_datasets", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses need the module registered
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def copy_data_file(tmp_path: Path):
    """Copy one bundled data file into ``tmp_path`` and return the copy's path."""
    from ropekit.data import DATA_DIR

    def copy(name: str) -> Path:
        dest = tmp_path / name
        shutil.copyfile(DATA_DIR / name, dest)
        return dest

    return copy
