"""The bundled files match MANIFEST.json, and damaged files fail loudly with a helpful DataError."""

from __future__ import annotations

import hashlib
import json
import lzma
from collections.abc import Callable
from pathlib import Path

import pytest

import ropekit.data as rd
from ropekit.data import DataError, manifest

FILES = ("sotu.jsonl.xz", "spam_assassin.jsonl.xz", "mnist_5k.csv.gz")
LOADERS: dict[str, Callable[[Path], object]] = {
    "sotu.jsonl.xz": lambda root: rd.load_sotu(root=root),
    "spam_assassin.jsonl.xz": lambda root: rd.load_spam("all", root=root),
    "mnist_5k.csv.gz": lambda root: rd.load_mnist_5k(root=root),
}


def test_manifest_describes_every_file() -> None:
    files = rd.load_manifest()["files"]
    assert set(files) == set(FILES)
    for name, entry in files.items():
        for key in ("sha256", "size", "records", "source", "source_sha256", "license", "content_sha256"):
            assert entry.get(key), f"{name} lacks {key}"
        assert entry["source"].count("@") >= 1
    assert (rd.DATA_DIR / "LICENSES.md").is_file()


@pytest.mark.parametrize("name", FILES)
def test_bundled_file_checksum_and_size(name: str) -> None:
    entry = rd.load_manifest()["files"][name]
    path = rd.verified_path(name)
    data = path.read_bytes()
    assert len(data) == entry["size"]
    assert hashlib.sha256(data).hexdigest() == entry["sha256"]


def test_total_size_is_small() -> None:
    total = sum(p.stat().st_size for p in rd.DATA_DIR.iterdir())
    assert total < 12 * 1024 * 1024


@pytest.mark.parametrize("name", FILES)
def test_missing_file(name: str, tmp_path: Path) -> None:
    with pytest.raises(DataError, match="missing") as err:
        LOADERS[name](tmp_path)
    assert name in str(err.value) and "build_datasets.py" in str(err.value)


@pytest.mark.parametrize("name", FILES)
def test_truncated_file(name: str, copy_data_file) -> None:
    path = copy_data_file(name)
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(DataError, match="truncated") as err:
        LOADERS[name](path.parent)
    msg = str(err.value)
    assert name in msg and str(rd.load_manifest()["files"][name]["size"]) in msg
    assert "git checkout" in msg


@pytest.mark.parametrize("name", FILES)
def test_flipped_byte_is_corrupt(name: str, copy_data_file) -> None:
    path = copy_data_file(name)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))
    with pytest.raises(DataError, match="corrupt: sha256") as err:
        LOADERS[name](path.parent)
    assert rd.load_manifest()["files"][name]["sha256"] in str(err.value)


def test_extended_file(copy_data_file) -> None:
    path = copy_data_file("sotu.jsonl.xz")
    path.write_bytes(path.read_bytes() + b"\0")
    with pytest.raises(DataError, match="larger than expected"):
        rd.load_sotu(root=path.parent)


def _trust(monkeypatch: pytest.MonkeyPatch, path: Path, records: int | None = None) -> None:
    """Make the manifest vouch for ``path`` so that parsing (not the checksum) is what fails."""
    real = manifest.load_manifest()
    data = path.read_bytes()
    patched = json.loads(json.dumps(real))
    entry = patched["files"][path.name]
    entry.update(sha256=hashlib.sha256(data).hexdigest(), size=len(data))
    if records is not None:
        entry["records"] = records
    monkeypatch.setattr(manifest, "load_manifest", lambda: patched)


def _write_jsonl_xz(path: Path, rows: list[object]) -> None:
    path.write_bytes(lzma.compress("".join(json.dumps(r) + "\n" for r in rows).encode()))


def test_malformed_sotu_record(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "sotu.jsonl.xz"
    _write_jsonl_xz(path, [{"id": "x", "year": "1790", "president": "A", "party": None, "text": "t"}])
    _trust(monkeypatch, path, records=1)
    with pytest.raises(DataError, match=r"line 1: malformed record .*'year'"):
        rd.load_sotu(root=tmp_path)


def test_malformed_spam_label(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "spam_assassin.jsonl.xz"
    row = {"id": "spam-1/1", "group": "spam-1", "label": "ham", "split": "train", "source": "raw",
           "text": ""}
    _write_jsonl_xz(path, [row])
    _trust(monkeypatch, path, records=1)
    with pytest.raises(DataError, match="does not match group"):
        rd.load_spam(root=tmp_path)


def test_not_xz(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "sotu.jsonl.xz"
    path.write_bytes(b'{"id": "plain json, not xz"}\n')
    _trust(monkeypatch, path)
    with pytest.raises(DataError, match="cannot decompress"):
        rd.load_sotu(root=tmp_path)


def test_record_count_mismatch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "sotu.jsonl.xz"
    _write_jsonl_xz(path, [{"id": "x", "year": 1790, "president": "A", "party": None, "text": "t"}])
    _trust(monkeypatch, path)
    with pytest.raises(DataError, match="1 records, expected 233"):
        rd.load_sotu(root=tmp_path)


def test_mnist_wrong_shape(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import gzip

    path = tmp_path / "mnist_5k.csv.gz"
    path.write_bytes(gzip.compress(b"0,1,2\n3,4,5\n"))
    _trust(monkeypatch, path)
    with pytest.raises(DataError, match=r"shape \(2, 3\), expected \(5000, 785\)"):
        rd.load_mnist_5k(root=tmp_path)


def test_missing_manifest(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(manifest, "DATA_DIR", tmp_path)
    manifest.load_manifest.cache_clear()
    try:
        with pytest.raises(DataError, match="manifest not found"):
            manifest.load_manifest()
    finally:
        monkeypatch.undo()
        manifest.load_manifest.cache_clear()
    assert manifest.load_manifest()["files"]
