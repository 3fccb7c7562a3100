"""Topic classification: SpamAssassin spam/ham, a task that barely needs word order, beside order-blind baselines.

A byte-level bidirectional encoder (:class:`ropekit.models.EncoderClassifier`, mean pooling over real tokens) reads
the first ``max_len`` bytes of each body and is trained with :func:`ropekit.train.train` on the fixed train split
(``ClassifyTask``; the RoPE model of the first seed is kept as a ``ropekit train`` run under ``models/``). Scored on
the fixed test split: accuracy per encoding and seed, accuracy by body-length quartile, and two baselines on the
same bytes: a logistic regression on byte counts (bag of tokens: no order at all) and the majority class.

Legend: ``ids: [N, max_len]``, ``lengths: [N]`` tokens kept, ``labels: [N]`` 0 ham / 1 spam.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from ropekit.experiments._classify import (
    accuracy_rows,
    bag_of_tokens,
    majority_class,
    score_figure,
    summary_rows,
    train_encoders,
)
from ropekit.experiments._common import (
    CLAIMS_CAPTION,
    Claim,
    Outputs,
    agreement,
    claim_rows,
    compare,
    matplotlib_agg,
    plot_histories,
    protocol,
    style,
)

__all__ = ["ENCODINGS", "NAME", "PRESETS", "TITLE", "run"]

NAME = "classification"
TITLE = "Topic classification (SpamAssassin): a task that barely needs order, with order-blind baselines"

PRESETS: dict[str, dict[str, Any]] = {
    "tiny": {
        "max_len": 32,
        "steps": 4,
        "batch": 8,
        "d_model": 32,
        "n_layers": 1,
        "seeds": 2,
        "lr": 2e-3,
        "init_std": 0.08,
        "max_train": 64,
        "max_test": 64,
    },
    "quick": {
        "max_len": 96,
        "steps": 80,
        "batch": 32,
        "d_model": 64,
        "n_layers": 2,
        "seeds": 3,
        "lr": 2e-3,
        "init_std": 0.08,
        "max_train": None,
        "max_test": None,
    },
    "full": {
        "max_len": 128,
        "steps": 200,
        "batch": 32,
        "d_model": 64,
        "n_layers": 2,
        "seeds": 5,
        "lr": 2e-3,
        "init_std": 0.08,
        "max_train": None,
        "max_test": None,
    },
}
# One GPU: the same protocol as quick with about 100x the parameters (d_model 8x, twice the layers).
PRESETS["gpu"] = {
    **PRESETS["quick"],
    "d_model": 512,
    "n_layers": 4,
    "steps": 400,
    "lr": 1e-3,
    "init_std": 0.02,
    "seeds": 5,
}

ENCODINGS: dict[str, dict[str, Any]] = {
    "RoPE": {"kind": "rope"},
    "sinusoidal": {"kind": "sinusoidal"},
    "learned": {"kind": "learned"},
    "NoPE": {"kind": "none"},
}


@protocol
def run(cfg: dict[str, Any], out: Outputs, *, seed: int) -> dict[str, Any]:
    """Train every encoding for every seed; baselines; CSVs, figures and the verdict."""
    from ropekit.data import ByteTokenizer, classification_dataset, load_spam
    from ropekit.train import ClassifyTask

    tok = ByteTokenizer()
    n = cfg["max_len"]
    train, val, test = (classification_dataset(split, tok, n) for split in ("train", "validation", "test"))
    pick = torch.Generator().manual_seed(12345)  # fixed subsets (tiny preset); the splits are sorted by id
    tr = torch.randperm(train.labels.numel(), generator=pick)[: cfg["max_train"] or train.labels.numel()]
    te = torch.randperm(test.labels.numel(), generator=pick)[: cfg["max_test"] or test.labels.numel()].sort().values
    train = train._replace(ids=train.ids[tr], lengths=train.lengths[tr], labels=train.labels[tr])
    task = ClassifyTask(train, val, vocab_size=tok.vocab_size, n_classes=2, eval_split="validation", max_len=n)
    test_t = (test.ids[te], test.lengths[te], test.labels[te])
    seeds = list(range(seed, seed + cfg["seeds"]))
    correct, hist = train_encoders(task, test_t, ENCODINGS, cfg, seeds, name=NAME, save_dir=out.root / "models")
    train_t = (train.ids, train.lengths, train.labels)
    baselines = {
        "bag of tokens": bag_of_tokens(train_t, test_t, tok.vocab_size),
        "majority class": majority_class(train.labels, test_t[2]),
    }

    full_len = {m.id: len(m.text.encode("utf-8")) for m in load_spam("test")}
    body_len = np.array([full_len[test.mail_ids[i]] for i in te.tolist()])
    edges = np.quantile(body_len, [0.25, 0.5, 0.75])
    bucket = np.searchsorted(edges, body_len, side="right")  # [N] 0..3
    names = [
        f"<= {int(edges[0])}",
        f"{int(edges[0]) + 1}-{int(edges[1])}",
        f"{int(edges[1]) + 1}-{int(edges[2])}",
        f"> {int(edges[2])}",
    ]
    rows, len_rows = accuracy_rows(
        correct, baselines, seeds, bucket, names, bucket_column="length_bucket", max_len=n, steps=cfg["steps"]
    )
    out.write_csv("scores", rows, "Test accuracy per encoding and seed.")
    summary = summary_rows(correct, baselines)
    out.write_csv(
        "summary",
        summary,
        f"Mean and spread over {len(seeds)} seed(s) with both baselines (test split, {len(te)} mails).",
    )
    out.write_csv("by_length", len_rows, "Accuracy per quartile of the untruncated body length (mean over seeds).")
    out.write_csv(
        "history",
        hist,
        "Training loss per step and validation loss/accuracy of every model.\nTidy rows (model, step, split, metric, "
        "value); plotted in the training-curve figure(s).",
    )
    score_figure(
        out,
        correct,
        baselines,
        "scores",
        f"Spam/ham test accuracy per position encoding (bars = mean of {len(seeds)} seed(s), dots = seeds); dashed "
        "lines: logistic regression on byte counts (bag of tokens) and the majority class.\n"
        f"Byte encoder on the first {n} bytes of each body, {cfg['steps']} steps of batch {cfg['batch']}; y axis from "
        "0.",
    )
    plt = matplotlib_agg()
    fig, ax = plt.subplots(figsize=(7.5, 3.8))
    for label in [*ENCODINGS, *baselines]:
        st = style(label)
        ax.plot(
            range(4),
            [r["accuracy"] for r in len_rows if r["model"] == label],
            marker=st["marker"],
            color=st["color"],
            label=label,
        )
    ax.set_xticks(range(4), names)
    ax.set(xlabel="body length in bytes (test quartiles)", ylabel="accuracy", ylim=(0, 1.0))
    ax.legend(fontsize=8, ncol=3)
    out.save_figure(
        fig,
        "by_length",
        "Test accuracy by body-length quartile per encoding and baseline (mean over seeds).\n"
        f"Length = full body bytes; models see at most the first {n} bytes; y axis from 0.",
    )
    plot_histories(
        out,
        hist,
        "training",
        "Training loss (running mean) and validation loss/accuracy per encoding and seed.\n"
        f"ClassifyTask on the SpamAssassin train split; validation split every {max(1, cfg['steps'] // 4)} steps.",
    )

    acc = {r["model"]: r["accuracy"] for r in summary}
    best = max(ENCODINGS, key=lambda k: acc[k])
    findings = [f"{r['model']}: test accuracy {r['over_seeds']}." for r in summary if r["model"] in ENCODINGS]
    findings.append(
        f"Baselines on the same bytes: bag of tokens {acc['bag of tokens']:.3f}, majority class "
        f"{acc['majority class']:.3f}."
    )
    _, t_nope = compare(correct["RoPE"], correct["NoPE"])
    findings.append(
        f"Order barely matters here: RoPE vs NoPE (paired over mails and seeds) {t_nope}; the best "
        f"transformer ({best} {acc[best]:.3f}) vs the order-blind bag of tokens {acc['bag of tokens']:.3f}."
    )
    sanity = [
        (
            f"every encoder beats the majority class ({acc['majority class']:.3f})",
            all(acc[k] > acc["majority class"] for k in ENCODINGS),
        )
    ]
    claims = []
    for other in ("sinusoidal", "learned"):
        _, t = compare(correct["RoPE"], correct[other])
        claims.append(
            Claim(
                f"RoPE matches or beats {other} absolute positions on classification (A = RoPE, B = {other})",
                "Su et al. 2021 (RoFormer)",
                "GLUE after pre-training; CAIL2019-SCM long texts",
                f"{t} (protocol differs: no pre-training, a topic task)",
                "not tested",
            )
        )
    out.write_csv("claims", claim_rows(sanity, claims), CLAIMS_CAPTION)
    published = (
        "Su et al. 2021 (RoFormer) report RoPE matching or beating absolute encodings on classification after "
        "pre-training (GLUE, CAIL2019-SCM). This topic task from scratch is not that protocol: the claims are "
        "shown with their measured differences but not tested; see the order task for a task where position decides."
    )
    scores = [
        {
            "task": "spam (topic)",
            "higher_is_better": True,
            "values": {k: acc[k] for k in ENCODINGS},
            "chance": acc["majority class"],
        }
    ]
    return {"findings": findings, "published": published, "agreement": agreement(sanity, claims), "scores": scores}
