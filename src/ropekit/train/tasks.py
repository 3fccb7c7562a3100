"""Training tasks: what a batch is, what the loss is, how to evaluate. One protocol for all three models.

Legend: ``B`` global batch size, ``T`` context length, ``S`` source length, ``V`` vocabulary.

Protocol (:class:`Task`): ``name``; ``model_overrides() -> dict`` (vocab size, task, classes for ``ModelConfig``);
``batch(step, batch_size, seed) -> tuple of tensors`` (the GLOBAL batch, a pure function of ``(seed, step)``:
that is what makes ``--resume`` and DDP exact without saving data-loader state); ``loss(model, batch) ->
(mean loss, metrics)``; ``evaluate(model, rank, world) -> {"name": (sum, count)}`` (sums over this rank's shard,
all-reduced by the loop); ``spec() -> dict`` (JSON, stored in checkpoints; :func:`task_from_spec` rebuilds it).

Tasks: :class:`LMTask` (next token on State of the Union speeches), :class:`ClassifyTask` (SpamAssassin ham/spam),
:class:`ReverseTask` (seq2seq: reverse a token span of speech text; real text, cheap, exact-match measurable).

Tokenizer: the bundled-data constructors (``LMTask.sotu``, ``ClassifyTask.spam``, ``ReverseTask.sotu``) take
``tokenizer="byte"`` (default), ``"bpe"``, ``{"kind": "bpe", "vocab_size": N}`` or a
:class:`~ropekit.train.tokenization.TaskTokenizer` (e.g. one loaded from a run); a BPE is trained on the task's
training split only (:mod:`ropekit.train.tokenization`).
"""

from __future__ import annotations

from typing import Any, Protocol

import torch
import torch.nn.functional as F

from ropekit.train.device import model_device, to_device
from ropekit.train.tokenization import TaskTokenizer, make_task_tokenizer

__all__ = [
    "ClassifyTask",
    "LMTask",
    "ReverseTask",
    "Task",
    "shard",
    "step_generator",
    "task_from_spec",
    "unigram_entropy",
]


class Task(Protocol):
    name: str

    def model_overrides(self) -> dict[str, Any]: ...
    def batch(self, step: int, batch_size: int, seed: int) -> tuple[torch.Tensor, ...]: ...
    def loss(self, model: torch.nn.Module, batch: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, dict]: ...
    def evaluate(self, model: torch.nn.Module, rank: int, world: int) -> dict[str, tuple[float, float]]: ...
    def spec(self) -> dict[str, Any]: ...


def step_generator(seed: int, step: int, salt: int = 0) -> torch.Generator:
    """A generator seeded by ``(seed, step, salt)`` only: batches do not depend on history."""
    return torch.Generator().manual_seed((seed * 1_000_003 + step) * 7919 + salt)


def shard(batch: tuple[torch.Tensor, ...], rank: int, world: int) -> tuple[torch.Tensor, ...]:
    """Rows ``rank::world`` of every tensor of a global batch (equal shards when ``world`` divides ``B``)."""
    return tuple(t[rank::world] for t in batch)


def _with_tokenizer(spec: dict[str, Any], tt: TaskTokenizer | None) -> dict[str, Any]:
    """``spec`` plus the tokenizer spec when it is not the byte default (byte specs stay as they always were)."""
    return spec if tt is None or tt.is_byte else {**spec, "tokenizer": tt.spec}


def _check_counts(**counts: Any) -> None:
    """Each named count must be a positive integer (``ValueError`` naming the first that is not)."""
    for name, value in counts.items():
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")


def unigram_entropy(ids: torch.Tensor, vocab_size: int) -> float:
    """Entropy in nats of the token frequencies of ``ids`` (the best loss of a model that ignores context)."""
    counts = torch.bincount(ids.flatten(), minlength=vocab_size).double()
    p = counts[counts > 0] / counts.sum()
    return float(-(p * p.log()).sum())


class LMTask:
    """Next-token prediction on token streams; eval: mean loss (nats/token) over non-overlapping windows.

    With a non-byte ``tokenizer`` the evaluation also reports ``loss_per_byte``: the same summed nats divided by
    the bytes of text the evaluated target tokens cover (``eos`` counts as one byte, as it is one token of the
    byte stream), which is comparable with a byte-level run's ``loss`` (nats/token = nats/byte there)."""

    name = "lm"

    def __init__(
        self,
        train: torch.Tensor,
        validation: torch.Tensor,
        *,
        context_len: int,
        vocab_size: int,
        eval_windows: int = 64,
        source: str = "sotu",
        tokenizer: TaskTokenizer | None = None,
    ) -> None:
        _check_counts(context_len=context_len, vocab_size=vocab_size, eval_windows=eval_windows)
        if train.numel() <= context_len + 1 or validation.numel() <= context_len + 1:
            raise ValueError(f"token streams are shorter than context_len={context_len} + 1")
        self.tokenizer = tokenizer
        # [V] bytes per id, only when tokens are not bytes (byte runs report exactly what they always did)
        self.token_bytes = None if tokenizer is None or tokenizer.is_byte else tokenizer.eval_byte_lengths()
        self.train, self.validation = train, validation
        self.context_len, self.vocab_size, self.eval_windows, self.source = (
            context_len,
            vocab_size,
            eval_windows,
            source,
        )

    @classmethod
    def sotu(
        cls, context_len: int = 128, *, eval_windows: int = 64, tokenizer: str | dict | TaskTokenizer = "byte"
    ) -> LMTask:
        """State of the Union: fixed train / validation split of :func:`ropekit.data.lm_splits`, tokenized with
        ``tokenizer`` (``"byte"``, ``"bpe"``, a spec mapping, or a built :class:`TaskTokenizer`)."""
        from ropekit.data import lm_splits

        tt = make_task_tokenizer(tokenizer, "sotu")
        splits = lm_splits(tt.tokenizer)
        return cls(
            splits.train,
            splits.validation,
            context_len=context_len,
            vocab_size=tt.tokenizer.vocab_size,
            eval_windows=eval_windows,
            tokenizer=tt,
        )

    def model_overrides(self) -> dict[str, Any]:
        return {"task": "lm", "vocab_size": self.vocab_size}

    def batch(self, step: int, batch_size: int, seed: int) -> tuple[torch.Tensor, ...]:
        g = step_generator(seed, step)
        starts = torch.randint(0, self.train.numel() - self.context_len - 1, (batch_size, 1), generator=g)
        win = self.train[starts + torch.arange(self.context_len + 1)]  # [B, T + 1]
        return win[:, :-1], win[:, 1:]

    def loss(self, model: torch.nn.Module, batch: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, dict]:
        x, y = batch
        logits = model(x)  # [B, T, V]
        return F.cross_entropy(logits.flatten(0, 1), y.flatten()), {}

    def eval_data(self) -> tuple[torch.Tensor, torch.Tensor]:
        n = min(self.eval_windows, (self.validation.numel() - 1) // self.context_len)
        ids = self.validation[: n * self.context_len + 1]
        return ids[:-1].view(n, self.context_len), ids[1:].view(n, self.context_len)  # [N, T] each

    def baseline(self) -> float:
        """Unigram entropy (nats/token) of the evaluated validation targets."""
        return unigram_entropy(self.eval_data()[1], self.vocab_size)

    @torch.no_grad()
    def evaluate(self, model: torch.nn.Module, rank: int, world: int) -> dict[str, tuple[float, float]]:
        x, y = to_device(self.eval_data(), model_device(model))
        total, count, nbytes = 0.0, 0, 0
        for i in range(rank * 16, x.shape[0], 16 * world):  # 16-row chunks, round-robin over ranks
            logits = model(x[i : i + 16])
            total += float(F.cross_entropy(logits.flatten(0, 1), y[i : i + 16].flatten(), reduction="sum"))
            count += y[i : i + 16].numel()
            if self.token_bytes is not None:
                nbytes += int(self.token_bytes[y[i : i + 16].cpu()].sum())
        out: dict[str, tuple[float, float]] = {"loss": (total, count)}
        if self.token_bytes is not None:
            out["loss_per_byte"] = (total, nbytes)
        return out

    def bytes_per_token(self) -> float:
        """Bytes of text per evaluated target token (1.0 for bytes)."""
        y = self.eval_data()[1]
        return 1.0 if self.token_bytes is None else float(self.token_bytes[y].sum()) / y.numel()

    def spec(self) -> dict[str, Any]:
        spec = {"name": "lm", "source": self.source, "context_len": self.context_len, "eval_windows": self.eval_windows}
        return _with_tokenizer(spec, self.tokenizer)


class ClassifyTask:
    """SpamAssassin ham (0) / spam (1) from message bodies; eval: loss and accuracy on ``eval_split``."""

    name = "classify"

    def __init__(
        self,
        train: Any,
        evaluation: Any,
        *,
        vocab_size: int,
        n_classes: int = 2,
        eval_split: str = "validation",
        max_len: int = 256,
        tokenizer: TaskTokenizer | None = None,
    ) -> None:
        _check_counts(vocab_size=vocab_size, n_classes=n_classes, max_len=max_len)
        self.train, self.eval, self.vocab_size, self.n_classes = train, evaluation, vocab_size, n_classes
        self.eval_split, self.max_len, self.tokenizer = eval_split, max_len, tokenizer

    @classmethod
    def spam(
        cls, max_len: int = 256, *, eval_split: str = "validation", tokenizer: str | dict | TaskTokenizer = "byte"
    ) -> ClassifyTask:
        """bos + the first ``max_len - 1`` body tokens (:func:`ropekit.data.classification_dataset`); a BPE is
        trained on the train-split bodies only."""
        from ropekit.data import classification_dataset

        tt = make_task_tokenizer(tokenizer, "spam")
        train = classification_dataset("train", tt.tokenizer, max_len)
        evaluation = classification_dataset(eval_split, tt.tokenizer, max_len)
        return cls(
            train,
            evaluation,
            vocab_size=tt.tokenizer.vocab_size,
            n_classes=2,
            eval_split=eval_split,
            max_len=max_len,
            tokenizer=tt,
        )

    def model_overrides(self) -> dict[str, Any]:
        return {"task": "classify", "vocab_size": self.vocab_size, "n_classes": self.n_classes}

    def batch(self, step: int, batch_size: int, seed: int) -> tuple[torch.Tensor, ...]:
        idx = torch.randint(0, self.train.ids.shape[0], (batch_size,), generator=step_generator(seed, step))
        return self.train.ids[idx], self.train.lengths[idx], self.train.labels[idx]

    @staticmethod
    def _trim(ids: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        return ids[:, : int(lengths.max())]  # drop all-pad columns: same result, less work

    def loss(self, model: torch.nn.Module, batch: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, dict]:
        ids, lengths, labels = batch
        logits = model(self._trim(ids, lengths), lengths)  # [B, K]
        return F.cross_entropy(logits, labels), {}

    @torch.no_grad()
    def evaluate(self, model: torch.nn.Module, rank: int, world: int) -> dict[str, tuple[float, float]]:
        ids, lengths, labels = to_device(
            (self.eval.ids[rank::world], self.eval.lengths[rank::world], self.eval.labels[rank::world]),
            model_device(model),
        )
        loss, correct = 0.0, 0.0
        for i in range(0, ids.shape[0], 64):
            logits = model(self._trim(ids[i : i + 64], lengths[i : i + 64]), lengths[i : i + 64])
            loss += float(F.cross_entropy(logits, labels[i : i + 64], reduction="sum"))
            correct += float((logits.argmax(-1) == labels[i : i + 64]).sum())
        n = float(ids.shape[0])
        return {"loss": (loss, n), "accuracy": (correct, n)}

    def spec(self) -> dict[str, Any]:
        spec = {"name": "classify", "source": "spam", "max_len": self.max_len, "eval_split": self.eval_split}
        return _with_tokenizer(spec, self.tokenizer)


class ReverseTask:
    """Seq2seq on real text: the source is a random span of 8..``max_span`` tokens of speech text (bytes by
    default; with BPE the token order is reversed, not the characters), the target the same tokens reversed.
    Decoder input ``[bos, y...]``, target ``[y..., eos]``; eval: token accuracy and exact-match rate
    of teacher-forced predictions on spans of the validation speeches."""

    name = "seq2seq"

    def __init__(
        self,
        train: torch.Tensor,
        validation: torch.Tensor,
        *,
        vocab_size: int,
        pad_id: int,
        bos_id: int,
        eos_id: int,
        max_span: int = 32,
        eval_examples: int = 256,
        tokenizer: TaskTokenizer | None = None,
    ) -> None:
        _check_counts(vocab_size=vocab_size, eval_examples=eval_examples)
        if not isinstance(max_span, int) or isinstance(max_span, bool) or max_span < 8:
            raise ValueError(f"max_span must be an integer >= 8 (spans are 8..max_span tokens), got {max_span!r}")
        self.tokenizer = tokenizer
        self.train, self.validation, self.vocab_size = train, validation, vocab_size
        self.pad_id, self.bos_id, self.eos_id, self.max_span = pad_id, bos_id, eos_id, max_span
        self.eval_examples = eval_examples

    @classmethod
    def sotu(
        cls, max_span: int = 32, *, eval_examples: int = 256, tokenizer: str | dict | TaskTokenizer = "byte"
    ) -> ReverseTask:
        from ropekit.data import lm_splits

        tt = make_task_tokenizer(tokenizer, "sotu")
        tok, s = tt.tokenizer, lm_splits(tt.tokenizer)
        return cls(
            s.train,
            s.validation,
            vocab_size=tok.vocab_size,
            pad_id=tok.pad_id,
            bos_id=tok.bos_id,
            eos_id=tok.eos_id,
            max_span=max_span,
            eval_examples=eval_examples,
            tokenizer=tt,
        )

    def model_overrides(self) -> dict[str, Any]:
        return {"task": "seq2seq", "vocab_size": self.vocab_size}

    def _make(self, stream: torch.Tensor, n: int, g: torch.Generator) -> tuple[torch.Tensor, ...]:
        S = self.max_span
        lengths = torch.randint(8, S + 1, (n,), generator=g)  # [N]
        starts = torch.randint(0, stream.numel() - S, (n, 1), generator=g)
        spans = stream[starts + torch.arange(S)]  # [N, S]
        valid = torch.arange(S) < lengths.unsqueeze(-1)  # [N, S]
        src = spans.masked_fill(~valid, self.pad_id)
        rev_idx = (lengths.unsqueeze(-1) - 1 - torch.arange(S)).clamp(min=0)  # [N, S]: reversed order
        rev = spans.gather(1, rev_idx).masked_fill(~valid, self.pad_id)
        tgt_in = torch.cat((torch.full((n, 1), self.bos_id), rev), dim=1)  # [N, S + 1]
        tgt_out = torch.cat((rev, torch.full((n, 1), self.pad_id)), dim=1)
        tgt_out[torch.arange(n), lengths] = self.eos_id
        return src, lengths, tgt_in, tgt_out

    def batch(self, step: int, batch_size: int, seed: int) -> tuple[torch.Tensor, ...]:
        return self._make(self.train, batch_size, step_generator(seed, step))

    def loss(self, model: torch.nn.Module, batch: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, dict]:
        src, lengths, tgt_in, tgt_out = batch
        logits = model(src, tgt_in, lengths)  # [B, S + 1, V]
        return F.cross_entropy(logits.flatten(0, 1), tgt_out.flatten(), ignore_index=self.pad_id), {}

    @torch.no_grad()
    def evaluate(self, model: torch.nn.Module, rank: int, world: int) -> dict[str, tuple[float, float]]:
        data = shard(self._make(self.validation, self.eval_examples, torch.Generator().manual_seed(1234)), rank, world)
        src, lengths, tgt_in, tgt_out = to_device(data, model_device(model))
        logits = model(src, tgt_in, lengths)
        keep = tgt_out != self.pad_id  # [N, S + 1]
        loss = float(
            F.cross_entropy(logits.flatten(0, 1), tgt_out.flatten(), ignore_index=self.pad_id, reduction="sum")
        )
        right = (logits.argmax(-1) == tgt_out) | ~keep
        return {
            "loss": (loss, float(keep.sum())),
            "token_accuracy": (float((right & keep).sum()), float(keep.sum())),
            "exact_match": (float(right.all(-1).sum()), float(src.shape[0])),
        }

    def spec(self) -> dict[str, Any]:
        spec = {
            "name": "seq2seq",
            "source": "sotu-reverse",
            "max_span": self.max_span,
            "eval_examples": self.eval_examples,
        }
        return _with_tokenizer(spec, self.tokenizer)


def task_from_spec(spec: dict[str, Any], tokenizer: TaskTokenizer | None = None) -> Task:
    """Rebuild a bundled-data task from its :meth:`spec` (what checkpoints store).

    ``tokenizer``: the run's own (``load_run_tokenizer(out_dir)``); without it a BPE spec is trained again (the
    training is deterministic, but loading the run's file is faster and certain)."""
    name = spec.get("name")
    tok = tokenizer if tokenizer is not None else spec.get("tokenizer", "byte")
    if name == "lm":
        return LMTask.sotu(spec["context_len"], eval_windows=spec.get("eval_windows", 64), tokenizer=tok)
    if name == "classify":
        return ClassifyTask.spam(spec["max_len"], eval_split=spec.get("eval_split", "validation"), tokenizer=tok)
    if name == "seq2seq":
        return ReverseTask.sotu(spec["max_span"], eval_examples=spec.get("eval_examples", 256), tokenizer=tok)
    raise ValueError(f"unknown task spec {spec}; expected name 'lm', 'classify' or 'seq2seq'")
