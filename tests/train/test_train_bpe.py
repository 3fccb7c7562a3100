"""BPE tokenizer option of the training tasks and CLI: trained on the training split only, saved in the run,
loaded (never retrained) by eval / generate / resume, per-byte loss, clear errors; the byte default unchanged.

The bundled corpora are swapped for small subsets of the real ones (the 30 shortest speeches, 40 mails per split),
so that training a BPE and encoding the splits takes milliseconds instead of ~10 s."""

from __future__ import annotations

import functools
import json
from pathlib import Path

import pytest
import torch

pytest.importorskip("tokenizers")

from ropekit.cli import main
from ropekit.data import load_sotu, load_spam, sotu_split_of
from ropekit.models import CheckpointError
from ropekit.train import ClassifyTask, LMTask, TrainConfig, train
from ropekit.train import tokenization as tkz
from ropekit.train.tokenization import load_run_tokenizer, make_task_tokenizer, training_texts

BPE = {"kind": "bpe", "vocab_size": 300}
TINY = ["--d-model", "32", "--n-layers", "1", "--batch-size", "4", "--warmup", "1", "--no-progress"]


@functools.cache
def _small_sotu() -> tuple:
    return tuple(sorted(load_sotu(), key=lambda s: len(s.text))[:30])


@functools.cache
def _small_spam(split: str) -> tuple:
    return tuple(load_spam(split)[:40])


@pytest.fixture
def small_corpora(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every loader the tasks and the tokenizer training use sees the small subsets."""
    sotu = lambda root=None: list(_small_sotu())  # noqa: E731
    spam = lambda split="all", root=None: list(_small_spam(split))  # noqa: E731
    monkeypatch.setattr("ropekit.data.lm.load_sotu", sotu)
    monkeypatch.setattr("ropekit.data.load_sotu", sotu)
    monkeypatch.setattr("ropekit.data.classification.load_spam", spam)
    monkeypatch.setattr("ropekit.data.load_spam", spam)


@pytest.fixture
def trained_texts(monkeypatch: pytest.MonkeyPatch) -> list[list[str]]:
    """Record the texts of every BPE training (the real trainer still runs)."""
    calls: list[list[str]] = []
    real = tkz.train_bpe

    def spy(texts, vocab_size, **kw):
        calls.append(list(texts))
        return real(calls[-1], vocab_size, **kw)

    monkeypatch.setattr(tkz, "train_bpe", spy)
    return calls


def _no_training(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*a, **k):
        raise AssertionError("the BPE was retrained instead of loaded from the run")

    monkeypatch.setattr(tkz, "train_bpe", refuse)


def _split_texts(split: str) -> list[str]:
    speeches = _small_sotu()
    of = sotu_split_of(speeches)
    return [s.text for s in speeches if of[s.id] == split]


def test_bpe_sees_only_the_training_split(small_corpora, trained_texts):
    task = LMTask.sotu(16, 4, BPE)
    assert len(trained_texts) == 1
    seen = trained_texts[0]
    train_texts, held_out = _split_texts("train"), _split_texts("validation") + _split_texts("test")
    assert sorted(seen) == sorted(train_texts) and len(held_out) == 6
    assert not set(seen) & set(held_out)
    tok = task.tokenizer.tokenizer
    assert task.vocab_size == tok.vocab_size == 300  # the model's vocabulary follows the tokenizer
    assert tok.decode(task.validation.tolist()) == "".join(_split_texts("validation"))  # every split uses it

    ClassifyTask.spam(32, tokenizer=BPE)
    assert trained_texts[1] == [m.text for m in _small_spam("train")]
    held_out = {m.text for split in ("validation", "test") for m in _small_spam(split)}
    assert not set(trained_texts[1]) & held_out


def test_training_texts_of_the_real_corpus_are_the_train_speeches():
    speeches = load_sotu()
    of = sotu_split_of(speeches)
    texts = training_texts("sotu")
    assert texts == [s.text for s in speeches if of[s.id] == "train"] and len(texts) == 186
    assert not set(texts) & {s.text for s in speeches if of[s.id] != "train"}


def test_bpe_training_is_deterministic(small_corpora):
    a, b = make_task_tokenizer(BPE, "sotu"), make_task_tokenizer(BPE, "sotu")
    assert a.record()["sha256"] == b.record()["sha256"]


def test_loss_per_byte_counts_the_bytes_of_the_targets(small_corpora):
    task = LMTask.sotu(16, 4, BPE)
    tt = task.tokenizer
    text = "Fellow-Citizens: naïve café, 東京 🎉"
    lengths = tt.eval_byte_lengths()  # [V]
    assert int(lengths[tt.tokenizer.encode(text)].sum()) == len(text.encode("utf-8"))
    assert int(lengths[tt.tokenizer.eos_id]) == 1 and int(lengths[tt.tokenizer.pad_id]) == 0
    model = torch.nn.Sequential(torch.nn.Embedding(task.vocab_size, task.vocab_size))  # logits [B, T, V]
    sums = task.evaluate(model, 0, 1)
    y = task.eval_data()[1]
    assert sums["loss_per_byte"][0] == sums["loss"][0]  # same nats
    assert sums["loss_per_byte"][1] == int(lengths[y].sum()) > sums["loss"][1] == y.numel()
    assert task.bytes_per_token() == pytest.approx(sums["loss_per_byte"][1] / sums["loss"][1])


def _history(run: Path) -> list[dict]:
    latest = json.loads((run / "latest.json").read_text())["path"]
    return json.loads((run / latest / "state.json").read_text())["history"]


def test_cli_bpe_run_saves_and_reuses_its_tokenizer(tmp_path, small_corpora, monkeypatch, capsys):
    out, full = tmp_path / "lm", tmp_path / "full"
    args = ["train", "lm", "--context-len", "16", "--eval-windows", "4", "--eval-every", "2", "--steps", "4", *TINY]
    bpe = ["--tokenizer", "bpe", "--bpe-vocab-size", "300"]
    assert main([*args, *bpe, "--out", str(out), "--stop-after", "2"]) == 0
    assert main([*args, *bpe, "--out", str(full)]) == 0
    capsys.readouterr()
    tok_file = out / "tokenizer.json"
    record = json.loads((out / "config.json").read_text())["tokenizer"]
    assert record["kind"] == "bpe" and record["vocab_size"] == 300 and record["file"] == "tokenizer.json"
    assert record["trained_on"] == "sotu train split: 24 texts"
    assert json.loads((out / "config.json").read_text())["model"]["vocab_size"] == 300
    assert not list(out.glob("*.tmp*"))  # written atomically

    _no_training(monkeypatch)  # from here on the tokenizer must come from the run's file
    assert main([*args, *bpe, "--out", str(out), "--resume"]) == 0
    final = json.loads(capsys.readouterr().out.strip().splitlines()[-1])["final_eval"]
    assert _history(out) == _history(full)  # resumed == uninterrupted, losses and evaluations exactly
    assert set(final) == {"loss", "loss_per_byte"} and final["loss_per_byte"] < final["loss"]
    assert (out / "tokenizer.json").read_bytes() == (full / "tokenizer.json").read_bytes()

    assert main(["eval", str(out), "--split", "test"]) == 0
    res = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert res["tokenizer"]["kind"] == "bpe" and res["bytes_per_token"] > 1.5
    assert res["loss_per_byte"] == pytest.approx(res["loss"] / res["bytes_per_token"])
    step_dir = out / json.loads((out / "latest.json").read_text())["path"]
    assert main(["eval", str(step_dir)]) == 0  # a checkpoint folder finds the run's tokenizer too
    capsys.readouterr()
    assert main(["generate", str(out), "--prompt", "Fellow citizens", "--max-new-tokens", "5"]) == 0
    assert capsys.readouterr().out.startswith("Fellow citizens")

    assert main([*args, "--out", str(out), "--resume", "--steps", "6"]) == 2  # bpe run resumed as byte
    assert "trained with tokenizer" in capsys.readouterr().err
    assert tok_file.is_file()


def test_missing_or_corrupt_tokenizer_file_is_a_clear_error(tmp_path, small_corpora, capsys):
    out = tmp_path / "s2s"
    assert main(["train", "seq2seq", "--out", str(out), "--max-span", "10", "--steps", "2", "--eval-every", "2",
                 "--tokenizer", "bpe", "--bpe-vocab-size", "300", *TINY]) == 0
    capsys.readouterr()
    tok_file = out / "tokenizer.json"
    good = tok_file.read_bytes()
    assert main(["generate", str(out), "--prompt", "the Union", "--max-new-tokens", "4"]) == 0
    capsys.readouterr()

    tok_file.unlink()
    assert main(["eval", str(out)]) == 2
    err = capsys.readouterr().err
    assert "tokenizer.json is missing" in err and "restore it" in err and "retrain" in err
    assert main(["generate", str(out), "--prompt", "x"]) == 2
    assert "tokenizer.json is missing" in capsys.readouterr().err

    tok_file.write_bytes(good[: len(good) // 2])  # truncated
    assert main(["eval", str(out)]) == 2
    assert "is corrupt" in capsys.readouterr().err

    tok_file.write_bytes(b"{not json")  # unreadable, and the recorded hash updated to match
    config = json.loads((out / "config.json").read_text())
    config["tokenizer"]["sha256"] = None
    (out / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match=r"is corrupt: not a valid tokenizers JSON.*tokenizer.json written by"):
        load_run_tokenizer(out)


def test_resume_refuses_a_different_tokenizer(tmp_path, small_corpora):
    cfg = TrainConfig(steps=4, batch_size=4, warmup=1, eval_every=2, threads=1)
    mcfg = {"d_model": 32, "n_heads": 4, "n_layers": 1, "max_len": 16}
    train(mcfg, LMTask.sotu(16, 4, BPE), cfg, out_dir=tmp_path / "r", progress=False, stop_after=2)
    other = make_task_tokenizer(BPE, "sotu")
    other = tkz.TaskTokenizer(other.spec, tkz.train_bpe(_split_texts("train")[:5], 300), other.trained_on)
    with pytest.raises(CheckpointError, match=r"is not the run's tokenizer\.json"):
        train(mcfg, LMTask.sotu(16, 4, other), cfg, out_dir=tmp_path / "r", progress=False, resume=True)


def test_byte_default_is_unchanged(tmp_path, small_corpora, trained_texts, capsys):
    task = LMTask.sotu(16, 4)
    assert "tokenizer" not in task.spec() and task.vocab_size == 261 and not trained_texts
    out = tmp_path / "byte"
    assert main(["train", "lm", "--out", str(out), "--context-len", "16", "--eval-windows", "4", "--steps", "2",
                 "--eval-every", "2", *TINY]) == 0
    assert set(json.loads(capsys.readouterr().out.strip().splitlines()[-1])["final_eval"]) == {"loss"}
    config = json.loads((out / "config.json").read_text())
    assert config["tokenizer"] == {"kind": "byte"} and "tokenizer" not in config["task"]
    assert not (out / "tokenizer.json").exists()
    del config["tokenizer"]  # a run made before the option existed
    (out / "config.json").write_text(json.dumps(config))
    assert main(["eval", str(out)]) == 0
    res = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert res["tokenizer"] == {"kind": "byte"} and "loss_per_byte" not in res
    assert main(["train", "lm", "--out", str(tmp_path / "x"), "--bpe-vocab-size", "300", *TINY]) == 2
    assert "--bpe-vocab-size needs --tokenizer bpe" in capsys.readouterr().err


def test_cli_classify_with_bpe_trains_on_train_mails_and_evaluates(tmp_path, small_corpora, trained_texts, capsys):
    out = tmp_path / "cls"
    assert main(["train", "classify", "--out", str(out), "--seq-len", "24", "--steps", "2", "--eval-every", "0",
                 "--tokenizer", "bpe", "--bpe-vocab-size", "300", *TINY]) == 0
    assert trained_texts == [[m.text for m in _small_spam("train")]]
    record = json.loads((out / "config.json").read_text())["tokenizer"]
    assert record["trained_on"] == "spam train split: 40 texts" and (out / "tokenizer.json").is_file()
    capsys.readouterr()
    assert main(["eval", str(out), "--split", "test"]) == 0
    res = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert res["tokenizer"]["kind"] == "bpe" and 0.0 <= res["accuracy"] <= 1.0
    assert len(trained_texts) == 1  # eval loaded the file
