"""The README's Python snippets run as written (in order, in one namespace)."""

import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_python_blocks_run(capsys):
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    assert len(blocks) >= 4
    namespace: dict = {}
    for block in blocks:
        exec(compile(block, str(README), "exec"), namespace)
    out = capsys.readouterr().out
    assert "torch.Size([64]) 1.1386" in out  # the printed value quoted in the README
    assert "did you mean 'attention_factor'" in out
    assert "torch.Size([1, 4, 64, 64]) True" in out  # evicted keys equal keys rotated from scratch
    assert "['model.rotary_emb']" in out and out.count("True") >= 2
