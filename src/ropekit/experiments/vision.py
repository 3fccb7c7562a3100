"""Vision check: 2-D position encodings in a small ViT on real MNIST digits, tested off the training grid.

A :class:`ropekit.nd.vit.TinyViT` (patch 7, mean pooling) is trained at 28x28 (a 4x4 patch grid) on a fixed,
stratified split of MNIST 5k (:func:`ropekit.data.load_mnist_5k`; rows are sorted by label, so the split draws
the same number of images from every class with its own fixed generator). It is then tested

* at larger resolutions: the same images resized bilinearly to 42x42, 56x56, ... (6x6, 8x8 patch grids: more
  patches, same content), with positions extrapolated for the rotary encodings (as RoPE-ViT does; also measured
  with positions interpolated into the training range) and the learned absolute table interpolated bilinearly
  (DeiT-style);
* under a constant shift ``s`` of every patch coordinate at 28x28 (``(row + s, col + s)``): relative encodings
  (axial, mixed, commuting Lie) cannot see it; LieRE and absolute can.

Encodings: learned absolute, axial RoPE (base 100), RoPE-Mixed (learned per-head frequencies), commuting Lie
(learned Cayley basis P and frequencies, STRING-style) and LieRE (dense learned generators). The relativity
defect of every trained rotary layer is measured too.

Legend: ``S`` image side, ``G = S / 7`` patches per side, ``s`` coordinate shift in patches.
"""

from __future__ import annotations

import pathlib
import time
from typing import Any

import torch
import torch.nn.functional as F

from ropekit.experiments._common import Outputs, check_preset, matplotlib_agg, mean_std, progress, verdict

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


def _resize(images: torch.Tensor, size: int) -> torch.Tensor:
    """uint8 ``[N, 28, 28]`` -> float ``[N, 1, size, size]`` in [0, 1] (bilinear)."""
    x = images.float().unsqueeze(1) / 255.0  # [N, 1, 28, 28]
    if size == x.shape[-1]:
        return x
    return F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)


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
    """Accuracy of ``model`` on ``images`` (uint8 ``[N, 28, 28]``) resized to ``size`` with coordinates shifted."""
    model.eval()
    correct = 0
    for start in range(0, images.shape[0], batch_size):
        x = _resize(images[start : start + batch_size], size)
        correct += int(
            (
                model(x, shift=shift, interpolate_positions=interpolate_positions).argmax(-1)
                == labels[start : start + batch_size]
            ).sum()
        )
    return correct / images.shape[0]


def _train(model: torch.nn.Module, images: torch.Tensor, labels: torch.Tensor, cfg: dict[str, Any], seed: int) -> float:
    """AdamW with a one-cycle schedule (10% warm-up, cosine decay); returns the mean loss of the last epoch."""
    gen = torch.Generator().manual_seed(seed)
    x_all = _resize(images, _TRAIN_SIZE)
    bs = cfg["batch_size"]
    steps = cfg["epochs"] * -(-images.shape[0] // bs)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg["lr"], weight_decay=0.05)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg["lr"], total_steps=steps, pct_start=0.1)
    last = []
    for epoch in range(cfg["epochs"]):
        model.train()
        order = torch.randperm(images.shape[0], generator=gen)
        losses = []
        for start in range(0, images.shape[0], bs):
            idx = order[start : start + bs]
            loss = F.cross_entropy(model(x_all[idx]), labels[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            losses.append(loss.item())
        if epoch == cfg["epochs"] - 1:
            last = losses
    return sum(last) / max(len(last), 1)


def _relativity_defects(model: torch.nn.Module, shift: float, seed: int) -> list[float]:
    """Per rotary layer: ``max |S(p + s) - S(p)| / max |S(p)|`` of the attention logits for random q, k."""
    from ropekit.nd.functional import grid_positions

    gen = torch.Generator().manual_seed(seed)
    out = []
    for block in model.blocks:
        if block.rotary is None:
            continue
        heads = block.heads
        dh = block.qkv.out_features // 3 // heads
        q = torch.randn(1, heads, 16, dh, generator=gen)
        k = torch.randn(1, heads, 16, dh, generator=gen)
        pos = grid_positions(4, 4)  # [16, 2]
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


def run(preset: str, out_dir: pathlib.Path, *, seed: int = 0) -> dict[str, Any]:
    """Train one ViT per encoding and seed; measure accuracy per resolution and per shift; write the section."""
    from ropekit.data import load_mnist_5k
    from ropekit.nd.vit import TinyViT

    cfg = check_preset(NAME, PRESETS, preset)
    torch.set_num_threads(1)
    start_time = time.perf_counter()
    out = Outputs(out_dir, NAME)
    images, labels = load_mnist_5k()
    train_idx, test_idx = stratified_split(labels, cfg["train_per_class"], cfg["test_per_class"])
    x_test, y_test = images[test_idx], labels[test_idx]
    runs = [(enc, seed + s) for s in range(cfg["seeds"]) for enc in cfg["encodings"]]
    acc_rows, train_rows, rel_rows = [], [], []
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
        )
        t0 = time.perf_counter()
        loss = _train(model, images[train_idx], labels[train_idx], cfg, run_seed)
        train_s = time.perf_counter() - t0
        train_acc = evaluate(model, images[train_idx], labels[train_idx], size=_TRAIN_SIZE)
        train_rows.append(
            {
                "encoding": enc,
                "seed": run_seed,
                "epochs": cfg["epochs"],
                "n_train": len(train_idx),
                "final_loss": loss,
                "train_accuracy": train_acc,
                "train_time_s": train_s,
                "parameters": sum(p.numel() for p in model.parameters()),
            }
        )
        acc_rows += _accuracy_rows(model, enc, run_seed, x_test, y_test, cfg)
        for shift in [s for s in cfg["shifts"] if s]:
            for layer, defect in enumerate(_relativity_defects(model, float(shift), run_seed)):
                rel_rows.append(
                    {"encoding": enc, "seed": run_seed, "layer": layer, "shift": shift, "relative_score_change": defect}
                )

    out.write_csv(
        "accuracy",
        acc_rows,
        "Test accuracy per encoding, seed, resolution (shift 0) and shift (28x28).\n"
        f"{len(test_idx)} held-out digits ({cfg['test_per_class']} per class), fixed stratified split.",
    )
    out.write_csv(
        "training",
        train_rows,
        "Training summary per encoding and seed.\n"
        f"{len(train_idx)} digits at 28x28, AdamW + one-cycle schedule, {cfg['epochs']} epochs, 1 thread.",
    )
    if rel_rows:
        out.write_csv(
            "relativity",
            rel_rows,
            "Relativity defect of each trained rotary layer.\n"
            "max |S(p+s) - S(p)| / max |S(p)| of attention logits, random q and k, 4x4 grid.",
        )
    _figures(out, acc_rows, cfg)
    findings, agreement = _findings(acc_rows, rel_rows, cfg, len(test_idx))
    published = (
        "Heo et al. 2024 (Rotary Position Embedding for Vision Transformer, ECCV): on ImageNet, ViTs with RoPE-Axial "
        "and RoPE-Mixed keep accuracy better than interpolated learned absolute embeddings when tested above the "
        "training resolution (Mixed best at large sizes). Commuting generators make R(p) relative "
        "(ComRoPE Thm 1; STRING, Schenck et al. 2025, Thm 3.2), so such models are exactly shift invariant; "
        "LieRE (Ostmeier et al. 2024) uses dense generators and is not."
    )
    return out.section(
        title=TITLE,
        findings=findings,
        published=published,
        agreement=agreement,
        config=cfg,
        seed=seed,
        runtime_s=time.perf_counter() - start_time,
    )


def _mean_acc(rows: list[dict[str, Any]], enc: str, test: str, key: str, value: float) -> float:
    vals = [r["accuracy"] for r in rows if r["encoding"] == enc and r["test"] == test and r[key] == value]
    return mean_std(vals)[0]


def _figures(out: Outputs, rows: list[dict[str, Any]], cfg: dict[str, Any]) -> None:
    plt = matplotlib_agg()
    n_seeds = cfg["seeds"]
    for test, key, xlabel, fname, what in (
        (
            "resolution",
            "image_size",
            "test image side (pixels; training: 28)",
            "resolution",
            "Test accuracy vs image side: same digits resized, more 7x7 patches (dashed: rotary positions "
            "interpolated into the training range instead of extrapolated).",
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
        for i, enc in enumerate(cfg["encodings"]):
            ys = [_mean_acc(rows, enc, test, key, x) for x in xs]
            ax.plot(xs, ys, marker="o", color=f"C{i}", label=_LABELS[enc])
            if test == "resolution" and enc in _ROTARY:
                ys = [_mean_acc(rows, enc, "resolution_interpolated", key, x) for x in xs]
                ax.plot(xs, ys, marker="x", ls="--", color=f"C{i}", alpha=0.7)
        if test == "shift":
            ax.set_xscale("symlog", linthresh=1)
        if test == "resolution" and any(e in _ROTARY for e in cfg["encodings"]):
            ax.plot([], [], ls="--", marker="x", color="grey", label="rotary, positions interpolated")
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
    acc_rows: list[dict[str, Any]], rel_rows: list[dict[str, Any]], cfg: dict[str, Any], n_test: int
) -> tuple[list[str], str]:
    encs, res = cfg["encodings"], cfg["resolutions"]
    larger = [s for s in res if s > _TRAIN_SIZE]
    base = {e: _mean_acc(acc_rows, e, "resolution", "image_size", _TRAIN_SIZE) for e in encs}
    up = {e: mean_std([_mean_acc(acc_rows, e, "resolution", "image_size", s) for s in larger])[0] for e in encs}
    findings = [
        "Accuracy at the training size 28x28: "
        + ", ".join(f"{_LABELS[e]} {base[e]:.3f}" for e in encs)
        + f" ({n_test} test digits, {cfg['seeds']} seed(s))."
    ]
    if larger:
        findings.append(
            f"Mean accuracy over larger sizes {larger}: "
            + ", ".join(f"{_LABELS[e]} {up[e]:.3f}" for e in encs)
            + f"; best: {_LABELS[max(encs, key=lambda e: up[e])]}."
        )
    rotary = [e for e in encs if e in _ROTARY]
    if larger and rotary:
        interp = {
            e: mean_std([_mean_acc(acc_rows, e, "resolution_interpolated", "image_size", s) for s in larger])[0]
            for e in rotary
        }
        findings.append(
            "Same larger sizes with rotary positions interpolated (step (G0-1)/(G-1)) instead of extrapolated: "
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
        "Largest accuracy change under a coordinate shift (up to "
        f"{max(shifts)} patches): " + ", ".join(f"{_LABELS[e]} {drift[e]:.3f}" for e in encs) + "."
    )
    defect = {
        e: max([r["relative_score_change"] for r in rel_rows if r["encoding"] == e], default=float("nan")) for e in encs
    }
    measured = [e for e in encs if defect[e] == defect[e]]
    if measured:
        findings.append(
            "Relativity defect of the trained rotary layers, max |S(p+s) - S(p)| / max |S(p)|: "
            + ", ".join(f"{_LABELS[e]} {defect[e]:.1e}" for e in measured)
            + "."
        )

    checks, parts = [], []
    if larger and "absolute" in encs:
        for e in ("axial", "mixed"):
            if e in encs:
                ok = up[e] > up["absolute"]
                checks.append(ok)
                parts.append(
                    f"{_LABELS[e]} {'above' if ok else 'not above'} interpolated absolute at larger sizes "
                    f"({up[e]:.3f} vs {up['absolute']:.3f})"
                )
    one_flip = 1.0 / n_test + 1e-9
    for e in ("axial", "mixed", "lie_commuting"):
        if e in encs:
            ok = drift[e] <= one_flip
            checks.append(ok)
            parts.append(
                f"{_LABELS[e]} {'shift invariant' if ok else 'NOT shift invariant'} (max change {drift[e]:.3f})"
            )
    if "liere" in encs and defect["liere"] == defect["liere"]:
        ok = defect["liere"] > 1e-4
        checks.append(ok)
        parts.append(f"LieRE {'not relative' if ok else 'relative to 1e-4'} (defect {defect['liere']:.1e})")
    agreement = f"{verdict(sum(checks), len(checks))} ({sum(checks)}/{len(checks)} checks): " + "; ".join(parts) + "."
    return findings, agreement
