"""Every name a package lists in ``__all__`` imports from it; the helpers the docs name are re-exported."""

from __future__ import annotations

import importlib

import pytest

PACKAGES = ("ropekit", "ropekit.nd", "ropekit.hf", "ropekit.kernels", "ropekit.models")


@pytest.mark.parametrize("name", PACKAGES)
def test_all_names_import(name: str) -> None:
    module = importlib.import_module(name)
    missing = [n for n in getattr(module, "__all__", ()) if not hasattr(module, n)]
    assert not missing, f"{name}.__all__ lists names it does not define: {missing}"


def test_documented_helpers_are_reexported() -> None:
    import ropekit
    import ropekit.nd
    from ropekit.hf.config import from_hf_layers
    from ropekit.nd.multimodal import LAYOUT_SECTIONS, layout_name

    assert ropekit.from_hf_layers is from_hf_layers and "from_hf_layers" in ropekit.__all__
    assert ropekit.nd.layout_name is layout_name and ropekit.nd.LAYOUT_SECTIONS is LAYOUT_SECTIONS
    assert {"layout_name", "LAYOUT_SECTIONS"} <= set(ropekit.nd.__all__)
