"""ByteTokenizer round trips; BPE training behind the same protocol."""

from __future__ import annotations

import builtins
import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ropekit.data import BPETokenizer, ByteTokenizer, Tokenizer, train_bpe

TEXT = st.text(st.characters(codec="utf-8"), max_size=200)


@settings(max_examples=200, deadline=None)
@given(TEXT)
def test_byte_round_trip(text: str) -> None:
    tok = ByteTokenizer()
    ids = tok.encode(text)
    assert all(0 <= i < 256 for i in ids)
    assert len(ids) == len(text.encode("utf-8"))
    assert tok.decode(ids) == text


def test_byte_specials() -> None:
    tok = ByteTokenizer()
    assert isinstance(tok, Tokenizer)
    assert (tok.pad_id, tok.bos_id, tok.eos_id, tok.sep_id, tok.mask_id, tok.vocab_size) == (
        256, 257, 258, 259, 260, 261)
    assert tok.decode([tok.bos_id, *tok.encode("héllo ✓"), tok.eos_id, tok.pad_id]) == "héllo ✓"
    assert tok.decode(tok.encode("€")[:2]) == "\ufffd"  # cut mid-character: replaced, not an error
    with pytest.raises(ValueError, match="out of range"):
        tok.decode([261])
    with pytest.raises(ValueError, match="negative"):
        tok.decode([-1])
    with pytest.raises(ValueError, match="lone surrogates"):
        tok.encode("a\ud800b")


CORPUS = [
    "The Congress shall have power to lay and collect taxes, duties, imposts and excises.",
    "Fellow-Citizens of the Senate and House of Representatives: the state of the union is strong.",
    "Ünïcödé façade — naïve café; 東京 and emoji 🎉 appear too.",
] * 20


def test_bpe_round_trip_and_protocol(tmp_path) -> None:
    pytest.importorskip("tokenizers")
    tok = train_bpe(CORPUS, vocab_size=400)
    assert isinstance(tok, Tokenizer) and isinstance(tok, BPETokenizer)
    assert (tok.pad_id, tok.bos_id, tok.eos_id) == (0, 1, 2)
    assert 259 < tok.vocab_size <= 400
    for text in [*CORPUS[:3], "unseen words: zyzzyva ±∞", "  leading and trailing spaces  ", ""]:
        ids = tok.encode(text)
        assert all(3 <= i < tok.vocab_size for i in ids)
        assert tok.decode(ids) == text
    assert len(tok.encode(CORPUS[0])) < len(CORPUS[0])  # merges were learned
    assert tok.decode([tok.bos_id, *tok.encode("tax"), tok.eos_id]) == "tax"
    path = tmp_path / "bpe.json"
    tok.save(path)
    again = BPETokenizer.from_file(path)
    assert again.encode(CORPUS[1]) == tok.encode(CORPUS[1])
    assert tok.encode_batch(CORPUS[:2]) == [tok.encode(CORPUS[0]), tok.encode(CORPUS[1])]


def test_bpe_json_round_trip_byte_lengths_and_bad_files(tmp_path) -> None:
    pytest.importorskip("tokenizers")
    tok = train_bpe(CORPUS, vocab_size=400)
    assert train_bpe(CORPUS, vocab_size=400).to_json() == tok.to_json()  # deterministic
    assert BPETokenizer.from_json(tok.to_json()).to_json() == tok.to_json()
    lengths = tok.byte_lengths()
    assert len(lengths) == tok.vocab_size and lengths[:3] == [0, 0, 0]  # pad, bos, eos
    for text in CORPUS[:3]:
        assert sum(lengths[i] for i in tok.encode(text)) == len(text.encode("utf-8"))
    assert ByteTokenizer().byte_lengths() == [1] * 256 + [0] * 5
    path = tmp_path / "bpe.json"
    tok.save(path)
    assert path.read_text(encoding="utf-8") == tok.to_json() and not list(tmp_path.glob("*.tmp*"))
    path.write_text(tok.to_json()[:100])
    with pytest.raises(ValueError, match=r"bpe.json: not a valid tokenizers JSON.*BPETokenizer.save"):
        BPETokenizer.from_file(path)


def test_bpe_vocab_too_small() -> None:
    with pytest.raises(ValueError, match="at least 259"):
        train_bpe(CORPUS, vocab_size=100)


def test_bpe_without_tokenizers_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    real_import = builtins.__import__

    def fake_import(name, *args, **kwargs):
        if name == "tokenizers" or name.startswith("tokenizers."):
            raise ImportError("No module named 'tokenizers'")
        return real_import(name, *args, **kwargs)

    monkeypatch.delitem(sys.modules, "tokenizers", raising=False)
    monkeypatch.setattr(builtins, "__import__", fake_import)
    with pytest.raises(ImportError, match=r"ropekit\[train\]"):
        train_bpe(CORPUS, vocab_size=300)
