"""Training loop: learning happens, resume continues exactly (also after a real SIGKILL), DDP equals one process."""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from ropekit.models import CheckpointError, load_model
from ropekit.train import TrainConfig, latest_checkpoint, lr_at, train, unigram_entropy

sys.path.insert(0, str(Path(__file__).parent))
import _tiny

PY = sys.executable
ROOT = Path(__file__).parent


def losses(history: list[dict]) -> dict[int, float]:
    return {h["step"]: h["loss"] for h in history if "loss" in h}


def test_lr_schedule_warms_up_then_decays_to_the_floor():
    cfg = TrainConfig(steps=100, warmup=10, lr=1.0, min_lr_ratio=0.1)
    lrs = [lr_at(s, cfg) for s in range(1, 101)]
    assert lrs[0] == pytest.approx(0.1) and lrs[9] == pytest.approx(1.0) and lrs[-1] == pytest.approx(0.1)
    assert all(a >= b for a, b in itertools.pairwise(lrs[9:]))


@pytest.mark.parametrize("make", [_tiny.lm_task, _tiny.classify_task, _tiny.reverse_task])
def test_each_task_trains_and_loss_falls(make):
    task = make()
    res = train(
        _tiny.model_cfg(), task, _tiny.train_cfg(steps=30, eval_every=30, ckpt_every=0, lr=1e-2), progress=False
    )
    first, last = res.history[0]["loss"], res.final_eval["loss"]
    assert last < first, (first, last)
    if task.name == "classify":
        assert res.final_eval["accuracy"] > 0.6


def test_unigram_entropy():
    assert unigram_entropy(torch.tensor([0, 1, 0, 1]), 4) == pytest.approx(float(torch.log(torch.tensor(2.0))))


def test_resume_continues_to_the_same_losses(tmp_path):
    task, mcfg = _tiny.lm_task(), _tiny.model_cfg({"kind": "rope", "random_max": 64})
    full = train(mcfg, task, _tiny.train_cfg(), out_dir=tmp_path / "a", progress=False)
    train(mcfg, task, _tiny.train_cfg(), out_dir=tmp_path / "b", progress=False, stop_after=5)
    assert json.loads((tmp_path / "b" / "latest.json").read_text())["step"] == 5
    again = train(mcfg, task, _tiny.train_cfg(), out_dir=tmp_path / "b", progress=False, resume=True)
    assert losses(again.history) == losses(full.history)
    assert again.final_eval == full.final_eval
    for a, b in zip(full.model.state_dict().values(), again.model.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    reloaded = load_model(tmp_path / "b" / latest_checkpoint(tmp_path / "b"))
    ids = torch.randint(0, _tiny.V, (1, 9))
    assert torch.equal(reloaded(ids), full.model.eval()(ids))


_KILLER = """
import os, signal, sys
sys.path.insert(0, {root!r})
import _tiny
from ropekit.train import train
task = _tiny.lm_task()
batch = task.batch
def killing_batch(step, batch_size, seed):
    if step == 7:
        os.kill(os.getpid(), signal.SIGKILL)  # a real kill, mid-run, after the step-6 checkpoint
    return batch(step, batch_size, seed)
task.batch = killing_batch
train(_tiny.model_cfg(), task, _tiny.train_cfg(steps=10, eval_every=5), out_dir={out!r}, progress=False)
"""


def test_sigkill_mid_run_then_resume_matches_uninterrupted(tmp_path):
    out = tmp_path / "killed"
    proc = subprocess.run([PY, "-c", _KILLER.format(root=str(ROOT), out=str(out))], capture_output=True, timeout=120)
    assert proc.returncode == -9, proc.stderr.decode()[-2000:]
    assert json.loads((out / "latest.json").read_text())["step"] == 6
    task, cfg = _tiny.lm_task(), _tiny.train_cfg(steps=10, eval_every=5)
    resumed = train(_tiny.model_cfg(), task, cfg, out_dir=out, resume=True, progress=False)
    full = train(_tiny.model_cfg(), task, cfg, progress=False)
    assert losses(resumed.history) == pytest.approx(losses(full.history), rel=1e-6)


def test_resume_refuses_corrupt_or_mismatched_checkpoints(tmp_path):
    task = _tiny.lm_task()
    train(_tiny.model_cfg(), task, _tiny.train_cfg(steps=4), out_dir=tmp_path / "r", progress=False)
    with pytest.raises(CheckpointError, match=r"settings differ.*kind"):
        train(
            _tiny.model_cfg("alibi"),
            task,
            _tiny.train_cfg(steps=6),
            out_dir=tmp_path / "r",
            resume=True,
            progress=False,
        )
    with pytest.raises(CheckpointError, match="nothing to resume"):
        train(_tiny.model_cfg(), task, _tiny.train_cfg(), out_dir=tmp_path / "empty", resume=True, progress=False)
    for step in sorted((tmp_path / "r" / "ckpt").iterdir()):  # every kept checkpoint damaged: nothing to resume
        weights = step / "optimizer.safetensors"
        blob = bytearray(weights.read_bytes())
        blob[-3] ^= 0xFF
        weights.write_bytes(bytes(blob))
    with pytest.raises(CheckpointError, match="no intact checkpoint"):
        train(_tiny.model_cfg(), task, _tiny.train_cfg(steps=6), out_dir=tmp_path / "r", resume=True, progress=False)
    assert not list((tmp_path / "r" / "ckpt").glob("*.tmp*"))  # atomic writes leave no temporaries


_DDP = """
import json, os, sys
sys.path.insert(0, {root!r})
import _tiny
from ropekit.train import train
res = train(_tiny.model_cfg(), _tiny.{task}(), _tiny.train_cfg(steps=4, eval_every=4, ckpt_every=0),
            out_dir={out!r}, progress=False)
if os.environ["RANK"] == "0":
    json.dump(res.history, open({out!r} + "/history.json", "w"))
"""


@pytest.mark.parametrize("task", ["lm_task", "classify_task"])
def test_ddp_two_processes_equal_one_process_with_the_same_global_batch(tmp_path, task):
    out = tmp_path / "ddp"
    script = tmp_path / "ddp.py"
    script.write_text(_DDP.format(root=str(ROOT), task=task, out=str(out)))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [PY, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", str(script)],
        capture_output=True,
        timeout=240,
        env=env,
    )
    assert proc.returncode == 0, proc.stderr.decode()[-3000:]
    ddp = json.loads((out / "history.json").read_text())
    single = train(
        _tiny.model_cfg(), getattr(_tiny, task)(), _tiny.train_cfg(steps=4, eval_every=4, ckpt_every=0), progress=False
    )
    assert losses(ddp) == pytest.approx(losses(single.history), rel=1e-5, abs=1e-6)
    evals = [h["eval"] for h in ddp if "eval" in h]
    assert evals[-1] == pytest.approx(single.final_eval, rel=1e-5)
    assert json.loads((out / "config.json").read_text())["world"] == 2
