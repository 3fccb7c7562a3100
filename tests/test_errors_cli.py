"""Every user error of the `ropekit` command is one line naming the argument, the value and what is expected:
exit status 2, no traceback. Cases run in this process through ``ropekit.cli.main`` (fast); a handful run the
real entry point in subprocesses, started together; ``--debug`` / ``ROPEKIT_DEBUG=1`` show the traceback."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from ropekit.cli import main
from ropekit.models import ModelConfig

HF_CONFIG = {
    "model_type": "llama",
    "hidden_size": 32,
    "num_attention_heads": 2,
    "num_key_value_heads": 1,
    "head_dim": 16,
    "rope_theta": 10000.0,
}
TRAIN = ["train", "lm", "--out", "{tmp}/run", "--steps", "2", "--context-len", "8", "--no-progress"]
CONVERT = ["convert-layout", "{tmp}/model.safetensors", "--config", "{tmp}/config.json", "--to", "half"]


def train(*flags: str) -> list[str]:
    return [*TRAIN, *flags]


def convert(*flags: str, ckpt: str = "{tmp}/model.safetensors", config: str = "{tmp}/config.json") -> list[str]:
    return ["convert-layout", ckpt, "--config", config, "--to", "half", "--from", "interleaved", *flags]


# (id, argv with {tmp} for the fixture folder, text the error line must contain: the argument and/or the value)
CASES = [
    # train: optimisation flags
    ("stop-after negative", train("--stop-after", "-1"), "--stop-after: expected an integer >= 1, got -1"),
    ("stop-after zero", train("--stop-after", "0"), "--stop-after"),
    ("steps zero", train("--steps", "0"), "--steps"),
    ("steps text", train("--steps", "abc"), "--steps: expected an integer >= 1, got 'abc'"),
    ("batch-size zero", train("--batch-size", "0"), "--batch-size"),
    ("lr zero", train("--lr", "0"), "--lr"),
    ("lr inf", train("--lr", "inf"), "--lr"),
    ("lr text", train("--lr", "fast"), "--lr"),
    ("weight-decay negative", train("--weight-decay", "-0.1"), "--weight-decay"),
    ("warmup negative", train("--warmup", "-1"), "--warmup"),
    ("warmup longer than steps", train("--warmup", "50"), "--warmup 50 is longer than --steps 2"),
    ("min-lr-ratio negative", train("--min-lr-ratio", "-3"), "--min-lr-ratio: expected a finite number in [0, 1]"),
    ("min-lr-ratio above 1", train("--min-lr-ratio", "2"), "--min-lr-ratio"),
    ("grad-clip nan", train("--grad-clip", "nan"), "--grad-clip: expected a finite number"),
    ("grad-clip negative", train("--grad-clip", "-1"), "--grad-clip"),
    ("eval-every negative", train("--eval-every", "-1"), "--eval-every"),
    ("ckpt-every negative", train("--ckpt-every", "-2"), "--ckpt-every"),
    ("seed negative", train("--seed", "-1"), "--seed"),
    ("threads zero", train("--threads", "0"), "--threads: expected an integer >= 1, got 0"),
    ("eval-windows zero", train("--eval-windows", "0"), "--eval-windows"),
    ("context-len zero", train("--context-len", "0"), "--context-len"),
    # train: model flags
    ("n-heads zero", train("--n-heads", "0"), "--n-heads: expected an integer >= 1, got 0"),
    ("n-layers negative", train("--n-layers", "-1"), "--n-layers"),
    ("d-model negative", train("--d-model", "-8"), "--d-model"),
    ("d-model float", train("--d-model", "6.5"), "--d-model: expected an integer >= 1, got '6.5'"),
    ("d-model not divisible", train("--d-model", "30"), "--d-model 30 must be divisible by --n-heads 4"),
    ("n-kv-heads zero", train("--n-kv-heads", "0"), "--n-kv-heads"),
    ("n-kv-heads not dividing", train("--n-kv-heads", "3"), "--n-kv-heads 3 must divide --n-heads 4"),
    ("d-ff zero", train("--d-ff", "0"), "--d-ff"),
    ("dropout 1", train("--dropout", "1"), "--dropout"),
    ("dropout negative", train("--dropout", "-0.1"), "--dropout"),
    ("max-len zero", train("--max-len", "0"), "--max-len"),
    # train: position encoding flags
    ("pe unknown", train("--pe", "rotary"), "unknown position encoding 'rotary'"),
    ("pe misspelt alias", train("--pe", "yarm"), "'yarm'"),
    ("rope-theta zero", train("--rope-theta", "0"), "--rope-theta"),
    ("rope-theta negative", train("--rope-theta", "-5"), "--rope-theta"),
    ("rope-factor below 1", train("--rope-factor", "0.5"), "--rope-factor"),
    ("rope-original-max zero", train("--rope-original-max", "0"), "--rope-original-max"),
    ("rope-type unknown", train("--rope-type", "yarm"), "yarm"),
    ("pe alias vs rope-type", train("--pe", "yarn", "--rope-type", "linear"), "--pe yarn means rope_type 'yarn'"),
    ("rope flags on alibi", train("--pe", "alibi", "--rope-factor", "2"), "--pe alibi"),
    ("rope-params not JSON", train("--rope-params", "{bad"), "--rope-params must be a JSON object"),
    ("rope-params a number", train("--rope-params", "3"), "--rope-params"),
    ("pe-options a list", train("--pe-options", "[1]"), "--pe-options"),
    ("pe-options unknown key", train("--pe-options", '{"nonsense": 1}'), "nonsense"),
    ("random-max text", train("--random-max", "abc"), "--random-max: expected an integer >= 1, got 'abc'"),
    ("random-max zero", train("--random-max", "0"), "--random-max"),
    ("random_max option text", train("--pe-options", '{"random_max": "abc"}'), "random_max"),
    ("interleaved option text", train("--pe-options", '{"interleaved": "no"}'), "interleaved must be True or False"),
    ("xpos scale_base 0", train("--pe", "xpos", "--pe-options", '{"scale_base": 0}'), "scale_base"),
    ("sinusoidal base 0", train("--pe", "sinusoidal", "--pe-options", '{"base": 0}'), "sinusoidal base"),
    ("prope p 0", train("--pe", "prope", "--pe-options", '{"p": 0}'), "p=0"),
    ("receptive alpha 2", train("--pe", "receptive", "--pe-options", '{"alpha": 2}'), "alpha"),
    ("yarn factor string", train("--rope-params", '{"rope_type": "linear", "factor": "2"}'), "'factor'"),
    # train: tokenizer and task flags
    ("bpe size without bpe", train("--bpe-vocab-size", "300"), "--bpe-vocab-size needs --tokenizer bpe"),
    ("bpe size too small", train("--tokenizer", "bpe", "--bpe-vocab-size", "100"), "--bpe-vocab-size"),
    ("tokenizer unknown", train("--tokenizer", "wordpiece"), "--tokenizer"),
    ("seq-len 1", ["train", "classify", "--out", "{tmp}/c", "--seq-len", "1"], "--seq-len"),
    ("eval-split bogus", ["train", "classify", "--out", "{tmp}/c", "--eval-split", "train"], "--eval-split"),
    ("max-span 4", ["train", "seq2seq", "--out", "{tmp}/s", "--max-span", "4"], "--max-span"),
    ("task unknown", ["train", "mlm", "--out", "{tmp}/m"], "mlm"),
    ("out missing", ["train", "lm"], "--out"),
    # train: the output folder
    ("out is a file", [*train(), "--out", "{tmp}/a_file"], "--out {tmp}/a_file is a file, not a folder"),
    ("out holds user files", [*train(), "--out", "{tmp}/user"], "--out {tmp}/user is not empty"),
    ("out user files overwrite", [*train("--overwrite"), "--out", "{tmp}/user"], "only replaces ropekit's own"),
    ("out of another command", [*train(), "--out", "{tmp}/report"], "holds the output of `ropekit report`"),
    ("out under a file", [*train(), "--out", "{tmp}/a_file/run"], "--out {tmp}/a_file/run cannot be created"),
    ("resume nothing", train("--resume"), "nothing to resume: --out {tmp}/run does not exist"),
    ("resume user folder", [*train("--resume"), "--out", "{tmp}/user"], "--out {tmp}/user is not empty"),
    # eval / generate
    ("eval missing run", ["eval", "{tmp}/missing"], "{tmp}/missing is not a folder (it does not exist)"),
    ("eval a file", ["eval", "{tmp}/a_file"], "{tmp}/a_file is not a folder"),
    ("eval user config", ["eval", "{tmp}/user"], "invalid model config"),
    ("eval pickle weights", ["eval", "{tmp}/badweights"], "corrupt or not a safetensors file"),
    ("eval threads 0", ["eval", "{tmp}/user", "--threads", "0"], "--threads"),
    ("eval context-len 0", ["eval", "{tmp}/user", "--context-len", "0"], "--context-len"),
    ("eval eval-windows 0", ["eval", "{tmp}/user", "--eval-windows", "0"], "--eval-windows"),
    ("eval split train", ["eval", "{tmp}/user", "--split", "train"], "--split"),
    ("eval rope-factor", ["eval", "{tmp}/user", "--rope-factor", "0"], "--rope-factor"),
    ("generate missing run", ["generate", "{tmp}/missing"], "does not exist"),
    ("generate a file", ["generate", "{tmp}/a_file"], "is not a folder"),
    ("eval broken latest", ["eval", "{tmp}/broken"], "no intact checkpoint"),
    ("generate max-new-tokens", ["generate", "{tmp}/user", "--max-new-tokens", "-1"], "--max-new-tokens"),
    ("generate temperature", ["generate", "{tmp}/user", "--temperature", "-1"], "--temperature"),
    ("generate top-k", ["generate", "{tmp}/user", "--top-k", "0"], "--top-k"),
    ("generate seed", ["generate", "{tmp}/user", "--seed", "x"], "--seed"),
    # convert-layout
    ("convert to bogus", [*CONVERT[:-1], "sideways"], "--to"),
    ("convert from bogus", [*CONVERT, "--from", "sideways"], "--from"),
    ("convert no from", CONVERT, "does not record its q/k layout; say which it is in with --from"),
    ("convert from equals to", [*CONVERT, "--from", "half"], "already in the half layout"),
    ("convert missing file", convert(ckpt="{tmp}/none.safetensors"), "does not exist"),
    ("convert a folder", convert(ckpt="{tmp}/dir.safetensors"), "is a folder"),
    ("convert a pickle", convert(ckpt="{tmp}/model.bin"), "never a pickle"),
    ("convert header too large", convert(ckpt="{tmp}/pickle.safetensors"), "not a readable safetensors file"),
    ("convert truncated", convert(ckpt="{tmp}/cut.safetensors"), "not a readable safetensors file"),
    ("convert config missing", convert(config="{tmp}/none.json"), "--config file '{tmp}/none.json' does not exist"),
    ("convert config folder", convert(config="{tmp}"), "--config '{tmp}' is a folder"),
    ("convert config not JSON", convert(config="{tmp}/a_file"), "--config file '{tmp}/a_file' is not valid JSON"),
    ("convert config a list", convert(config="{tmp}/list.json"), "must hold a JSON object"),
    ("convert output folder", convert("-o", "{tmp}"), "-o/--output '{tmp}' is a folder"),
    ("convert output no folder", convert("-o", "{tmp}/no/x.safetensors"), "-o/--output"),
    ("convert fused qkv size", convert(ckpt="{tmp}/fused.safetensors"), "qkv_proj.weight"),
    ("convert heads 0", convert(config="{tmp}/heads0.json"), "num_attention_heads"),
    ("convert kv heads", convert(config="{tmp}/kv3.json"), "num_key_value_heads"),
    ("convert string bool", convert(config="{tmp}/strbool.json"), "rope_interleave"),
    ("convert head_dim float", convert(config="{tmp}/hd.json"), "head_dim"),
    ("convert no q/k", convert(ckpt="{tmp}/noqk.safetensors"), "no q/k projection"),
    ("convert checkpoint missing", ["convert-layout", "--config", "x", "--to", "half"], "checkpoint"),
    # report / experiment
    ("report workers 0", ["report", "--out", "{tmp}/r", "--workers", "0"], "--workers must be >= 1, got 0"),
    ("report out a file", ["report", "--out", "{tmp}/a_file"], "--out {tmp}/a_file is a file"),
    ("report out user files", ["report", "--out", "{tmp}/site"], "--out {tmp}/site is not empty"),
    ("report out a train run", ["report", "--out", "{tmp}/trainrun"], "holds the output of `ropekit train`"),
    ("report out under a file", ["report", "--out", "{tmp}/a_file/r"], "--out {tmp}/a_file/r cannot be created"),
    ("report preset", ["report", "--preset", "huge"], "--preset"),
    ("report only unknown", ["report", "--out", "{tmp}/r2", "--only", "nonsense"], "nonsense"),
    ("report seed", ["report", "--seed", "x"], "--seed"),
    ("experiment unknown", ["experiment", "nonsense"], "nonsense"),
    ("experiment out a file", ["experiment", "analysis", "--out", "{tmp}/a_file"], "is a file"),
    ("experiment out user files", ["experiment", "analysis", "--out", "{tmp}/site"], "is not empty"),
    # the command itself
    ("no command", [], "COMMAND"),
    ("unknown command", ["trian"], "trian"),
]


@pytest.fixture(scope="module")
def area(tmp_path_factory) -> Path:
    """Files of every wrong kind, made once for all cases."""
    tmp = tmp_path_factory.mktemp("cli_errors")
    (tmp / "a_file").write_text("not a folder, not JSON")
    user = tmp / "user"
    user.mkdir()
    (user / "config.json").write_text(json.dumps(HF_CONFIG))  # the user's own config.json
    site = tmp / "site"
    site.mkdir()
    (site / "index.html").write_text("the user's page")
    (tmp / "report").mkdir()
    (tmp / "report" / ".ropekit-output.json").write_text('{"command": "report", "run_id": "r", "entries": []}')
    (tmp / "trainrun").mkdir()
    (tmp / "trainrun" / ".ropekit-output.json").write_text('{"command": "train", "run_id": "t", "entries": []}')
    bad = tmp / "badweights"
    bad.mkdir()
    (bad / "config.json").write_text(json.dumps(ModelConfig(d_model=16, n_heads=2, n_layers=1).to_dict()))
    (bad / "model.safetensors").write_bytes(b"\x80\x04\x95" + b"\x00" * 64)
    broken = tmp / "broken"
    (broken / "ckpt" / "step-000002").mkdir(parents=True)
    (broken / "latest.json").write_text('{"step": 2}')  # no path: a damaged pointer, and no intact checkpoint
    g = torch.Generator().manual_seed(0)
    qk = {
        "model.layers.0.self_attn.q_proj.weight": torch.randn(32, 32, generator=g),
        "model.layers.0.self_attn.k_proj.weight": torch.randn(16, 32, generator=g),
    }
    save_file(qk, str(tmp / "model.safetensors"))
    save_file({"model.layers.0.self_attn.qkv_proj.weight": torch.zeros(40, 32)}, str(tmp / "fused.safetensors"))
    save_file({"embed.weight": torch.zeros(2, 2)}, str(tmp / "noqk.safetensors"))
    (tmp / "cut.safetensors").write_bytes((tmp / "model.safetensors").read_bytes()[:40])
    (tmp / "pickle.safetensors").write_bytes(b"\x80\x04\x95" + b"\x00" * 64)
    (tmp / "model.bin").write_bytes(b"\x80\x04")
    (tmp / "dir.safetensors").mkdir()
    (tmp / "config.json").write_text(json.dumps(HF_CONFIG))
    (tmp / "list.json").write_text("[1, 2]")
    for name, change in (
        ("heads0", {"num_attention_heads": 0, "head_dim": 16}),
        ("kv3", {"num_key_value_heads": 3}),
        ("strbool", {"rope_interleave": "false"}),
        ("hd", {"head_dim": 16.5}),
    ):
        (tmp / f"{name}.json").write_text(json.dumps({**HF_CONFIG, **change}))
    return tmp


def run_main(argv: list[str]) -> int:
    try:
        return main(argv)
    except SystemExit as e:  # argparse's own errors (a type or a choice refused)
        return int(e.code or 0)


@pytest.mark.parametrize("argv, expected", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_cli_user_error_is_one_clear_line(area, capsys, monkeypatch, argv, expected):
    monkeypatch.setenv("ROPEKIT_BACKEND", "eager")
    monkeypatch.delenv("ROPEKIT_DEBUG", raising=False)
    before = sorted(str(p) for p in area.rglob("*"))
    code = run_main([a.replace("{tmp}", str(area)) for a in argv])
    err = capsys.readouterr().err
    assert code == 2, err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert expected.replace("{tmp}", str(area)) in err, err
    assert sorted(str(p) for p in area.rglob("*")) == before  # a refused command writes nothing


def test_case_count():
    assert len(CASES) >= 110


SUBPROCESS_CASES = [
    (train("--stop-after", "-1"), "--stop-after"),
    (convert(ckpt="{tmp}/pickle.safetensors"), "not a readable safetensors file"),
    ([*train(), "--out", "{tmp}/user"], "is not empty"),
    (["eval", "{tmp}/missing"], "does not exist"),
]


def test_real_entry_point_prints_one_line_without_traceback(area):
    env = {**os.environ, "ROPEKIT_BACKEND": "eager"}
    env.pop("ROPEKIT_DEBUG", None)
    procs = [
        (
            subprocess.Popen(
                [sys.executable, "-m", "ropekit.cli", *(a.replace("{tmp}", str(area)) for a in argv)],
                stderr=subprocess.PIPE,
                text=True,
                env=env,
            ),
            expected,
        )
        for argv, expected in SUBPROCESS_CASES
    ]  # started together: the interpreter start-ups overlap
    for proc, expected in procs:
        err = proc.communicate(timeout=120)[1]
        assert proc.returncode == 2 and "Traceback" not in err and expected in err, err
        assert len(err.strip().splitlines()) == 1  # one line, argparse's errors included


def test_debug_flag_and_environment_raise_the_error_itself(area, monkeypatch):
    from ropekit.models import CheckpointError

    missing = str(area / "missing")
    monkeypatch.delenv("ROPEKIT_DEBUG", raising=False)
    with pytest.raises(CheckpointError, match="does not exist"):
        main(["--debug", "eval", missing])
    with pytest.raises(CheckpointError, match="does not exist"):
        main(["eval", missing, "--debug"])  # also after the subcommand
    monkeypatch.setenv("ROPEKIT_DEBUG", "1")
    with pytest.raises(CheckpointError, match="does not exist"):
        main(["eval", missing])
