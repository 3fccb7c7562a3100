"""The tokenizer of a training run: its spec, a BPE trained on the training split only, and ``tokenizer.json``.

Spec (one argument, like ``ModelConfig.pe``): ``"byte"`` (default, :class:`~ropekit.data.ByteTokenizer`) or
``"bpe"`` / ``{"kind": "bpe", "vocab_size": 1024, "min_frequency": 2}`` (:func:`~ropekit.data.train_bpe`, trained
on the task's TRAINING texts only: validation and test text never reaches the merges).

A BPE run keeps the tokenizer as ``out_dir/tokenizer.json`` (written atomically) and records it under
``"tokenizer"`` in ``config.json`` and in every checkpoint's ``state.json``: spec, file name, sha256 of the file,
vocabulary size and what it was trained on. ``ropekit eval``, ``ropekit generate`` and ``--resume`` load that file
(:func:`load_run_tokenizer`); they never retrain it.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ropekit.data import BPETokenizer, ByteTokenizer, Tokenizer, train_bpe
from ropekit.models.io import CheckpointError, atomic_write_bytes, read_json

__all__ = [
    "DEFAULT_BPE_VOCAB_SIZE",
    "TOKENIZER_FILE",
    "TaskTokenizer",
    "load_run_tokenizer",
    "make_task_tokenizer",
    "tokenizer_spec",
    "training_texts",
    "write_run_tokenizer",
]

# 1024 = 256 byte symbols + 3 specials + 765 merges: ~3.0 bytes per token on the SOTU train split (8,967,735 bytes
# -> 3,013,919 tokens), so a 128-token window sees ~3x the text. Small on purpose: the default model (d_model 64,
# 2 layers) has ~100k weights besides its tied V x 64 embedding, which 1024 ids grow from 17k to 66k; and each id
# must still be seen often within a few hundred steps of 32 x 128 tokens.
DEFAULT_BPE_VOCAB_SIZE = 1024
TOKENIZER_FILE = "tokenizer.json"
_BPE_DEFAULTS = {"vocab_size": DEFAULT_BPE_VOCAB_SIZE, "min_frequency": 2}


def tokenizer_spec(value: str | Mapping[str, Any] | None) -> dict[str, Any]:
    """Normalise ``"byte"``, ``"bpe"`` or ``{"kind": ..., **options}`` to a full JSON spec; unknown keys raise."""
    if value is None or value == "byte":
        return {"kind": "byte"}
    if value == "bpe":
        return {"kind": "bpe", **_BPE_DEFAULTS}
    if not isinstance(value, Mapping):
        raise ValueError(f"unknown tokenizer {value!r}; expected 'byte', 'bpe' or {{'kind': 'bpe', 'vocab_size': N}}")
    kind = value.get("kind")
    options = {k: v for k, v in value.items() if k != "kind"}
    if kind == "byte":
        if options:
            raise ValueError(f"the byte tokenizer takes no options, got {sorted(options)}")
        return {"kind": "byte"}
    if kind != "bpe":
        raise ValueError(f"unknown tokenizer kind {kind!r}; expected 'byte' or 'bpe'")
    bad = sorted(set(options) - set(_BPE_DEFAULTS))
    if bad:
        raise ValueError(f"unknown bpe tokenizer option(s) {bad}; valid: {sorted(_BPE_DEFAULTS)}")
    spec = {"kind": "bpe", **_BPE_DEFAULTS, **options}
    if not isinstance(spec["vocab_size"], int) or spec["vocab_size"] < 259:
        raise ValueError(f"bpe vocab_size must be an integer >= 259 (256 bytes + 3 specials), got {spec['vocab_size']}")
    return spec


def training_texts(source: str) -> list[str]:
    """The TRAINING texts of a bundled source, the only text a BPE may be trained on.

    ``"sotu"``: the train-split speeches of :func:`ropekit.data.sotu_split_of` (what ``lm_splits().train`` holds);
    ``"spam"``: the bodies of ``load_spam("train")``.
    """
    from ropekit.data import load_sotu, load_spam, sotu_split_of

    if source == "sotu":
        speeches = load_sotu()
        split_of = sotu_split_of(speeches)
        return [s.text for s in speeches if split_of[s.id] == "train"]
    if source == "spam":
        return [m.text for m in load_spam("train")]
    raise ValueError(f"unknown text source {source!r}; expected 'sotu' or 'spam'")


@dataclass(frozen=True)
class TaskTokenizer:
    """A task's tokenizer with its spec and provenance (``trained_on``: e.g. ``"sotu train split: 186 texts"``)."""

    spec: dict[str, Any]
    tokenizer: Tokenizer
    trained_on: str = ""

    @property
    def is_byte(self) -> bool:
        return self.spec["kind"] == "byte"

    def file_bytes(self) -> bytes:
        """The content of ``tokenizer.json`` (BPE only)."""
        if not isinstance(self.tokenizer, BPETokenizer):
            raise ValueError("only a BPE tokenizer is stored in a file; the byte tokenizer needs none")
        return self.tokenizer.to_json().encode()

    def record(self) -> dict[str, Any]:
        """What ``config.json`` / ``state.json`` store under ``"tokenizer"``."""
        if self.is_byte:
            return dict(self.spec)
        return {
            **self.spec,
            "actual_vocab_size": self.tokenizer.vocab_size,
            "trained_on": self.trained_on,
            "file": TOKENIZER_FILE,
            "sha256": hashlib.sha256(self.file_bytes()).hexdigest(),
        }

    def eval_byte_lengths(self) -> torch.Tensor:
        """int64 ``[V]``: bytes of text each id covers, ``eos`` counted as 1 (it is one symbol of the byte stream
        too), so nats / these bytes is comparable between tokenizers and equals nats/token for the byte one."""
        lengths = torch.tensor(self.tokenizer.byte_lengths(), dtype=torch.int64)  # [V]
        lengths[self.tokenizer.eos_id] = 1
        return lengths


def make_task_tokenizer(value: str | Mapping[str, Any] | TaskTokenizer | None, source: str) -> TaskTokenizer:
    """The tokenizer of a task on ``source``: ``value`` itself if already built (e.g. loaded from a run), else
    built from the spec; a BPE is trained, deterministically, on :func:`training_texts` of ``source`` only."""
    if isinstance(value, TaskTokenizer):
        return value
    spec = tokenizer_spec(value)
    if spec["kind"] == "byte":
        return TaskTokenizer(spec, ByteTokenizer())
    texts = training_texts(source)
    tok = train_bpe(texts, spec["vocab_size"], min_frequency=spec["min_frequency"])
    return TaskTokenizer(spec, tok, f"{source} train split: {len(texts)} texts")


def write_run_tokenizer(out_dir: str | os.PathLike[str], tt: TaskTokenizer) -> None:
    """Write ``out_dir/tokenizer.json`` atomically (BPE only; left alone when it already holds these bytes)."""
    if tt.is_byte:
        return
    path = Path(out_dir) / TOKENIZER_FILE
    data = tt.file_bytes()
    if not (path.is_file() and path.read_bytes() == data):
        atomic_write_bytes(path, data)


def _run_meta(run: Path) -> tuple[dict[str, Any], Path]:
    """The run's metadata (``config.json``, else the latest checkpoint's ``state.json``) and the run's root."""
    if (run / "config.json").is_file():
        meta = read_json(run / "config.json")
        if "tokenizer" in meta or "task" in meta or not (run / "state.json").is_file():
            return meta, run
    if (run / "state.json").is_file():  # a checkpoint step folder: out_dir/ckpt/step-N
        root = run.parent.parent if run.parent.name == "ckpt" else run
        return read_json(run / "state.json"), root
    if (run / "latest.json").is_file():
        return read_json(run / str(read_json(run / "latest.json").get("path", "")) / "state.json"), run
    return {}, run


def load_run_tokenizer(run_dir: str | os.PathLike[str]) -> TaskTokenizer:
    """The tokenizer a run was trained with, from its ``tokenizer.json`` (never retrained).

    ``run_dir``: a run's ``out_dir`` or one of its checkpoint step folders. Runs without a ``"tokenizer"`` record
    (made before BPE support) used bytes.

    Raises:
        CheckpointError: the record names a BPE but ``tokenizer.json`` is missing, corrupt (sha256 differs from the
            record) or unreadable.
    """
    meta, root = _run_meta(Path(run_dir))
    record = meta.get("tokenizer") or {"kind": "byte"}
    spec = tokenizer_spec({k: v for k, v in record.items() if k in ("kind", *_BPE_DEFAULTS)})
    if spec["kind"] == "byte":
        return TaskTokenizer(spec, ByteTokenizer())
    path = root / str(record.get("file", TOKENIZER_FILE))
    if not path.is_file():
        raise CheckpointError(
            f"{path} is missing: run {root} was trained with a BPE tokenizer ({spec}) and needs that file; restore "
            f"it from a copy of the run, or retrain the run (the BPE cannot be recovered from the weights)"
        )
    data = path.read_bytes()
    if record.get("sha256") and hashlib.sha256(data).hexdigest() != record["sha256"]:
        raise CheckpointError(
            f"{path} is corrupt: its sha256 differs from the one recorded in the run's config "
            f"({str(record['sha256'])[:12]}...); restore the original file from a copy of the run, or retrain the run"
        )
    try:
        tok = BPETokenizer.from_json(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as e:
        raise CheckpointError(
            f"{path} is corrupt: {e}; expected the tokenizer.json written by `ropekit train --tokenizer bpe`; "
            f"restore it from a copy of the run, or retrain the run"
        ) from None
    return TaskTokenizer(spec, tok, str(record.get("trained_on", "")))
