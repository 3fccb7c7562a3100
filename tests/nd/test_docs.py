"""The Python snippets of docs/nd.md run as written (in order, in one namespace)."""

from __future__ import annotations

import re
from pathlib import Path

DOC = Path(__file__).resolve().parents[2] / "docs" / "nd.md"


def test_nd_doc_snippets_run() -> None:
    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text(), flags=re.S)
    assert len(blocks) >= 2
    namespace: dict = {}
    for block in blocks:
        exec(compile(block, str(DOC), "exec"), namespace)
    assert tuple(namespace["q3"].shape) == (2, 4, 49, 16)
    assert namespace["delta"] == -182 and tuple(namespace["q"].shape) == (1, 2, 204, 128)
