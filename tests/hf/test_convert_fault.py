"""`ropekit convert-layout` never permutes rows twice and never changes a file's mode (no transformers needed)."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from ropekit.cli import main
from ropekit.hf.convert import LAYOUT_KEY

CONFIG = {
    "model_type": "llama",
    "hidden_size": 32,
    "num_attention_heads": 2,
    "num_key_value_heads": 1,
    "head_dim": 16,
    "rope_theta": 10000.0,
}


def _files(tmp_path):
    g = torch.Generator().manual_seed(0)
    sd = {
        "model.layers.0.self_attn.q_proj.weight": torch.randn(32, 32, generator=g),
        "model.layers.0.self_attn.k_proj.weight": torch.randn(16, 32, generator=g),
        "model.layers.0.self_attn.v_proj.weight": torch.randn(16, 32, generator=g),
    }
    ckpt, cfg = tmp_path / "model.safetensors", tmp_path / "config.json"
    save_file(sd, str(ckpt), metadata={"format": "pt"})
    os.chmod(ckpt, 0o644)
    cfg.write_text(json.dumps(CONFIG))
    return sd, str(ckpt), str(cfg)


def convert(ckpt, cfg, *flags):
    return main(["convert-layout", ckpt, "--config", cfg, *flags])


def test_second_conversion_is_refused_and_the_mode_is_kept(tmp_path, capsys):
    sd, ckpt, cfg = _files(tmp_path)
    original = Path(ckpt).read_bytes()
    assert convert(ckpt, cfg, "--to", "half") == 2  # a file written by others: its layout must be stated
    assert "does not record its q/k layout" in capsys.readouterr().err
    assert convert(ckpt, cfg, "--to", "half", "--from", "half") == 2
    assert "already in the half layout" in capsys.readouterr().err
    assert Path(ckpt).read_bytes() == original
    assert convert(ckpt, cfg, "--to", "interleaved", "--from", "half") == 0  # in place
    assert stat.S_IMODE(os.stat(ckpt).st_mode) == 0o644  # not mkstemp's 0600
    with safe_open(ckpt, framework="pt") as f:
        assert f.metadata()[LAYOUT_KEY] == "interleaved" and f.metadata()["format"] == "pt"
    converted = Path(ckpt).read_bytes()
    capsys.readouterr()
    assert convert(ckpt, cfg, "--to", "interleaved") == 2  # the hostile second conversion
    err = capsys.readouterr().err
    assert "already in the interleaved layout" in err and "Traceback" not in err
    assert convert(ckpt, cfg, "--to", "half", "--from", "half") == 2
    assert "contradicts" in capsys.readouterr().err
    assert Path(ckpt).read_bytes() == converted  # refusals leave the file as it was
    assert convert(ckpt, cfg, "--to", "half") == 0  # the recorded layout is enough to go back
    back = load_file(ckpt)
    assert all(torch.equal(back[k], v) for k, v in sd.items())


def test_unreadable_inputs_are_one_line_errors(tmp_path, capsys):
    _, ckpt, cfg = _files(tmp_path)
    fake = tmp_path / "pickle.safetensors"
    fake.write_bytes(b"\x80\x04\x95" + b"\x00" * 64)  # a pickle renamed: safetensors says "header too large"
    truncated = tmp_path / "cut.safetensors"
    truncated.write_bytes(Path(ckpt).read_bytes()[:50])
    for path in (fake, truncated):
        assert convert(str(path), cfg, "--to", "half", "--from", "interleaved") == 2
        err = capsys.readouterr().err
        assert "not a readable safetensors file" in err and "Traceback" not in err
    assert convert(ckpt, cfg, "--to", "half", "--from", "interleaved", "-o", str(tmp_path)) == 2
    assert "-o/--output" in capsys.readouterr().err
    assert convert(ckpt, str(tmp_path), "--to", "half", "--from", "interleaved") == 2
    assert "--config" in capsys.readouterr().err
    fused = tmp_path / "fused.safetensors"
    save_file({"model.layers.0.self_attn.qkv_proj.weight": torch.zeros(40, 32)}, str(fused))
    assert convert(str(fused), cfg, "--to", "half", "--from", "interleaved") == 2
    err = capsys.readouterr().err
    assert "qkv_proj.weight" in err and "needs 64 rows" in err
