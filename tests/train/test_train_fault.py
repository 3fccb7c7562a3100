"""Nothing lost: each data-loss case of `ropekit train` / `eval`, run, then the hostile step, then the check that
nothing of the user's (or of the run) was lost. Tiny models, two to six steps."""

from __future__ import annotations

import hashlib
import json
import shutil

import pytest
from safetensors.torch import load_file, save_file

from ropekit.cli import main
from ropekit.fileio import MARKER, read_marker

TINY = ["--d-model", "16", "--n-heads", "2", "--n-layers", "1", "--batch-size", "2", "--no-progress"]
LM = ["--context-len", "8", "--eval-windows", "2", "--eval-every", "0", "--ckpt-every", "2", *TINY]


def train(out, *extra: str) -> int:
    return main(["train", "lm", "--out", str(out), *LM, *extra])


def steps(out) -> list[str]:
    return sorted(p.name for p in (out / "ckpt").iterdir())


def test_out_holding_the_users_files_is_refused_and_left_alone(tmp_path, capsys):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "config.json").write_text('{"my": "own config"}')
    (mine / "notes.txt").write_text("keep me")
    for extra in ([], ["--overwrite"], ["--resume"]):
        assert train(mine, "--steps", "1", *extra) == 2
        err = capsys.readouterr().err
        assert "not written by `ropekit train`" in err and "Traceback" not in err
    assert sorted(p.name for p in mine.iterdir()) == ["config.json", "notes.txt"]
    assert (mine / "config.json").read_text() == '{"my": "own config"}'
    a_file = tmp_path / "file"
    a_file.write_text("x")
    assert train(a_file, "--steps", "1") == 2
    assert "is a file, not a folder" in capsys.readouterr().err and a_file.read_text() == "x"


def test_overwrite_with_stop_after_starts_an_empty_run(tmp_path, capsys):
    out = tmp_path / "run"
    assert train(out, "--steps", "6") == 0  # the longer run: step-4, step-6, model.safetensors
    (out / "notes.txt").write_text("the user's")  # a file of the user's inside the run folder
    old_id = read_marker(out)["run_id"]
    assert train(out, "--steps", "6", "--stop-after", "2", "--overwrite") == 0
    assert steps(out) == ["step-000002"]  # the old step-4/6 do not outlive (and prune) the new run's checkpoint
    assert not (out / "model.safetensors").exists() and not (out / "metrics.json").exists()
    assert (out / "notes.txt").read_text() == "the user's"
    assert read_marker(out)["run_id"] != old_id
    capsys.readouterr()
    assert main(["eval", str(out), "--eval-windows", "2"]) == 0  # the new run's checkpoint, not the old weights
    assert train(out, "--steps", "6", "--resume") == 0
    assert steps(out) == ["step-000004", "step-000006"]


def test_a_file_left_from_another_run_is_an_error(tmp_path, capsys):
    a, b = tmp_path / "a", tmp_path / "b"
    assert train(a, "--steps", "2") == 0
    assert train(b, "--steps", "2") == 0
    shutil.copy(a / "model.safetensors", b / "model.safetensors")  # same shapes, another run's weights
    capsys.readouterr()
    assert main(["eval", str(b), "--eval-windows", "2"]) == 2
    err = capsys.readouterr().err
    assert "does not belong to the run" in err and "Traceback" not in err
    shutil.rmtree(b / "ckpt" / "step-000002")
    shutil.copytree(a / "ckpt" / "step-000002", b / "ckpt" / "step-000002")
    assert train(b, "--steps", "4", "--resume") == 2
    assert "belongs to run" in capsys.readouterr().err


def test_damaged_latest_checkpoint_resumes_from_the_newest_intact_one(tmp_path, capsys):
    out = tmp_path / "run"
    assert train(out, "--steps", "6", "--stop-after", "4") == 0
    weights = out / "ckpt" / "step-000004" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])  # a power cut: the newest checkpoint is truncated
    (out / "ckpt" / "step-000006.tmp999999").mkdir()  # and a killed writer's leftover
    capsys.readouterr()
    assert train(out, "--steps", "6", "--resume") == 0
    err = capsys.readouterr().err
    assert "latest checkpoint is damaged" in err and "step-000002" in err
    assert steps(out) == ["step-000004", "step-000006"]  # the damaged step-4 rewritten, the leftover removed
    (out / "latest.json").write_text("{garbage")
    assert main(["eval", str(out / "ckpt" / "step-000006"), "--eval-windows", "2"]) == 0


def test_resume_may_grow_the_step_count_with_the_default_warmup(tmp_path, capsys):
    out = tmp_path / "run"
    assert train(out, "--steps", "4") == 0  # default warm-up 30, clamped to 4 steps
    assert train(out, "--steps", "8", "--resume") == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["step"] == 8
    assert train(out, "--steps", "10", "--resume", "--warmup", "3") == 2  # a real change is still refused
    assert "train.warmup" in capsys.readouterr().err


def test_marker_records_what_the_run_writes(tmp_path):
    out = tmp_path / "run"
    assert train(out, "--steps", "2") == 0
    marker = json.loads((out / MARKER).read_text())
    assert marker["command"] == "train" and "ckpt" in marker["entries"] and "notes.txt" not in marker["entries"]


@pytest.mark.parametrize("flags", [["--resume", "--overwrite"]])
def test_contradicting_flags(tmp_path, capsys, flags):
    assert train(tmp_path / "r", "--steps", "1") == 0
    assert train(tmp_path / "r", "--steps", "1", *flags) == 2
    assert "contradict" in capsys.readouterr().err


def test_a_run_written_before_markers_is_adopted_and_resumes(tmp_path, capsys):
    out = tmp_path / "old"
    assert train(out, "--steps", "4", "--stop-after", "2") == 0
    (out / MARKER).unlink()  # as written by an earlier ropekit: no marker, no run ids
    for state_file in (out / "ckpt").glob("*/state.json"):
        state = {k: v for k, v in json.loads(state_file.read_text()).items() if k != "run_id"}
        for name in state["sha256"]:
            path = state_file.parent / name
            save_file(load_file(str(path)), str(path))  # no ropekit_run_id in the metadata
            state["sha256"][name] = hashlib.sha256(path.read_bytes()).hexdigest()
        state_file.write_text(json.dumps(state))
    (out / ".config.json.abc123.tmp").write_text("a killed writer's temporary")
    assert train(out, "--steps", "4", "--resume") == 0
    assert read_marker(out)["adopted"] is True and steps(out) == ["step-000002", "step-000004"]
    assert not (out / ".config.json.abc123.tmp").exists()
    capsys.readouterr()
    assert main(["eval", str(out), "--eval-windows", "2"]) == 0


def test_python_api_claims_its_folder_like_the_command(tmp_path):
    """`ropekit.train.train(out_dir=...)` follows the same folder rule as `ropekit train --out`."""
    from _tiny import lm_task

    from ropekit.fileio import OutputFolderError
    from ropekit.models import CheckpointError, ModelConfig
    from ropekit.train import TrainConfig
    from ropekit.train import train as train_api

    model = ModelConfig(d_model=16, n_heads=2, n_layers=1, pe="rope")
    cfg = TrainConfig(steps=2, batch_size=2, warmup=0, eval_every=0)
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep me")
    for kwargs in ({}, {"overwrite": True}):
        with pytest.raises(OutputFolderError, match="not written by `ropekit train`"):
            train_api(model, lm_task(8), cfg, out_dir=mine, progress=False, **kwargs)
    assert sorted(p.name for p in mine.iterdir()) == ["notes.txt"]
    with pytest.raises(CheckpointError, match="nothing to resume"):
        train_api(model, lm_task(8), cfg, out_dir=tmp_path / "absent", resume=True, progress=False)
    assert not (tmp_path / "absent").exists()
    run = tmp_path / "run"
    train_api(model, lm_task(8), cfg, out_dir=run, progress=False)
    assert read_marker(run)["command"] == "train" and (run / "model.safetensors").is_file()
    (run / "mine.txt").write_text("a file of the user's, inside the run folder")
    train_api(model, lm_task(8), cfg, out_dir=run, progress=False, overwrite=True)
    assert (run / "mine.txt").read_text().startswith("a file of the user's")


@pytest.mark.parametrize(
    ("field", "value"),
    [("steps", 0), ("batch_size", 1.5), ("threads", 0), ("eval_every", -1), ("seed", True), ("lr", 0.0),
     ("lr", float("nan")), ("weight_decay", -0.1), ("min_lr_ratio", 1.5), ("grad_clip", -1.0), ("warmup", 400)],
)  # fmt: skip
def test_train_config_refuses_bad_values(field, value):
    from ropekit.train import TrainConfig

    with pytest.raises(ValueError, match=f"TrainConfig.{field}|warmup="):
        TrainConfig(**{field: value})
