"""The train / eval / generate commands on the bundled data, with tiny models and a few steps."""

from __future__ import annotations

import json

import pytest

from ropekit.cli import main

TINY = ["--d-model", "32", "--n-layers", "1", "--batch-size", "4", "--warmup", "1", "--no-progress"]


def last_json(capsys: pytest.CaptureFixture[str]) -> dict:
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])


def test_train_eval_generate_lm_with_resume_and_rope_override(tmp_path, capsys):
    out = str(tmp_path / "lm")
    args = ["train", "lm", "--out", out, "--context-len", "16", "--eval-windows", "4", "--eval-every", "2", *TINY]
    assert main([*args, "--steps", "4", "--stop-after", "2"]) == 0
    assert last_json(capsys)["step"] == 2
    assert main([*args, "--steps", "4", "--resume"]) == 0
    assert last_json(capsys)["step"] == 4
    assert main(["eval", out, "--split", "test", "--context-len", "32", "--eval-windows", "2"]) == 0
    plain = last_json(capsys)
    assert plain["context_len"] == 32 and plain["loss"] > 0 and plain["unigram_entropy_baseline"] > 0
    assert (
        main(
            [
                "eval",
                out,
                "--context-len",
                "32",
                "--eval-windows",
                "2",
                "--pe",
                "yarn",
                "--rope-factor",
                "2",
                "--rope-original-max",
                "16",
            ]
        )
        == 0
    )
    scaled = last_json(capsys)
    assert scaled["pe"]["rope_parameters"]["rope_type"] == "yarn" and scaled["loss"] != plain["loss"]
    assert main(["generate", out, "--prompt", "The Union", "--max-new-tokens", "5", "--seed", "1"]) == 0
    assert capsys.readouterr().out.startswith("The Union")


def test_train_classify_and_seq2seq(tmp_path, capsys):
    cls = str(tmp_path / "cls")
    assert (
        main(
            [
                "train",
                "classify",
                "--out",
                cls,
                "--pe",
                "alibi",
                "--seq-len",
                "24",
                "--steps",
                "2",
                "--eval-every",
                "0",
                *TINY,
            ]
        )
        == 0
    )
    capsys.readouterr()
    assert main(["eval", cls, "--split", "test"]) == 0
    assert 0.0 <= last_json(capsys)["accuracy"] <= 1.0
    s2s = str(tmp_path / "s2s")
    assert (
        main(
            [
                "train",
                "seq2seq",
                "--out",
                s2s,
                "--pe",
                "prope",
                "--pe-options",
                '{"p": 0.5}',
                "--max-span",
                "10",
                "--steps",
                "2",
                "--eval-every",
                "2",
                *TINY,
            ]
        )
        == 0
    )
    assert "exact_match" in last_json(capsys)["final_eval"]
    assert main(["generate", s2s, "--prompt", "abc", "--max-new-tokens", "4"]) == 0


def test_bad_inputs_exit_2_with_a_clear_message(tmp_path, capsys):
    base = ["train", "lm", "--out", str(tmp_path / "x"), "--context-len", "8", "--steps", "1", *TINY]
    assert main([*base, "--pe", "rotary"]) == 2
    assert "unknown position encoding 'rotary'" in capsys.readouterr().err
    assert main([*base, "--pe-options", "[1]"]) == 2
    assert "JSON object" in capsys.readouterr().err
    assert main([*base, "--resume"]) == 2
    assert "nothing to resume" in capsys.readouterr().err
    assert main([*base]) == 0
    capsys.readouterr()
    assert main([*base, "--pe", "alibi", "--resume"]) == 2
    assert "settings differ" in capsys.readouterr().err
    assert main([*base]) == 2
    assert "already holds a training run" in capsys.readouterr().err
    assert main([*base, "--overwrite"]) == 0
    assert main(["eval", str(tmp_path / "missing")]) == 2
