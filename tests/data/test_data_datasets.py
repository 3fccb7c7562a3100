"""Contents of the three bundled datasets: counts, fields, header stripping, the fixed split."""

from __future__ import annotations

import collections
import dataclasses
import re

import pytest
import torch

import ropekit.data as rd


def _stats(name: str) -> dict:
    return rd.load_manifest()["files"][name]["stats"]


# ---------------------------------------------------------------------------------------------- SOTU


def test_sotu_counts_match_manifest() -> None:
    speeches = rd.load_sotu()
    stats = _stats("sotu.jsonl.xz")
    assert len(speeches) == stats["records"] == 233
    assert sum(len(s.text.split()) for s in speeches) == stats["words"]
    assert 1_700_000 < stats["words"] < 1_900_000
    assert len({s.id for s in speeches}) == len(speeches)
    assert [s.year for s in speeches] == sorted(s.year for s in speeches)
    assert (speeches[0].year, speeches[-1].year) == (1790, 2021)
    parties = collections.Counter(str(s.party) for s in speeches)
    assert parties == collections.Counter(stats["by_party"])
    assert {s.president for s in speeches if s.party is None} == {"George Washington"}


def test_sotu_records_are_frozen_and_cached() -> None:
    a, b = rd.load_sotu(), rd.load_sotu()
    assert a == b and a is not b  # fresh list, same cached records
    with pytest.raises(dataclasses.FrozenInstanceError):
        a[0].text = "x"  # type: ignore[misc]


# ---------------------------------------------------------------------------------------------- spam


def test_spam_counts_match_manifest() -> None:
    mails = rd.load_spam("all")
    stats = _stats("spam_assassin.jsonl.xz")
    assert len(mails) == stats["records"] == 6046
    assert collections.Counter(m.label for m in mails) == collections.Counter(stats["by_label"])
    assert collections.Counter(m.group for m in mails) == collections.Counter(stats["by_group"])
    for split in rd.SPLITS:
        assert len(rd.load_spam(split)) == stats["by_split"][split]
    assert len({m.id for m in mails}) == len(mails)


def test_spam_bad_split_name() -> None:
    with pytest.raises(ValueError, match="expected one of train, validation, test, all"):
        rd.load_spam("dev")


HEADER_LINE = re.compile(
    r"^(From|Received|Subject|Return-Path|Delivered-To|Message-ID|To|Date|Content-Type|MIME-Version"
    r"|X-[\w-]+):", re.IGNORECASE)


def test_spam_headers_are_stripped() -> None:
    mails = rd.load_spam("all")
    first_lines = [next((ln for ln in m.text.split("\n") if ln.strip()), "") for m in mails]
    header_like = [m.id for m, ln in zip(mails, first_lines, strict=True) if HEADER_LINE.match(ln)]
    # the few left are quoted mail ("From: Donald ...") and 419-spam letterheads ("FROM: COL. ...")
    assert len(header_like) < 0.005 * len(mails), header_like
    transport = re.compile(r"^(Received|Return-Path|Delivered-To|Message-ID|X-[\w-]+):", re.IGNORECASE)
    assert not [m.id for m, ln in zip(mails, first_lines, strict=True) if transport.match(ln)]
    # the first five lines of nearly all bodies are header-free
    top = [m.id for m in mails if sum(bool(HEADER_LINE.match(ln)) for ln in m.text.split("\n")[:5]) >= 2]
    assert len(top) < 0.02 * len(mails)
    assert not [m.id for m in mails if "x-spam" in m.text.lower()]
    # MIME decoding happened: no raw base64 blocks or quoted-printable soft breaks dominate a body
    assert not [m.id for m in mails if m.text.count("=\n") > 20 and m.text.count("=3D") > 5]


def test_spam_split_is_disjoint_complete_and_stratified() -> None:
    mails = rd.load_spam("all")
    ids = {split: {m.id for m in rd.load_spam(split)} for split in rd.SPLITS}
    assert not ids["train"] & ids["validation"]
    assert not ids["train"] & ids["test"]
    assert not ids["validation"] & ids["test"]
    assert set().union(*ids.values()) == {m.id for m in mails}
    by_group = collections.Counter(m.group for m in mails)
    for group, n in by_group.items():
        for split, frac in (("train", 0.8), ("validation", 0.1), ("test", 0.1)):
            count = sum(m.group == group and m.split == split for m in mails)
            assert abs(count - frac * n) <= max(2, 0.01 * n), (group, split, count, n)
    # identical bodies never straddle two splits
    splits_of_body: dict[str, set[str]] = collections.defaultdict(set)
    for m in mails:
        splits_of_body[" ".join(m.text.split())].add(m.split)
    assert all(len(s) == 1 for s in splits_of_body.values())


def test_spam_split_is_reproduced_by_the_build_rule(build_script) -> None:
    mails = rd.load_spam("all")
    records = [{"id": m.id, "group": m.group, "text": m.text} for m in mails]
    assert build_script.assign_spam_splits(records) == {m.id: m.split for m in mails}


# --------------------------------------------------------------------------------------------- MNIST


def test_mnist_shapes_labels_and_range() -> None:
    images, labels = rd.load_mnist_5k()
    assert images.shape == (5000, 28, 28) and images.dtype == torch.uint8
    assert labels.shape == (5000,) and labels.dtype == torch.int64
    assert labels.bincount().tolist() == [500] * 10
    assert torch.equal(labels, labels.sort().values)  # sorted by label in the source
    assert int(images.min()) == 0 and int(images.max()) == 255
    ink = (images > 0).float().mean(dim=(1, 2))
    assert float(ink.min()) > 0.02 and float(ink.max()) < 0.6  # every image is a digit, not noise
    assert float((images[:, 0, :] == 0).float().mean()) > 0.99  # top row is background
    images[0, 0, 0] = 7  # fresh tensors: mutating one result does not touch the cache
    assert int(rd.load_mnist_5k()[0][0, 0, 0]) == 0
