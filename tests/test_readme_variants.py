"""The README's variant table names tests that exist: every ``tests/...py::name`` cell points at a real test."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _variant_rows() -> list[list[str]]:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text.split("## Variants", 1)[1].split("<!-- variants-end -->", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| ") and not line.startswith("| variant")]
    return [[c.strip() for c in row.strip("|").split("|")] for row in rows]


def test_every_variant_row_names_a_source_and_an_existing_test() -> None:
    rows = _variant_rows()
    assert len(rows) >= 20
    for variant, how, source, checked in rows:
        assert variant and how and source, f"incomplete row for {variant!r}"
        refs = re.findall(r"`([^`]+)`", checked)
        assert refs, f"variant {variant!r} names no test"
        current: Path | None = None
        for ref in refs:
            path, _, name = ref.partition("::")
            if path:
                current = ROOT / path
                assert current.is_file(), f"{variant}: {path} does not exist"
            assert current is not None and name, f"{variant}: cannot read test reference {ref!r}"
            source_text = current.read_text(encoding="utf-8")
            assert re.search(rf"^\s*def {re.escape(name)}\(", source_text, flags=re.M), (
                f"{variant}: {current.relative_to(ROOT)} has no test {name!r}"
            )
