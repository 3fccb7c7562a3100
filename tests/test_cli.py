"""The `ropekit` command: verify passes on this installation, freqs reads any HF config file."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from ropekit.cli import main
from ropekit.commands.verify import run_checks

EXAMPLES = Path(__file__).resolve().parents[1] / "src" / "ropekit" / "examples"


def test_verify_all_checks_pass(capsys):
    assert main(["verify"]) == 0
    out = capsys.readouterr().out
    assert "0 failed" in out and "FAIL" not in out
    names = [r.name for r in run_checks()]
    assert len(names) >= 6 and any("transformers" in n for n in names)


@pytest.mark.parametrize("config", sorted(p.name for p in EXAMPLES.glob("*.json")))
def test_freqs_on_bundled_configs(config, capsys):
    assert main(["freqs", "--config", str(EXAMPLES / config)]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    data = json.loads((EXAMPLES / config).read_text())
    head_dim = data.get("head_dim") or data["hidden_size"] // data["num_attention_heads"]
    assert len(lines) == 2 + head_dim // 2  # summary + header + one row per pair
    assert "eff_context" in lines[1]


def test_freqs_llama3_effective_context():
    from ropekit.commands.freqs import frequency_table

    rows, summary = frequency_table(json.loads((EXAMPLES / "llama3_8b_128k.json").read_text()))
    assert summary["rope_type"] == "llama3" and summary["original_context"] == 8192
    assert rows[0]["effective_context"] == pytest.approx(8192)  # high frequencies untouched
    assert rows[-1]["effective_context"] == pytest.approx(8 * 8192)  # low frequencies interpolated 8x


def test_bad_config_is_one_clear_line(tmp_path, capsys):
    bad = tmp_path / "config.json"
    bad.write_text(json.dumps({"head_dim": 64, "rope_scaling": {"rope_type": "yarn", "factr": 4}}))
    assert main(["freqs", "--config", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "did you mean 'factor'" in err and "Traceback" not in err


def test_console_script_entry_point():
    out = subprocess.run([sys.executable, "-m", "ropekit.cli", "--help"], capture_output=True, text=True, check=True)
    assert "verify" in out.stdout and "freqs" in out.stdout


def test_python_dash_m_ropekit_runs_the_cli() -> None:
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-m", "ropekit", "--help"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "usage: ropekit" in done.stdout
