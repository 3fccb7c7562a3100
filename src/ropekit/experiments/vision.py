"""Vision check: 2-D position encodings in a small ViT on real MNIST digits, tested off the training grid.

A :class:`ropekit.nd.vit.TinyViT` (patch 7, mean pooling) is trained with :func:`ropekit.train.run_steps` (the step
of ``ropekit train``) at 28x28 (a 4x4 patch grid) on a fixed,
stratified split of MNIST 5k (:func:`ropekit.data.load_mnist_5k`; rows are sorted by label, so the split draws
the same number of images from every class with its own fixed generator). It is then tested

* on larger canvases: each 28x28 digit pasted at its trained scale into the centre of a blank 42x42, 56x56, ...
  canvas (6x6, 8x8 patch grids; the offset is a multiple of the patch, so the digit's patches are the training
  patches), which isolates position extrapolation from a change of object scale; positions extrapolated for the
  rotary encodings (as RoPE-ViT does; also measured with positions interpolated into the training range) and the
  learned absolute table interpolated bilinearly (DeiT-style);
* under a constant shift ``s`` of every patch coordinate at 28x28 (``(row + s, col + s)``): relative encodings
  (axial, mixed, commuting Lie) cannot see it; LieRE and absolute can.

Encodings: learned absolute, axial RoPE (base 100), RoPE-Mixed (learned per-head frequencies), commuting Lie
(learned Cayley basis P and frequencies, STRING-style) and LieRE (dense learned generators). The relativity
defect of every trained rotary layer is measured too.

Legend: ``S`` image side, ``G = S / 7`` patches per side, ``s`` coordinate shift in patches.
"""

from __future__ import annotations

import math
import time
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from ropekit.experiments._common import (
    CLAIMS_CAPTION,
    Claim,
    Outputs,
    agreement,
    claim_rows,
    compare,
    history_rows,
    matplotlib_agg,
    plot_histories,
    progress,
    protocol,
    run_device,
    style,
)
from ropekit.train.device import model_device, to_device

__all__ = ["NAME", "PRESETS", "TITLE", "evaluate", "run", "stratified_split"]

NAME = "vision"
TITLE = "Vision: 2-D position encodings in a small ViT on MNIST, tested at larger resolutions and shifted positions"

_ROTARY = ("axial", "mixed", "lie_commuting", "liere")
_ENCODINGS = ["absolute", "axial", "mixed", "lie_commuting", "liere"]
_LABELS = {
    "absolute": "learned absolute (interp.)",
    "axial": "axial RoPE",
    "mixed": "RoPE-Mixed",
    "lie_commuting": "commuting Lie (Cayley P)",
    "liere": "LieRE (dense)",
    "none": "no position",
}

PRESETS: dict[str, dict[str, Any]] = {
    "tiny": {
        "encodings": _ENCODINGS,
        "train_per_class": 30,
        "test_per_class": 8,
        "epochs": 1,
        "batch_size": 50,
        "dim": 32,
        "depth": 1,
        "heads": 2,
        "lr": 3e-3,
        "resolutions": [28, 42, 56],
        "shifts": [0, 1, 4],
        "seeds": 1,
    },
    "quick": {
        "encodings": [*_ENCODINGS, "none"],
        "train_per_class": 400,
        "test_per_class": 100,
        "epochs": 10,
        "batch_size": 128,
        "dim": 64,
        "depth": 2,
        "heads": 4,
        "lr": 3e-3,
        "resolutions": [28, 42, 56],
        "shifts": [0, 1, 2, 4, 8, 16],
        "seeds": 1,
    },
    "full": {
        "encodings": [*_ENCODINGS, "none"],
        "train_per_class": 400,
        "test_per_class": 100,
        "epochs": 30,
        "batch_size": 128,
        "dim": 64,
        "depth": 2,
        "heads": 4,
        "lr": 3e-3,
        "resolutions": [21, 28, 35, 42, 49, 56, 70],
        "shifts": [0, 1, 2, 4, 8, 16, 32],
        "seeds": 3,
    },
}
# One GPU: the same protocol as quick with about 100x the parameters (d_model 8x, twice the layers).
PRESETS["gpu"] = {**PRESETS["quick"], "dim": 384, "depth": 6, "heads": 6, "epochs": 30, "lr": 1e-3, "seeds": 3}

_TRAIN_SIZE, _PATCH, _SPLIT_SEED = 28, 7, 20240  # the split is fixed: independent of the run's seed


def stratified_split(
    labels: torch.Tensor, train_per_class: int, test_per_class: int, *, seed: int = _SPLIT_SEED
) -> tuple[torch.Tensor, torch.Tensor]:
    """Indices ``(train [10 * train_per_class], test [10 * test_per_class])``, disjoint, equal counts per class."""
    gen = torch.Generator().manual_seed(seed)
    train, test = [], []
    for c in range(int(labels.max()) + 1):
        idx = torch.nonzero(labels == c).flatten()
        if train_per_class + test_per_class > idx.numel():
            raise ValueError(
                f"class {c} has {idx.numel()} images, fewer than train_per_class + test_per_class = "
                f"{train_per_class + test_per_class}"
            )
        idx = idx[torch.randperm(idx.numel(), generator=gen)]
        test.append(idx[:test_per_class])
        train.append(idx[test_per_class : test_per_class + train_per_class])
    return torch.cat(train), torch.cat(test)


def paste(images: torch.Tensor, size: int) -> torch.Tensor:
    """uint8 ``[N, 28, 28]`` -> float ``[N, 1, size, size]`` in [0, 1]: the digit unscaled in the centre of a blank
    canvas, at an offset that is a multiple of the patch size (``size - 28`` must be a multiple of ``2 * patch``
    for an exact centre; otherwise the offset rounds down to a patch multiple)."""
    x = images.float().unsqueeze(1) / 255.0  # [N, 1, 28, 28]
    if size == x.shape[-1]:
        return x
    if size < x.shape[-1]:
        raise ValueError(f"canvas size {size} is smaller than the 28x28 digit; use sizes >= 28")
    off = ((size - x.shape[-1]) // 2) // _PATCH * _PATCH
    canvas = torch.zeros(x.shape[0], 1, size, size)
    canvas[..., off : off + x.shape[-2], off : off + x.shape[-1]] = x  # [N, 1, size, size]
    return canvas


@torch.no_grad()
def evaluate(
    model: torch.nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    *,
    size: int,
    shift: float = 0.0,
    interpolate_positions: bool = False,
    batch_size: int = 500,
) -> float:
    """Accuracy of ``model`` on ``images`` (uint8 ``[N, 28, 28]``) pasted on a ``size`` canvas, coordinates shifted."""
    return float(
        correct_per_image(
            model,
            images,
            labels,
            size=size,
            shift=shift,
            interpolate_positions=interpolate_positions,
            batch_size=batch_size,
        ).mean()
    )


@torch.no_grad()
def correct_per_image(
    model: torch.nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    *,
    size: int,
    shift: float = 0.0,
    interpolate_positions: bool = False,
    batch_size: int = 500,
) -> torch.Tensor:
    """``[N]`` float 0/1: whether each image is classified right (the items of the paired bootstrap)."""
    model.eval()
    out = []
    dev = model_device(model)
    for start in range(0, images.shape[0], batch_size):
        x = paste(images[start : start + batch_size], size).to(dev)
        pred = model(x, shift=shift, interpolate_positions=interpolate_positions).argmax(-1).cpu()
        out.append((pred == labels[start : start + batch_size]).float())
    return torch.cat(out)


def _train(
    model: torch.nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    cfg: dict[str, Any],
    seed: int,
    x_val: torch.Tensor,
    y_val: torch.Tensor,
) -> list[dict[str, Any]]:
    """``cfg["epochs"]`` epochs of :func:`ropekit.train.run_steps` (AdamW, 10% warm-up, cosine); returns the history
    (training loss per step, validation accuracy at 28x28 five times)."""
    from ropekit.train import TrainConfig, run_steps

    x_all = paste(images, _TRAIN_SIZE)  # [N, 1, 28, 28]
    bs = cfg["batch_size"]
    per_epoch = -(-images.shape[0] // bs)
    steps = cfg["epochs"] * per_epoch
    train_cfg = TrainConfig(
        steps=steps,
        batch_size=bs,
        lr=cfg["lr"],
        weight_decay=0.05,
        warmup=max(1, steps // 10),
        eval_every=max(1, steps // 5),
        seed=seed,
    )

    def batch_fn(step: int) -> tuple[torch.Tensor, torch.Tensor]:
        epoch, i = divmod(step - 1, per_epoch)  # a pure function of the step: epoch-wise permutations
        order = torch.randperm(images.shape[0], generator=torch.Generator().manual_seed(seed * 1_000_003 + epoch))
        idx = order[i * bs : (i + 1) * bs]
        return x_all[idx], labels[idx]

    def loss_fn(m: torch.nn.Module, batch: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        return F.cross_entropy(m(batch[0]), batch[1])

    def eval_fn(m: torch.nn.Module) -> dict[str, float]:
        return {"accuracy": evaluate(m, x_val, y_val, size=_TRAIN_SIZE)}

    return run_steps(model, loss_fn, batch_fn, train_cfg, eval_fn=eval_fn)


def _relativity_defects(model: torch.nn.Module, shift: float, seed: int) -> list[float]:
    """Per rotary layer: ``max |S(p + s) - S(p)| / max |S(p)|`` of the attention logits for random q, k."""
    from ropekit.nd.functional import grid_positions
    from ropekit.nd.vit import ViTBlock

    gen = torch.Generator().manual_seed(seed)
    out = []
    for block in (m for m in model.modules() if isinstance(m, ViTBlock)):  # a TinyViT's layers, in order
        if block.rotary is None:
            continue
        heads = block.heads
        dh = block.qkv.out_features // 3 // heads
        q = torch.randn(1, heads, 16, dh, generator=gen)
        k = torch.randn(1, heads, 16, dh, generator=gen)
        pos = grid_positions(4, 4)  # [16, 2]
        q, k, pos = to_device((q, k, pos), model_device(block))
        with torch.no_grad():
            q0, k0 = block.rotary(q, k, pos)
            q1, k1 = block.rotary(q, k, pos + shift)
        before, after = q0 @ k0.transpose(-1, -2), q1 @ k1.transpose(-1, -2)  # [1, H, 16, 16]
        out.append(float((after - before).abs().max() / before.abs().max()))
    return out


def _accuracy_rows(
    model: torch.nn.Module,
    enc: str,
    run_seed: int,
    x_test: torch.Tensor,
    y_test: torch.Tensor,
    cfg: dict[str, Any],
) -> list[dict[str, Any]]:
    """One row per (resolution, position mode) at shift 0 and per shift at 28x28."""
    cases = [("resolution", size, 0, False) for size in cfg["resolutions"]]
    if enc in _ROTARY:
        cases += [("resolution_interpolated", size, 0, True) for size in cfg["resolutions"]]
    cases += [("shift", _TRAIN_SIZE, shift, False) for shift in cfg["shifts"]]
    rows = []
    for test, size, shift, interp in cases:
        acc = evaluate(model, x_test, y_test, size=size, shift=float(shift), interpolate_positions=interp)
        rows.append(
            {
                "encoding": enc,
                "seed": run_seed,
                "test": test,
                "image_size": size,
                "grid": size // _PATCH,
                "shift": shift,
                "accuracy": acc,
                "n_test": y_test.numel(),
            }
        )
    return rows


@protocol
def run(cfg: dict[str, Any], out: Outputs, *, seed: int) -> dict[str, Any]:
    """Train one ViT per encoding and seed; measure accuracy per canvas size and per shift; compute the verdict."""
    from ropekit.data import load_mnist_5k
    from ropekit.nd.vit import TinyViT

    images, labels = load_mnist_5k()
    train_idx, test_idx = stratified_split(labels, cfg["train_per_class"], cfg["test_per_class"])
    x_test, y_test = images[test_idx], labels[test_idx]
    runs = [(enc, seed + s) for s in range(cfg["seeds"]) for enc in cfg["encodings"]]
    acc_rows, train_rows, rel_rows, hist = [], [], [], []
    items: dict[tuple[str, int], list[np.ndarray]] = {}  # (encoding, canvas) -> per-seed [N] correctness
    for enc, run_seed in progress(runs, desc=f"{NAME} models", total=len(runs)):
        torch.manual_seed(run_seed)
        model = TinyViT(
            enc,
            image_size=_TRAIN_SIZE,
            patch=_PATCH,
            dim=cfg["dim"],
            depth=cfg["depth"],
            heads=cfg["heads"],
            seed=run_seed,
        ).to(run_device())
        t0 = time.perf_counter()
        history = _train(model, images[train_idx], labels[train_idx], cfg, run_seed, x_test, y_test)
        train_s = time.perf_counter() - t0
        hist += history_rows(_LABELS[enc], history, seed=run_seed)
        losses = [h["loss"] for h in history if "loss" in h]
        train_rows.append(
            {
                "encoding": enc,
                "seed": run_seed,
                "epochs": cfg["epochs"],
                "n_train": len(train_idx),
                "final_loss": float(np.mean(losses[-max(1, len(losses) // cfg["epochs"]) :])),
                "train_accuracy": evaluate(model, images[train_idx], labels[train_idx], size=_TRAIN_SIZE),
                "train_time_s": train_s,
                "parameters": sum(p.numel() for p in model.parameters()),
            }
        )
        acc_rows += _accuracy_rows(model, enc, run_seed, x_test, y_test, cfg)
        for size in cfg["resolutions"]:
            items.setdefault((enc, size), []).append(correct_per_image(model, x_test, y_test, size=size).numpy())
        for shift in [s for s in cfg["shifts"] if s]:
            for layer, defect in enumerate(_relativity_defects(model, float(shift), run_seed)):
                rel_rows.append(
                    {"encoding": enc, "seed": run_seed, "layer": layer, "shift": shift, "relative_score_change": defect}
                )

    out.write_csv(
        "accuracy",
        acc_rows,
        "Test accuracy per encoding, seed, canvas size (shift 0) and shift (28x28).\n"
        f"{len(test_idx)} held-out digits ({cfg['test_per_class']} per class), fixed stratified split.",
    )
    out.write_csv(
        "training",
        train_rows,
        "Training summary per encoding and seed.\n"
        f"{len(train_idx)} digits at 28x28, ropekit.train.run_steps (AdamW, warm-up + cosine), {cfg['epochs']} "
        "epochs, 1 thread.",
    )
    out.write_csv(
        "history",
        hist,
        "Training loss per step and validation accuracy at 28x28 of every ViT.\nTidy rows (model, step, split, "
        "metric, value); plotted in the training-curve figure(s).",
    )
    if rel_rows:
        out.write_csv(
            "relativity",
            rel_rows,
            "Relativity defect of each trained rotary layer.\n"
            "max |S(p+s) - S(p)| / max |S(p)| of attention logits, random q and k, 4x4 grid.",
        )
    _figures(out, acc_rows, cfg)
    plot_histories(
        out,
        hist,
        "curves",
        "Training loss (running mean) and validation accuracy at 28x28 per ViT.\n"
        f"The step function of ropekit.train; {cfg['epochs']} epochs of batch {cfg['batch_size']}.",
    )
    findings, sanity, claims = _findings(
        acc_rows, rel_rows, cfg, len(test_idx), {k: np.stack(v) for k, v in items.items()}
    )
    out.write_csv("claims", claim_rows(sanity, claims), CLAIMS_CAPTION)
    published = (
        "Heo et al. 2024 (Rotary Position Embedding for Vision Transformer, ECCV): on ImageNet, ViTs with RoPE-Axial "
        "and RoPE-Mixed keep accuracy better than interpolated learned absolute embeddings when tested above the "
        "training resolution (Mixed best at large sizes). Commuting generators make R(p) relative "
        "(ComRoPE Thm 1; STRING, Schenck et al. 2025, Thm 3.2), so such models are exactly shift invariant; "
        "LieRE (Ostmeier et al. 2024) uses dense generators and is not."
    )
    encs = cfg["encodings"]
    largest = max(cfg["resolutions"])
    scores = [
        {
            "task": f"MNIST, {largest}x{largest} canvas",
            "higher_is_better": True,
            "chance": 0.1,
            "values": {_LABELS[e]: _mean_acc(acc_rows, e, "resolution", "image_size", largest) for e in encs},
        }
    ]
    return {"findings": findings, "published": published, "agreement": agreement(sanity, claims), "scores": scores}


def _mean_acc(rows: list[dict[str, Any]], enc: str, test: str, key: str, value: float) -> float:
    vals = [r["accuracy"] for r in rows if r["encoding"] == enc and r["test"] == test and r[key] == value]
    return float(np.mean(vals)) if vals else math.nan


def _figures(out: Outputs, rows: list[dict[str, Any]], cfg: dict[str, Any]) -> None:
    plt = matplotlib_agg()
    n_seeds = cfg["seeds"]
    for test, key, xlabel, fname, what in (
        (
            "resolution",
            "image_size",
            "canvas side (pixels; training: 28; the digit stays 28x28)",
            "resolution",
            "Test accuracy vs canvas side: the same digit pasted unscaled on a larger blank canvas, more 7x7 patches "
            "(dashed: rotary positions interpolated into the training range instead of extrapolated).",
        ),
        (
            "shift",
            "shift",
            "shift of every patch coordinate (patches)",
            "shift",
            "Test accuracy at 28x28 vs a constant shift of all patch coordinates.",
        ),
    ):
        fig, ax = plt.subplots(figsize=(6.4, 3.8))
        xs = cfg["resolutions"] if test == "resolution" else cfg["shifts"]
        for enc in cfg["encodings"]:
            st = style(_LABELS[enc])
            ys = [_mean_acc(rows, enc, test, key, x) for x in xs]
            ax.plot(xs, ys, label=_LABELS[enc], **st)
            if test == "resolution" and enc in _ROTARY:
                ys = [_mean_acc(rows, enc, "resolution_interpolated", key, x) for x in xs]
                ax.plot(xs, ys, ls="--", alpha=0.7, color=st["color"], marker=st["marker"], mfc="none")
        if test == "shift":
            ax.set_xscale("symlog", linthresh=1)
        if test == "resolution" and any(e in _ROTARY for e in cfg["encodings"]):
            ax.plot([], [], ls="--", marker="o", mfc="none", color="grey", label="rotary, positions interpolated")
        ax.axhline(0.1, color="grey", lw=0.8, ls=":")
        ax.set(xlabel=xlabel, ylabel="test accuracy", ylim=(0, 1.02))
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
        out.save_figure(
            fig,
            fname,
            f"{what}\nTinyViT trained at 28x28 on the fixed stratified MNIST split, mean "
            f"over {n_seeds} seed(s); dotted line: chance.",
        )


def _findings(
    acc_rows: list[dict[str, Any]],
    rel_rows: list[dict[str, Any]],
    cfg: dict[str, Any],
    n_test: int,
    items: dict[tuple[str, int], np.ndarray],
) -> tuple[list[str], list[tuple[str, bool]], list[Claim]]:
    encs, res = cfg["encodings"], cfg["resolutions"]
    larger = [s for s in res if s > _TRAIN_SIZE]
    base = {e: _mean_acc(acc_rows, e, "resolution", "image_size", _TRAIN_SIZE) for e in encs}
    up = {
        e: float(np.mean([_mean_acc(acc_rows, e, "resolution", "image_size", s) for s in larger]))
        if larger
        else math.nan
        for e in encs
    }
    findings = [
        "Accuracy at the training size 28x28: "
        + ", ".join(f"{_LABELS[e]} {base[e]:.3f}" for e in encs)
        + f" ({n_test} test digits, {cfg['seeds']} seed(s))."
    ]
    if larger:
        findings.append(
            f"Mean accuracy with the digit pasted on larger canvases {larger}: "
            + ", ".join(f"{_LABELS[e]} {up[e]:.3f}" for e in encs)
            + f"; best: {_LABELS[max(encs, key=lambda e: up[e])]}."
        )
    rotary = [e for e in encs if e in _ROTARY]
    if larger and rotary:
        interp = {
            e: float(np.mean([_mean_acc(acc_rows, e, "resolution_interpolated", "image_size", s) for s in larger]))
            for e in rotary
        }
        findings.append(
            "Same canvases with rotary positions interpolated (step (G0-1)/(G-1)) instead of extrapolated: "
            + ", ".join(f"{_LABELS[e]} {interp[e]:.3f} (extrapolated {up[e]:.3f})" for e in rotary)
            + "."
        )
    shifts = cfg["shifts"]
    drift = {
        e: max(
            abs(_mean_acc(acc_rows, e, "shift", "shift", s) - _mean_acc(acc_rows, e, "shift", "shift", 0))
            for s in shifts
        )
        for e in encs
    }
    findings.append(
        f"Largest accuracy change under a coordinate shift (up to {max(shifts)} patches): "
        + ", ".join(f"{_LABELS[e]} {drift[e]:.3f}" for e in encs)
        + "."
    )
    defect = {
        e: max([r["relative_score_change"] for r in rel_rows if r["encoding"] == e], default=math.nan) for e in encs
    }
    measured = [e for e in encs if math.isfinite(defect[e])]
    if measured:
        findings.append(
            "Relativity defect of the trained rotary layers, max |S(p+s) - S(p)| / max |S(p)|: "
            + ", ".join(f"{_LABELS[e]} {defect[e]:.1e}" for e in measured)
            + "."
        )
    min_acc = cfg.get("min_in_dist_acc", 0.8)
    sanity = [(f"every ViT learns the digits at 28x28 (accuracy >= {min_acc})", all(base[e] >= min_acc for e in encs))]
    claims: list[Claim] = []
    if larger and "absolute" in encs:
        L = max(larger)
        for e in ("axial", "mixed"):
            if e in encs:
                o, t = compare(items[(e, L)], items[("absolute", L)])
                claims.append(
                    Claim(
                        f"{_LABELS[e]} keeps accuracy above interpolated absolute at {L}x{L} (A = {_LABELS[e]}, B = "
                        "absolute)",
                        "Heo et al. 2024",
                        "ImageNet-1k trained at 224: RoPE-Axial/Mixed above interpolated APE at higher test "
                        "resolutions",
                        f"{t}; here the digit keeps its scale (only positions extrapolate)",
                        o,
                    )
                )
    one_flip = 1.0 / n_test + 1e-9
    for e in ("axial", "mixed", "lie_commuting"):
        if e in encs:
            claims.append(
                Claim(
                    f"{_LABELS[e]} is exactly shift invariant (commuting generators)",
                    "ComRoPE Thm 1; STRING Thm 3.2",
                    "relative: R(p)^T R(q) = R(q - p)",
                    f"max accuracy change {drift[e]:.3f} (one image = {1 / n_test:.4f})",
                    "agrees" if drift[e] <= one_flip else "disagrees",
                )
            )
    if "liere" in encs and math.isfinite(defect["liere"]):
        claims.append(
            Claim(
                "LieRE (dense generators) is not relative",
                "Ostmeier et al. 2024; ComRoPE",
                "non-commuting generators",
                f"defect {defect['liere']:.1e}",
                "agrees" if defect["liere"] > 1e-4 else "disagrees",
            )
        )
    return findings, sanity, claims
