"""`ropekit report --device` / the `gpu` preset: the device reaches every experiment, is part of the cache key,
is refused clearly where it cannot run, and the gpu preset keeps each experiment's protocol."""

from __future__ import annotations

import json

import pytest
import torch

from ropekit.cli import main
from ropekit.experiments import experiment_names, load_experiment
from ropekit.report.runner import cache_key


def test_every_experiment_has_a_gpu_preset_with_the_quick_protocol():
    for name in experiment_names():
        presets = load_experiment(name).PRESETS
        assert "gpu" in presets, name
        assert set(presets["gpu"]) == set(presets["quick"]), f"{name}: the gpu preset changes the protocol's keys"


def test_models_of_the_gpu_preset_are_about_100x_larger():
    for name in experiment_names():
        presets = load_experiment(name).PRESETS
        quick, gpu = presets["quick"], presets["gpu"]
        if gpu in (quick, presets["full"]):
            continue  # no model is trained (analysis, speed): the gpu preset is another preset as it is
        width = "d_model" if "d_model" in quick else "dim"
        depth = "n_layers" if "n_layers" in quick else "depth"
        ratio = (gpu[width] / quick[width]) ** 2 * gpu[depth] / quick[depth]
        assert 50 <= ratio <= 300, (name, ratio)


def test_the_device_is_part_of_the_cache_key():
    cfg = {"a": 1}
    assert cache_key("analysis", "tiny", 0, cfg) == cache_key("analysis", "tiny", 0, cfg, device="cpu")
    assert cache_key("analysis", "tiny", 0, cfg) != cache_key("analysis", "tiny", 0, cfg, device="cuda")


def test_sections_record_their_device(tmp_path):
    out = tmp_path / "rep"
    assert main(["report", "--out", str(out), "--preset", "tiny", "--only", "analysis", "--workers", "1"]) == 0
    assert json.loads((out / "sections" / "analysis.json").read_text())["device"] == "cpu"
    assert json.loads((out / "report.json").read_text())["meta"]["device"] == "cpu"


@pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA is available here")
@pytest.mark.parametrize("command", [["report", "--only", "analysis"], ["experiment", "analysis"]])
def test_cuda_without_cuda_is_refused_before_anything_is_written(tmp_path, capsys, command):
    out = tmp_path / "rep"
    assert main([*command, "--out", str(out), "--preset", "tiny", "--device", "cuda"]) == 2
    assert "no CUDA GPU" in capsys.readouterr().err
    assert not out.exists()
