"""Length extrapolation: a byte-level LM trained at a short context, evaluated up to 8x longer.

One RoPE model is trained on State of the Union speeches (train split) at ``train_len`` and evaluated on the
validation split at 1x .. 8x ``train_len`` with its frequencies rescaled at evaluation (zero-shot) by: none,
PI (linear), NTK, dynamic NTK, YaRN and Llama 3. Static factors are ``eval_len / train_len`` (at least 1),
so at 1x every method is plain RoPE; dynamic NTK rescales by itself. Then each method is fine-tuned for a few
steps at ``2 * train_len`` with factor 2 and evaluated again (factor ``max(2, eval_len / train_len)``). ALiBi, xPos
and NoPE models are trained the same way (no scaling) as reference rows.

Metric: mean next-byte cross-entropy (nats/byte) over all positions of non-overlapping validation windows.

Legend: ``T`` training length, ``L`` evaluation length, ``s = L / T``.
"""

from __future__ import annotations

import copy
import math
import pathlib
import time
from typing import Any

import torch
import torch.nn.functional as F

from ropekit.experiments._common import Outputs, check_preset, matplotlib_agg, mean_std, seed_everything, verdict
from ropekit.experiments._nets import PosSpec, TinyLM, train_steps

__all__ = ["NAME", "PRESETS", "SCALINGS", "TITLE", "run", "scaled_parameters"]

NAME = "extrapolation"
TITLE = "Length extrapolation: validation loss up to 8x the training length"

PRESETS: dict[str, dict[str, Any]] = {
    "tiny": {
        "train_len": 16,
        "multiples": [1, 2, 4],
        "steps": 6,
        "finetune_steps": 3,
        "batch": 8,
        "d_model": 32,
        "n_layers": 1,
        "eval_tokens": 1024,
        "seeds": 1,
        "lr": 3e-3,
    },
    "quick": {
        "train_len": 64,
        "multiples": [1, 2, 4, 8],
        "steps": 220,
        "finetune_steps": 30,
        "batch": 32,
        "d_model": 64,
        "n_layers": 2,
        "eval_tokens": 4096,
        "seeds": 1,
        "lr": 3e-3,
    },
    "full": {  # sized for about 15 min on one thread here (the former 2000-step d=128 preset needed ~14 h)
        "train_len": 64,
        "multiples": [1, 2, 4, 8],
        "steps": 500,
        "finetune_steps": 60,
        "batch": 32,
        "d_model": 64,
        "n_layers": 2,
        "eval_tokens": 8192,
        "seeds": 3,
        "lr": 3e-3,
    },
}

SCALINGS = ("none", "PI", "NTK", "dynamic NTK", "YaRN", "Llama 3")
REFERENCE_KINDS = ("alibi", "xpos", "nope")
_LABELS = {"alibi": "ALiBi", "xpos": "xPos", "nope": "NoPE"}
_THETA = 10000.0


def scaled_parameters(method: str, factor: float, original_len: int) -> tuple[dict[str, Any], int]:
    """``(rope_parameters, max_position_embeddings)`` for one scaling method at ``factor`` over ``original_len``."""
    base = {"rope_theta": _THETA}
    if method == "none" or (factor <= 1.0 and method != "dynamic NTK"):
        return {**base, "rope_type": "default"}, original_len
    if method == "PI":
        return {**base, "rope_type": "linear", "factor": factor}, original_len
    if method == "NTK":
        return {**base, "rope_type": "ntk", "factor": factor}, original_len
    if method == "dynamic NTK":  # factor 1 would make it plain RoPE; the HF rule uses the current length
        return {**base, "rope_type": "dynamic", "factor": max(factor, 1.0)}, original_len
    if method == "YaRN":
        return {**base, "rope_type": "yarn", "factor": factor, "original_max_position_embeddings": original_len}, int(
            original_len * factor
        )
    if method == "Llama 3":
        params = {
            **base,
            "rope_type": "llama3",
            "factor": factor,
            "low_freq_factor": 1.0,
            "high_freq_factor": 4.0,
            "original_max_position_embeddings": original_len,
        }
        return params, int(original_len * factor)
    raise ValueError(f"unknown scaling method {method!r}; expected one of {SCALINGS}")


def _lm_loss(model: TinyLM, batch: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
    x, y = batch
    return F.cross_entropy(model(x).flatten(0, 1), y.flatten())


@torch.no_grad()
def _eval_loss(model: TinyLM, stream: torch.Tensor, length: int, n_tokens: int) -> float:
    """Mean nats/byte over ``n_tokens // length`` non-overlapping windows from the start of ``stream``."""
    n = max(1, n_tokens // length)
    x = stream[: n * length].view(n, length)  # [n, L]
    y = stream[1 : n * length + 1].view(n, length)
    total = 0.0
    for i in range(0, n, 8):
        logits = model(x[i : i + 8], seq_len=length)
        total += float(F.cross_entropy(logits.flatten(0, 1), y[i : i + 8].flatten(), reduction="sum"))
    return total / (n * length)


def _batches(stream: torch.Tensor, length: int, batch: int, gen: torch.Generator):
    from ropekit.data import lm_batches

    return lm_batches(stream, length, batch, generator=gen)


def run(preset: str, out_dir: pathlib.Path, *, seed: int = 0) -> dict[str, Any]:
    """Train, rescale, fine-tune, evaluate; write CSV, figures and the section."""
    cfg = check_preset(NAME, PRESETS, preset)
    torch.set_num_threads(1)
    start = time.perf_counter()
    from ropekit.data import ByteTokenizer, lm_splits

    tok = ByteTokenizer()
    splits = lm_splits(tok)
    T = cfg["train_len"]
    lengths = [T * m for m in cfg["multiples"]]
    rows: list[dict[str, Any]] = []

    def make(kind: str) -> TinyLM:
        return TinyLM(tok.vocab_size, pos=PosSpec(kind=kind), d_model=cfg["d_model"], n_layers=cfg["n_layers"])

    def evaluate(model: TinyLM, label: str, method: str, kind: str, stage: str, s: int, min_factor: float) -> None:
        for L in lengths:
            if kind in ("rope", "xpos"):
                factor = max(min_factor, L / T)
                params, max_pos = scaled_parameters(method, factor, T)
                model.body.set_rope_parameters(params, max_pos)
            loss = _eval_loss(model, splits.validation, L, cfg["eval_tokens"])
            rows.append(
                {
                    "model": label,
                    "position_encoding": kind,
                    "scaling": method,
                    "stage": stage,
                    "seed": s,
                    "train_len": T,
                    "eval_len": L,
                    "multiple": L / T,
                    "loss_nats_per_byte": loss,
                }
            )

    for s in range(seed, seed + cfg["seeds"]):
        for kind in ("rope", *REFERENCE_KINDS):
            seed_everything(s)
            gen = torch.Generator().manual_seed(s)
            model = make(kind)
            train_steps(
                model,
                _lm_loss,
                _batches(splits.train, T, cfg["batch"], gen),
                steps=cfg["steps"],
                lr=cfg["lr"],
                desc=f"{NAME}: train {kind} seed {s}",
            )
            methods = SCALINGS if kind == "rope" else ("none",)
            for method in methods:
                label = f"RoPE + {method}" if kind == "rope" else _LABELS[kind]
                evaluate(model, label, method, kind, "zero-shot", s, 1.0)
                tuned = copy.deepcopy(model)
                if kind == "rope":
                    params, max_pos = scaled_parameters(method, 2.0, T)
                    tuned.body.set_rope_parameters(params, max_pos)
                train_steps(
                    tuned,
                    _lm_loss,
                    _batches(splits.train, 2 * T, max(1, cfg["batch"] // 2), gen),
                    steps=cfg["finetune_steps"],
                    lr=cfg["lr"] / 3,
                    desc=f"{NAME}: fine-tune {label}",
                )
                evaluate(tuned, label, method, kind, "fine-tuned", s, 2.0 if kind == "rope" else 1.0)

    out = Outputs(out_dir, NAME)
    out.write_csv("loss", rows, "Validation nats/byte per model, scaling, stage, seed and evaluation length.")
    summary = _summarise(rows)
    out.write_csv(
        "summary",
        [r for r in summary if r["multiple"] == max(cfg["multiples"])],
        f"Mean over seeds at {max(cfg['multiples'])}x the training length.",
    )
    plt = matplotlib_agg()
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.2), sharey=True)
    labels = sorted({r["model"] for r in summary}, key=lambda m: (not m.startswith("RoPE"), m))
    for ax, stage in zip(axes, ("zero-shot", "fine-tuned"), strict=True):
        for label in labels:
            pts = sorted((r["eval_len"], r["mean"]) for r in summary if r["model"] == label and r["stage"] == stage)
            style = "-" if label.startswith("RoPE") else "--"
            ax.plot([p[0] for p in pts], [p[1] for p in pts], style, marker="o", ms=3, label=label)
        ax.axvline(T, color="grey", ls=":", lw=0.8)
        if stage == "fine-tuned":
            ax.axvline(2 * T, color="grey", ls="-.", lw=0.8)
        ax.set_xscale("log", base=2)
        ax.minorticks_off()
        ax.set_xticks(lengths, [str(x) for x in lengths])
        ax.set(xlabel="evaluation length (bytes)", title=f"{stage} (trained at {T})")
    axes[0].set_ylabel("validation loss (nats/byte)")
    axes[1].legend(fontsize=7, ncol=2)
    finite = [r["mean"] for r in summary if math.isfinite(r["mean"])]
    if finite:
        lo, hi = min(finite), sorted(finite)[int(0.9 * (len(finite) - 1))]
        axes[0].set_ylim(lo - 0.1, hi + 0.4)
    out.save_figure(
        fig,
        "loss_vs_length",
        f"Validation loss versus evaluation length for a byte LM trained at {T} "
        "(left: zero-shot; right: after a short fine-tune at 2x).\n"
        f"SOTU validation split, {cfg['eval_tokens']} bytes per point, mean over {cfg['seeds']} seed(s); "
        "dotted line = training length.",
    )

    findings, checks = _findings(summary, T, max(cfg["multiples"]))
    n_ok = sum(checks.values())
    agreement = f"{verdict(n_ok, len(checks))}: " + "; ".join(f"{k}: {'yes' if v else 'no'}" for k, v in checks.items())
    published = (
        "Chen et al. 2023 (PI): without interpolation perplexity explodes beyond the training length; PI "
        "plus a short fine-tune extends it. Peng et al. 2023 (YaRN) and bloc97's NTK-aware scaling: better "
        "zero-shot than PI. Press et al. 2022: ALiBi extrapolates. REFERENCE.md section 4's CPU pilot found "
        "NTK best and PI worse than no scaling zero-shot at 4x."
    )
    return out.section(
        title=TITLE,
        findings=findings,
        published=published,
        agreement=agreement,
        config=cfg,
        seed=seed,
        runtime_s=time.perf_counter() - start,
    )


def _summarise(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    groups: dict[tuple, list[float]] = {}
    for r in rows:
        groups.setdefault((r["model"], r["stage"], r["eval_len"], r["multiple"]), []).append(r["loss_nats_per_byte"])
    out = []
    for (model, stage, L, mult), vals in sorted(groups.items()):
        m, sd = mean_std(vals)
        out.append(
            {
                "model": model,
                "stage": stage,
                "eval_len": L,
                "multiple": mult,
                "mean": m,
                "std": sd,
                "n_seeds": len(vals),
            }
        )
    return out


def _findings(summary: list[dict[str, Any]], T: int, max_mult: int) -> tuple[list[str], dict[str, bool]]:
    def at(model: str, stage: str, mult: float) -> float:
        return next(
            (r["mean"] for r in summary if r["model"] == model and r["stage"] == stage and r["multiple"] == mult),
            math.nan,
        )

    findings = []
    for stage in ("zero-shot", "fine-tuned"):
        ranked = sorted(((at(m, stage, max_mult), m) for m in {r["model"] for r in summary}), key=lambda t: t[0])
        findings.append(
            f"{stage} at {max_mult}x ({T * max_mult} bytes), nats/byte: "
            + ", ".join(f"{m} {v:.3f}" for v, m in ranked)
            + "."
        )
    none1, none8 = at("RoPE + none", "zero-shot", 1), at("RoPE + none", "zero-shot", max_mult)
    findings.append(f"Unscaled RoPE: {none1:.3f} at 1x, {none8:.3f} at {max_mult}x (change {none8 - none1:+.3f}).")
    checks = {
        f"unscaled RoPE degrades beyond the training length ({none1:.2f} -> {none8:.2f})": none8 > none1 + 0.05,
        "PI after fine-tuning beats unscaled RoPE after the same fine-tuning at the longest length": at(
            "RoPE + PI", "fine-tuned", max_mult
        )
        < at("RoPE + none", "fine-tuned", max_mult),
        "zero-shot NTK or YaRN beat zero-shot PI at the longest length": min(
            at("RoPE + NTK", "zero-shot", max_mult), at("RoPE + YaRN", "zero-shot", max_mult)
        )
        < at("RoPE + PI", "zero-shot", max_mult),
        "ALiBi degrades less than unscaled RoPE from 1x to the longest length": at("ALiBi", "zero-shot", max_mult)
        - at("ALiBi", "zero-shot", 1)
        < none8 - none1,
    }
    return findings, checks
