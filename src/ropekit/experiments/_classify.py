"""What the two classification experiments share: encoder training through :func:`ropekit.train.train` (so a model
an experiment trains is a ``ropekit train`` run that ``ropekit eval`` loads), per-item test correctness, the
bag-of-tokens and majority-class baselines, and the score figure.

Legend: ``ids: [N, T]`` right-padded token ids, ``lengths: [N]``, ``labels: [N]``, ``correct: [S, N]`` (seeds x
test items) 0/1.
"""

from __future__ import annotations

import pathlib
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from ropekit.experiments._common import (
    Outputs,
    history_rows,
    matplotlib_agg,
    mean_spread,
    run_device,
    style,
    train_config,
)
from ropekit.models import BagOfTokensClassifier, ModelConfig
from ropekit.train import TrainConfig, run_steps, train
from ropekit.train.device import model_device, to_device

__all__ = [
    "accuracy_rows",
    "bag_of_tokens",
    "majority_class",
    "predict",
    "score_figure",
    "summary_rows",
    "train_encoders",
]


@torch.no_grad()
def predict(
    model: torch.nn.Module,
    ids: torch.Tensor,
    lengths: torch.Tensor,
    positions_of: Callable[[torch.Tensor], torch.Tensor | None] | None = None,
) -> torch.Tensor:
    """Predicted classes ``[N]`` of an :class:`~ropekit.models.EncoderClassifier`; ``positions_of``: the model's
    positions ``[B, T]`` from its ids ``[B, T]`` (e.g. packed sentence positions), ``None`` for the default."""
    model.eval()
    out = []
    ids, lengths = to_device((ids, lengths), model_device(model))
    for i in range(0, ids.shape[0], 64):
        ln = lengths[i : i + 64]
        x = ids[i : i + 64, : int(ln.max())]
        out.append((model(x, ln) if positions_of is None else model(x, ln, positions_of(x))).argmax(-1))
    return torch.cat(out).cpu()


def train_encoders(
    task: Any,
    test: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
    encodings: dict[str, dict[str, Any]],
    cfg: dict[str, Any],
    seeds: list[int],
    *,
    name: str,
    save_dir: pathlib.Path | None = None,
    positions_of: Callable[[torch.Tensor], torch.Tensor | None] | None = None,
) -> tuple[dict[str, np.ndarray], list[dict[str, Any]]]:
    """Train one encoder per encoding and seed with :func:`ropekit.train.train` on ``task`` (every encoding of a seed
    sees the same batches: they are a function of ``(seed, step)``); returns ``({label: correct [S, N]}, history
    rows)``. ``save_dir``: the first encoding's first seed is saved there as a ``ropekit train`` run.
    ``positions_of``: positions from ids for the test predictions (the task passes the same ones in training)."""
    ids, lengths, labels = test
    correct: dict[str, list[np.ndarray]] = {label: [] for label in encodings}
    hist: list[dict[str, Any]] = []
    for label, pe in encodings.items():
        for s in seeds:
            model_cfg = ModelConfig(
                d_model=cfg["d_model"],
                n_layers=cfg["n_layers"],
                max_len=cfg["max_len"],
                pe=pe,
                init_std=cfg["init_std"],
            )
            train_cfg = train_config(cfg["steps"], cfg["batch"], cfg["lr"], s, evals=4)
            out_dir = (
                save_dir / f"{name}-{pe['kind']}"
                if save_dir is not None and s == seeds[0] and label == next(iter(encodings))
                else None
            )
            result = train(
                model_cfg,
                task,
                train_cfg,
                out_dir=out_dir,
                progress=False,
                log_evals=False,
                overwrite=True,
                device=run_device(),
            )
            hist += history_rows(label, result.history, seed=s)
            predicted = predict(result.model, ids, lengths, positions_of)
            correct[label].append((predicted == labels).numpy().astype(np.float64))
    return {k: np.stack(v) for k, v in correct.items()}, hist


def bag_of_tokens(
    train: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
    test: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
    vocab_size: int,
    *,
    steps: int = 300,
    seed: int = 0,
) -> np.ndarray:
    """Logistic regression on token counts of the same tokens the encoders see (order-blind,
    :class:`ropekit.models.BagOfTokensClassifier`), full-batch steps of :func:`ropekit.train.run_steps`: test
    correctness ``[N]``."""
    model = BagOfTokensClassifier(vocab_size, int(train[2].max()) + 1).fit_scaling(train[0], train[1])
    cfg = TrainConfig(steps=steps, batch_size=int(train[2].numel()), lr=0.05, weight_decay=1e-2, warmup=10, seed=seed)
    run_steps(model, lambda m, b: F.cross_entropy(m(b[0], b[1]), b[2]), lambda step: train, cfg)
    with torch.no_grad():
        return (model(test[0], test[1]).argmax(-1) == test[2]).numpy().astype(np.float64)


def majority_class(train_labels: torch.Tensor, test_labels: torch.Tensor) -> np.ndarray:
    """Correctness ``[N]`` of always predicting the most frequent training class."""
    return (test_labels == torch.bincount(train_labels).argmax()).numpy().astype(np.float64)


def score_figure(
    out: Outputs, correct: dict[str, np.ndarray], baselines: dict[str, np.ndarray], figure: str, caption: str
) -> None:
    """Bars = mean test accuracy per encoding (dots = seeds), baselines as horizontal lines; y axis from 0."""
    plt = matplotlib_agg()
    fig, ax = plt.subplots(figsize=(7.5, 3.8))
    labels = list(correct)
    for i, label in enumerate(labels):
        per_seed = correct[label].mean(axis=1)
        ax.bar(i, per_seed.mean(), color=style(label)["color"], alpha=0.8)
        ax.plot([i] * per_seed.size, per_seed, "k.", ms=5)
    for label, c in baselines.items():
        ax.axhline(float(c.mean()), ls="--", lw=1, color=style(label)["color"], label=f"{label} {c.mean():.3f}")
    ax.set_xticks(range(len(labels)), labels, fontsize=8)
    ax.set(ylabel="test accuracy", ylim=(0.0, 1.0))
    ax.legend(fontsize=8, loc="lower right")
    out.save_figure(fig, figure, caption)


def summary_rows(correct: dict[str, np.ndarray], baselines: dict[str, np.ndarray]) -> list[dict[str, Any]]:
    """One row per encoding / baseline: mean accuracy, ``mean +- std (n)`` over seeds, per-seed min and max."""
    rows = []
    for label, c in {**correct, **baselines}.items():
        per_seed = c.mean(axis=-1) if c.ndim == 2 else np.array([c.mean()])
        rows.append(
            {
                "model": label,
                "accuracy": float(per_seed.mean()),
                "over_seeds": mean_spread(per_seed.tolist()) if c.ndim == 2 else "deterministic baseline",
                "seed_min": float(per_seed.min()),
                "seed_max": float(per_seed.max()),
                "n_test": int(c.shape[-1]),
            }
        )
    return rows


def accuracy_rows(
    correct: dict[str, np.ndarray],
    baselines: dict[str, np.ndarray],
    seeds: list[int],
    bucket: np.ndarray,
    names: list[str],
    *,
    bucket_column: str,
    **extra: Any,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The per-seed score rows and the per-length-bucket rows of a classification section.

    ``bucket: [N]`` the length bucket of each test item (an index into ``names``); ``extra``: constant columns of
    the score rows (e.g. the preset's steps).
    """
    scores = [
        {"model": label, "seed": s, "accuracy": float(c[i].mean()), "n_test": int(c.shape[1]), **extra}
        for label, c in correct.items()
        for i, s in enumerate(seeds)
    ]
    by_length = [
        {
            "model": label,
            bucket_column: names[b],
            "bucket_index": b,
            "n": int((bucket == b).sum()),
            "accuracy": float(c[..., bucket == b].mean()),
        }
        for label, c in {**correct, **baselines}.items()
        for b in range(len(names))
    ]
    return scores, by_length
