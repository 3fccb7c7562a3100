"""`--device` / `device=`: the one device rule (inputs follow the model) and the clear refusals.

No GPU here: the CUDA path is refused with a message when CUDA is absent (and runs when it is present); the rule
itself (batches and evaluation sets moved to the model's device, results back on the CPU) is checked on the CPU.
"""

from __future__ import annotations

from typing import NamedTuple

import _tiny
import pytest
import torch
from torch import nn

from ropekit.cli import main
from ropekit.train import train
from ropekit.train.device import model_device, resolve_device, to_device

NO_CUDA = not torch.cuda.is_available()


class Pair(NamedTuple):
    a: torch.Tensor
    b: int


def test_resolve_device_names():
    assert resolve_device(None) == torch.device("cpu")
    assert resolve_device("cpu") == torch.device("cpu")
    for bad in ("gpu0", "tpu", "cuda:x"):
        with pytest.raises(ValueError, match="device"):
            resolve_device(bad)


@pytest.mark.skipif(not NO_CUDA, reason="CUDA is available here")
def test_cuda_without_cuda_is_refused_with_the_fix():
    with pytest.raises(ValueError, match="no CUDA GPU; use 'cpu'"):
        resolve_device("cuda")


def test_to_device_keeps_structure_and_other_values():
    t = torch.arange(3)
    moved = to_device({"x": (t, [t, 1]), "p": Pair(t, 2), "s": "keep"}, torch.device("cpu"))
    assert moved["x"][0] is t and moved["x"][1][1] == 1 and moved["s"] == "keep"
    assert isinstance(moved["p"], Pair) and moved["p"].b == 2


def test_model_device_of_a_model_without_parameters():
    assert model_device(nn.Identity()) == torch.device("cpu")
    assert model_device(nn.Linear(2, 2)) == torch.device("cpu")


def test_train_on_the_cpu_device_equals_the_default():
    cfg = _tiny.train_cfg(steps=3, eval_every=3, ckpt_every=0)
    a = train(_tiny.model_cfg(), _tiny.lm_task(), cfg, progress=False)
    b = train(_tiny.model_cfg(), _tiny.lm_task(), cfg, progress=False, device="cpu")
    assert [h.get("loss") for h in a.history] == [h.get("loss") for h in b.history]
    assert model_device(b.model) == torch.device("cpu")


@pytest.mark.skipif(not NO_CUDA, reason="CUDA is available here")
def test_train_command_refuses_cuda_before_writing(tmp_path, capsys):
    out = tmp_path / "run"
    code = main(["train", "lm", "--out", str(out), "--steps", "1", "--device", "cuda", "--no-progress"])
    assert code == 2
    assert "no CUDA GPU" in capsys.readouterr().err
    assert not out.exists()


@pytest.mark.skipif(NO_CUDA, reason="needs a CUDA GPU")
def test_train_on_cuda_matches_the_cpu_loss_closely():
    cfg = _tiny.train_cfg(steps=3, eval_every=3, ckpt_every=0)
    a = train(_tiny.model_cfg(), _tiny.lm_task(), cfg, progress=False)
    b = train(_tiny.model_cfg(), _tiny.lm_task(), cfg, progress=False, device="cuda")
    assert model_device(b.model).type == "cuda"
    la = [h["loss"] for h in a.history if "loss" in h]
    lb = [h["loss"] for h in b.history if "loss" in h]
    assert la == pytest.approx(lb, rel=1e-3)
