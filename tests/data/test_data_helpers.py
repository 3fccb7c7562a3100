"""lm_splits / windows / batches, classification tensors and passkey prompts."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch

import ropekit.data as rd
from ropekit.data.passkey import QUESTION, TASK_DESCRIPTION, key_sentence

BYTES = rd.ByteTokenizer()


@pytest.fixture(scope="module")
def splits() -> rd.LMSplits:
    return rd.lm_splits()


def test_sotu_split_rule_is_fixed_and_by_speech() -> None:
    speeches = rd.load_sotu()
    split_of = rd.sotu_split_of(speeches)
    assert split_of == rd.sotu_split_of(list(reversed(speeches)))  # order independent
    counts = {s: list(split_of.values()).count(s) for s in ("train", "validation", "test")}
    assert counts == {"train": 186, "validation": 23, "test": 24}
    # pinned assignments guard against accidental changes of the rule
    pinned = {"1790_george_washington": "train", "1794_george_washington": "validation",
              "1795_george_washington": "test", "2013_barack_obama": "test", "2018_donald_j_trump":
              "validation", "2021_joseph_r_biden": "train"}
    assert {sid: split_of[sid] for sid in pinned} == pinned


def test_lm_splits_streams(splits: rd.LMSplits) -> None:
    speeches = rd.load_sotu()
    split_of = rd.sotu_split_of(speeches)
    for name, stream in splits._asdict().items():
        chosen = [s for s in speeches if split_of[s.id] == name]
        assert stream.dtype == torch.int64 and stream.dim() == 1
        assert int((stream == BYTES.eos_id).sum()) == len(chosen)
        assert stream.numel() == sum(len(s.text.encode()) + 1 for s in chosen)
        assert int(stream[-1]) == BYTES.eos_id
        first = BYTES.decode(stream[: stream.tolist().index(BYTES.eos_id)].tolist())
        assert first == chosen[0].text
    again = rd.lm_splits()
    assert all(torch.equal(a, b) for a, b in zip(splits, again, strict=True))


def test_lm_splits_with_other_tokenizer() -> None:
    class Words:
        """A toy word-level tokenizer satisfying the protocol."""

        vocab_size, pad_id, bos_id, eos_id = 10, 0, 1, 2

        def encode(self, text: str) -> list[int]:
            return [3 + len(w) % 7 for w in text.split()[:5]]

        def decode(self, ids) -> str:
            return " ".join("w" * i for i in ids)

    out = rd.lm_splits(Words())
    assert out.validation.numel() == 23 * 6 and out.test.numel() == 24 * 6


def test_windows_dataset_and_batches(splits: rd.LMSplits) -> None:
    ds = rd.LMWindows(splits.validation, context_len=64, num_samples=10, seed=3)
    assert len(ds) == 10
    x, y = ds[4]
    assert x.shape == y.shape == (64,)
    assert torch.equal(x[1:], y[:-1])
    assert torch.equal(ds.starts, rd.LMWindows(splits.validation, 64, 10, seed=3).starts)
    gen = torch.Generator().manual_seed(0)
    xb, yb = next(rd.lm_batches(splits.train, context_len=32, batch_size=8, generator=gen))
    assert xb.shape == yb.shape == (8, 32) and xb.dtype == torch.int64
    assert torch.equal(xb[:, 1:], yb[:, :-1])
    xb2, _ = next(rd.lm_batches(splits.train, 32, 8, generator=torch.Generator().manual_seed(0)))
    assert torch.equal(xb, xb2)
    ex, ey = rd.lm_eval_windows(splits.test, 1000)
    assert ex.shape == ((splits.test.numel() - 1) // 1000, 1000)
    assert torch.equal(ex.flatten()[1:], ey.flatten()[:-1])
    with pytest.raises(ValueError, match="too short"):
        rd.LMWindows(torch.arange(5), context_len=5, num_samples=1)


def test_classification_dataset() -> None:
    data = rd.classification_dataset("validation", max_len=128)
    mails = rd.load_spam("validation")
    n = len(mails)
    assert data.ids.shape == (n, 128) and data.lengths.shape == (n,) and data.labels.shape == (n,)
    assert data.mail_ids == tuple(m.id for m in mails)
    assert data.labels.tolist() == [int(m.is_spam) for m in mails]
    assert bool((data.ids[:, 0] == BYTES.bos_id).all())
    for row in range(n):
        length = int(data.lengths[row])
        expected = BYTES.encode(mails[row].text)[:127]
        assert length == 1 + len(expected)
        assert data.ids[row, 1:length].tolist() == expected
        assert bool((data.ids[row, length:] == BYTES.pad_id).all())
    with pytest.raises(ValueError, match="max_len"):
        rd.classification_dataset("test", max_len=1)


@pytest.mark.parametrize("depth", [0.0, 0.1, 0.5, 0.9, 1.0])
def test_passkey_depth_and_layout(depth: float) -> None:
    filler = rd.default_filler(min_tokens=3000)
    sample = rd.passkey_sample(filler, length=2000, depth=depth, rng=random.Random(7), filler_offset=0)
    ids = sample.prompt_ids
    assert ids.shape == (2000,) and ids.dtype == torch.int64
    text = BYTES.decode(ids.tolist())
    assert text.startswith(TASK_DESCRIPTION + "\n") and text.endswith("\n" + QUESTION)
    key = "\n" + key_sentence(sample.passkey) + "\n"
    assert text.count(key) == 1 and 10000 <= sample.passkey <= 99999
    assert BYTES.decode(ids[sample.key_start : sample.key_start + sample.key_len].tolist()) == key
    head = len(BYTES.encode(TASK_DESCRIPTION + "\n"))
    n_fill = 2000 - head - sample.key_len - len(BYTES.encode("\n" + QUESTION))
    assert sample.key_start - head == round(depth * n_fill)
    assert abs(sample.depth - depth) <= 1 / n_fill
    assert BYTES.decode(sample.answer_ids.tolist()) == f" {sample.passkey}"


def test_passkey_real_filler_rngs_and_errors(splits: rd.LMSplits) -> None:
    filler = splits.validation[:50_000]
    a = rd.passkey_sample(filler, 4096, 0.3, np.random.default_rng(1))
    b = rd.passkey_sample(filler, 4096, 0.3, np.random.default_rng(1))
    assert torch.equal(a.prompt_ids, b.prompt_ids) and a.passkey == b.passkey
    assert a.prompt_ids.numel() == 4096
    assert str(a.passkey) in BYTES.decode(a.prompt_ids.tolist())
    with pytest.raises(ValueError, match="too small"):
        rd.passkey_sample(filler, 100, 0.5, random.Random(0))
    with pytest.raises(ValueError, match="depth"):
        rd.passkey_sample(filler, 4096, 1.5, random.Random(0))
