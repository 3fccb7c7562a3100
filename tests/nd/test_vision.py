"""The vision experiment (tiny preset) and its ViT: protocol outputs, split, invariances of the model."""

from __future__ import annotations

import json
import pathlib

import pytest
import torch

from ropekit.experiments import vision
from ropekit.nd.vit import PE_KINDS, TinyViT


def test_stratified_split_is_fixed_disjoint_and_balanced() -> None:
    labels = torch.arange(10).repeat_interleave(50)  # sorted by label, like MNIST 5k
    train, test = vision.stratified_split(labels, 30, 8)
    assert set(train.tolist()).isdisjoint(test.tolist())
    assert torch.bincount(labels[train]).tolist() == [30] * 10 and torch.bincount(labels[test]).tolist() == [8] * 10
    train2, test2 = vision.stratified_split(labels, 30, 8)
    assert torch.equal(train, train2) and torch.equal(test, test2)
    with pytest.raises(ValueError, match="fewer than"):
        vision.stratified_split(labels, 45, 10)


@pytest.mark.parametrize("pe", PE_KINDS)
def test_vit_shapes_and_shift_behaviour(pe: str) -> None:
    torch.manual_seed(0)
    model = TinyViT(pe, dim=16, depth=1, heads=2).eval()
    x = torch.rand(3, 1, 28, 28)
    with torch.no_grad():
        out, shifted, big = model(x), model(x, shift=2.0), model(torch.rand(3, 1, 42, 42))
    assert out.shape == shifted.shape == big.shape == (3, 10)
    if pe in ("axial", "mixed", "lie_commuting", "none"):  # relative or position-free: exactly shift invariant
        torch.testing.assert_close(out, shifted, atol=1e-5, rtol=0)
    else:  # absolute and LieRE see absolute coordinates
        assert (out - shifted).abs().max() > 1e-4


def test_absolute_table_is_exact_at_training_grid() -> None:
    model = TinyViT("absolute", dim=8, depth=1, heads=2)
    torch.testing.assert_close(model._absolute(4, 0.0), model.table.flatten(1).T, atol=1e-6, rtol=0)


def test_tiny_preset_follows_the_protocol(tmp_path: pathlib.Path) -> None:
    section = vision.run("tiny", tmp_path, seed=0)
    for key in (
        "name",
        "title",
        "figures",
        "tables",
        "findings",
        "published",
        "agreement",
        "config",
        "seed",
        "runtime_s",
    ):
        assert key in section
    assert section["name"] == "vision" and section["config"] == vision.PRESETS["tiny"]
    for item in section["figures"] + section["tables"]:
        assert (tmp_path / item["path"]).is_file() and item["caption"].count("\n") == 1
    assert json.loads((tmp_path / "sections" / "vision.json").read_text())["agreement"] == section["agreement"]
    rows = (tmp_path / "results" / "vision_accuracy.csv").read_text().splitlines()
    cfg = vision.PRESETS["tiny"]
    n_rotary = sum(e in ("axial", "mixed", "lie_commuting", "liere") for e in cfg["encodings"])
    n_enc = len(cfg["encodings"])
    assert len(rows) == 1 + n_enc * (len(cfg["resolutions"]) + len(cfg["shifts"])) + n_rotary * len(cfg["resolutions"])
    assert section["agreement"].startswith(("Agrees", "Disagrees", "Mixed", "Inconclusive", "Not tested"))


def test_interpolated_positions_equal_default_at_training_grid() -> None:
    torch.manual_seed(1)
    model = TinyViT("axial", dim=16, depth=1, heads=2).eval()
    x, big = torch.rand(2, 1, 28, 28), torch.rand(2, 1, 56, 56)
    with torch.no_grad():
        torch.testing.assert_close(model(x, interpolate_positions=True), model(x))
        assert (model(big, interpolate_positions=True) - model(big)).abs().max() > 1e-4
