"""Passkey retrieval (Mohtashami and Jaggi 2023) with State of the Union filler: zero-shot scaling and short
fine-tunes at 2x and 4x per scaling method.

A byte-level RoPE :class:`ropekit.models.DecoderLM` is trained (:func:`ropekit.train.run_steps`) on passkey prompts
(:func:`ropekit.data.passkey_sample`, filler from the SOTU train split, key at a uniform random depth) of
``train_len`` bytes: loss on the five answer digits plus ``lm_weight`` times next-byte prediction of the prompt.
Tested on prompts with validation-split filler at every length and depth:

* zero-shot: the trained weights under none, PI, NTK, dynamic NTK (factor 1, base grows with the length) and YaRN,
  static factor ``length / train_len``; and under two position remappings (:mod:`ropekit.remap`, the ``pe`` swapped
  with :func:`ropekit.models.with_position_encoding`, same RoPE frequencies), whose settings are fixed from the
  training length ``T`` alone, the same at every test length: Self-Extend (Jin et al. 2024) with neighbour window
  ``T // 2`` and group 8, so the largest remapped distance at 4x, about ``(4T - T/2) / 8 + T/2 = 15T/16``, stays
  below ``T`` (the paper's rule for choosing them); ReRoPE (Su 2023) clipping distances at ``T // 2``. They are
  tested on the first ``remap_samples`` prompts of each cell (their logits are materialised ``[L, L]`` per head,
  several times the CPU cost of the other rows' fused attention; quick: 4 of 20);
* fine-tuned: for each target ``s`` in ``finetune_multiples`` and each of none / PI / YaRN, the weights configured
  with factor ``s`` and fine-tuned for ``finetune_steps`` on prompts of ``s * train_len`` bytes (same prompts for
  every method), then tested at every length.

Metric: a prompt is retrieved when all five digits are the argmax given the prompt and the earlier digits (teacher
forcing); digit accuracy too (chance 0.1). The rotary length is the model input's own length (prompt + 4 digits).

Legend: ``ids: [B, L + 5]`` prompt of ``L`` bytes then the answer (space + 5 digits); the model reads ``ids[:, :-1]``.
"""

from __future__ import annotations

import random
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
    protocol,
    style,
    train_config,
)
from ropekit.experiments._lm import scaled_pe, swap_pe, train_model, zero_shot_pe
from ropekit.models import ModelConfig
from ropekit.models.io import model_config
from ropekit.train.device import model_device

__all__ = ["NAME", "PRESETS", "REMAPS", "SCALINGS", "TITLE", "ZERO_SHOT", "remap_pe", "run"]

NAME = "passkey"
TITLE = "Passkey retrieval by length and depth: zero-shot scaling and short fine-tunes at 2x and 4x"

PRESETS: dict[str, dict[str, Any]] = {
    "tiny": {
        "train_len": 288,
        "multiples": [1, 2],
        "finetune_multiples": [2],
        "depths": [0.0, 1.0],
        "steps": 3,
        "finetune_steps": 2,
        "batch": 2,
        "d_model": 32,
        "n_layers": 1,
        "samples": 4,
        "remap_samples": 2,
        "lr": 3e-3,
        "init_std": 0.08,
        "lm_weight": 0.1,
    },
    "quick": {
        "train_len": 288,
        "multiples": [1, 2, 4],
        "finetune_multiples": [2, 4],
        "depths": [0.0, 0.25, 0.5, 0.75, 1.0],
        "steps": 1000,
        "finetune_steps": 60,
        "batch": 8,
        "d_model": 64,
        "n_layers": 2,
        "samples": 20,
        "remap_samples": 4,
        "lr": 3e-3,
        "init_std": 0.08,
        "lm_weight": 0.1,
    },
    "full": {
        "train_len": 288,
        "multiples": [1, 2, 4],
        "finetune_multiples": [2, 4],
        "depths": [0.0, 0.25, 0.5, 0.75, 1.0],
        "steps": 2000,
        "finetune_steps": 150,
        "batch": 8,
        "d_model": 64,
        "n_layers": 2,
        "samples": 40,
        "remap_samples": 40,
        "lr": 3e-3,
        "init_std": 0.08,
        "lm_weight": 0.1,
    },
}
# One GPU: the same protocol as quick with about 100x the parameters (d_model 8x, twice the layers).
PRESETS["gpu"] = {
    **PRESETS["quick"],
    "d_model": 512,
    "n_layers": 4,
    "steps": 3000,
    "finetune_steps": 200,
    "lr": 1e-3,
    "init_std": 0.02,
    "samples": 40,
    "remap_samples": 40,
}

SCALINGS = ("none", "PI", "NTK", "dynamic NTK", "YaRN")
REMAPS = ("Self-Extend", "ReRoPE")
ZERO_SHOT = (*SCALINGS, *REMAPS)
FINETUNED = ("none", "PI", "YaRN")
SELF_EXTEND_GROUP = 8


def remap_pe(method: str, train_len: int) -> dict[str, Any]:
    """The ``pe`` spec of remapping ``method`` (one of :data:`REMAPS`) for the unscaled RoPE model trained at
    ``train_len``: its own ``rope_parameters``, window ``train_len // 2``; Self-Extend's group 8 (module docstring)."""
    rope = scaled_pe("none", 1.0, train_len)
    window = max(1, train_len // 2)
    common = {"rope_parameters": rope["rope_parameters"], "max_position_embeddings": rope["max_position_embeddings"]}
    if method == "Self-Extend":
        return {"kind": "self_extend", "group": SELF_EXTEND_GROUP, "window": window, **common}
    if method == "ReRoPE":
        return {"kind": "rerope", "window": window, **common}
    raise ValueError(f"unknown remapping {method!r}; expected one of {REMAPS}")


def _examples(filler: torch.Tensor, length: int, depths: list[float], rng: random.Random) -> tuple[torch.Tensor, int]:
    """``(ids [len(depths), length + n_answer], n_answer)``: one prompt per depth followed by its answer."""
    from ropekit.data import passkey_sample

    samples = [passkey_sample(filler, length, d, rng) for d in depths]
    return torch.stack([torch.cat([s.prompt_ids, s.answer_ids]) for s in samples]), int(samples[0].answer_ids.numel())


def _batch_fn(filler: torch.Tensor, length: int, batch: int, seed: int) -> Any:
    def make(step: int) -> tuple[torch.Tensor, int]:
        rng = random.Random(seed * 1_000_003 + step)  # a pure function of (seed, step): paired fine-tunes
        return _examples(filler, length, [rng.random() for _ in range(batch)], rng)

    return make


def _loss_fn(lm_weight: float) -> Any:
    def loss(model: torch.nn.Module, batch: tuple[torch.Tensor, int]) -> torch.Tensor:
        ids, n_ans = batch
        per_token = F.cross_entropy(model(ids[:, :-1]).transpose(1, 2), ids[:, 1:], reduction="none")  # [B, L + 5]
        return per_token[:, -(n_ans - 1) :].mean() + lm_weight * per_token.mean()  # digits (the space is prompt)

    return loss


@torch.no_grad()
def _retrieval(model: torch.nn.Module, ids: torch.Tensor, n_ans: int) -> tuple[np.ndarray, np.ndarray]:
    """Per prompt: all digits right (0/1) and digit accuracy, ``[B]`` each."""
    model.eval()
    dev = model_device(model)
    logits = torch.cat([model(ids[i : i + 16, :-1].to(dev)) for i in range(0, ids.shape[0], 16)])  # L + 4 bytes
    pred, gold = logits[:, -(n_ans - 1) :].argmax(-1).cpu(), ids[:, -(n_ans - 1) :]  # [B, 5]
    hit = pred == gold
    return hit.all(dim=1).double().numpy(), hit.double().mean(dim=1).numpy()


@protocol
def run(cfg: dict[str, Any], out: Outputs, *, seed: int) -> dict[str, Any]:
    """Train one retrieval model, fine-tune it per scaling, test every length, depth and scaling."""
    from ropekit.data import ByteTokenizer, lm_splits

    tok = ByteTokenizer()
    splits = lm_splits(tok)
    train_fill = splits.train[splits.train != tok.eos_id]  # eos separators would be odd inside one prompt
    val_fill = splits.validation[splits.validation != tok.eos_id]
    T = cfg["train_len"]
    lengths = [round(T * m) for m in cfg["multiples"]]
    loss_fn = _loss_fn(cfg["lm_weight"])
    model_cfg = ModelConfig(
        task="lm",
        vocab_size=tok.vocab_size,
        d_model=cfg["d_model"],
        n_layers=cfg["n_layers"],
        max_len=T,
        pe=scaled_pe("none", 1.0, T),
        init_std=cfg["init_std"],
    )
    train_cfg = train_config(cfg["steps"], cfg["batch"], cfg["lr"], seed, warmup_div=20)
    model, history = train_model(
        model_cfg, loss_fn, _batch_fn(train_fill, T, cfg["batch"], seed), train_cfg, desc=f"{NAME}: train"
    )
    hist = history_rows("RoPE + none", history, stage="train")

    eval_rng = random.Random(10_000 + seed)
    tests = {L: [_examples(val_fill, L, cfg["depths"], eval_rng) for _ in range(cfg["samples"])] for L in lengths}
    results: dict[
        tuple[str, str, int], tuple[np.ndarray, np.ndarray]
    ] = {}  # (method, stage, L) -> [samples, depths] x2

    def measure(m: torch.nn.Module, method: str, stage: str, L: int, samples: int | None = None) -> None:
        n = cfg["samples"] if samples is None else samples
        ids = torch.cat([t[0] for t in tests[L][:n]])  # [n * depths, L + 6]
        hit, digits = _retrieval(m, ids, tests[L][0][1])
        results[(method, stage, L)] = (hit.reshape(n, -1), digits.reshape(n, -1))

    for method in SCALINGS:
        for L in lengths:
            measure(swap_pe(model, zero_shot_pe(method, L, T)), method, "zero-shot", L)
    n_remap = min(cfg["remap_samples"], cfg["samples"])  # the first prompts of each cell: T x T logits cost more
    for method in REMAPS:  # settings from T only: one swapped model for every length
        remapped = swap_pe(model, remap_pe(method, T))
        for L in lengths:
            measure(remapped, method, "zero-shot", L, n_remap)
    for target in cfg["finetune_multiples"]:
        ft_batch = max(1, cfg["batch"] // target)  # same bytes per step as training
        ft_cfg = train_config(
            cfg["finetune_steps"], ft_batch, cfg["lr"] / 3, seed
        )
        batches = _batch_fn(train_fill, target * T, ft_batch, 20_000 + seed)
        for method in FINETUNED:
            cfg_s = ModelConfig(**{**model_config(model).to_dict(), "pe": scaled_pe(method, float(target), T)})
            tuned, h = train_model(
                cfg_s, loss_fn, batches, ft_cfg, init=model, desc=f"{NAME}: fine-tune {method} {target}x"
            )
            hist += history_rows(f"RoPE + {method}", h, stage=f"fine-tune {target}x")
            for L in lengths:
                measure(tuned, method, f"fine-tuned at {target}x", L)

    rows = [
        {
            "scaling": method,
            "stage": stage,
            "length": L,
            "multiple": L / T,
            "depth": d,
            "prompts": hit.shape[0],
            "retrieval_accuracy": float(hit[:, j].mean()),
            "digit_accuracy": float(dig[:, j].mean()),
            "train_len": T,
        }
        for (method, stage, L), (hit, dig) in results.items()
        for j, d in enumerate(cfg["depths"])
    ]
    out.write_csv(
        "accuracy",
        rows,
        f"Retrieval and digit accuracy per scaling (or remapping: Self-Extend, ReRoPE), stage, prompt length and key "
        f"depth ({cfg['samples']} prompts per cell; the 'prompts' column says how many for each row).",
    )
    out.write_csv(
        "history",
        hist,
        "Training loss per step of the base model and of every fine-tune.\nTidy rows (model, step, split, metric, "
        "value); plotted in the training-curve figure(s).",
    )
    stages = ["zero-shot", *[f"fine-tuned at {t}x" for t in cfg["finetune_multiples"]]]
    _grid(out, rows, cfg, lengths, stages)
    _digits(out, rows, lengths, stages, T)
    plot_histories(
        out,
        [r for r in hist if r["stage"] == "train"],
        "training",
        f"Training loss of the retrieval model at {T} bytes (running mean over 10 steps).\n"
        f"Loss = answer digits + {cfg['lm_weight']} x next-byte loss; {cfg['steps']} steps of batch {cfg['batch']}.",
    )
    plot_histories(
        out,
        [r for r in hist if r["stage"] != "train"],
        "finetune",
        "Fine-tuning loss per scaling and target length (running mean over 10 steps).\n"
        f"{cfg['finetune_steps']} steps from the same weights, the same prompts for every method.",
    )

    def acc(method: str, stage: str, L: int) -> float:
        return float(results[(method, stage, L)][0].mean())

    in_len = acc("none", "zero-shot", T)
    findings = [
        f"Retrieval at the training length ({T} bytes, no scaling): {in_len:.2f} over "
        f"{cfg['samples'] * len(cfg['depths'])} prompts."
    ]
    for stage in stages:
        findings.append(
            f"{stage}: retrieval by length "
            + "; ".join(
                f"{method} " + "/".join(f"{acc(method, stage, L):.2f}" for L in lengths)
                for method in (ZERO_SHOT if stage == "zero-shot" else FINETUNED)
            )
            + f" (lengths {lengths}"
            + (
                f"; Self-Extend and ReRoPE on the first {n_remap} of {cfg['samples']} prompts per cell)."
                if stage == "zero-shot" and n_remap < cfg["samples"]
                else ")."
            )
        )
    sanity = [(f"the model retrieves at its training length ({in_len:.2f} >= 0.5)", in_len >= 0.5)]
    claims = []
    for target in cfg["finetune_multiples"]:
        stage, L = f"fine-tuned at {target}x", target * T
        if L not in lengths:
            continue
        o, t = compare(results[("PI", stage, L)][0], results[("none", stage, L)][0])
        claims.append(
            Claim(
                f"after fine-tuning at {target}x, PI retrieves at {L} bytes better than no scaling (A = PI, B = none)",
                "Chen et al. 2023",
                "PI-extended LLaMA retrieves across the whole extended window",
                t,
                o,
            )
        )
        o, t = compare(results[("YaRN", stage, L)][0], results[("none", stage, L)][0])
        claims.append(
            Claim(
                f"after fine-tuning at {target}x, YaRN retrieves at {L} bytes better than no scaling (A = YaRN, B = "
                "none)",
                "Peng et al. 2023",
                "YaRN s=32 7B: 99.4% passkey accuracy to 128k",
                t,
                o,
            )
        )
    L = 2 * T
    if L in lengths:
        for method, source, published in (
            (
                "Self-Extend",
                "Jin et al. 2024",
                "Self-Extend retrieves the passkey beyond the pretraining window, no tuning",
            ),
            ("ReRoPE", "Su 2023", "ReRoPE keeps a model working beyond its training length without fine-tuning"),
        ):
            a = results[(method, "zero-shot", L)][0]  # [n_remap, depths]: paired with none's first prompts
            o, t = compare(a, results[("none", "zero-shot", L)][0][: a.shape[0]])
            claims.append(
                Claim(
                    f"zero-shot at 2x ({L} bytes), {method} retrieves better than no scaling (A = {method}, B = none)",
                    source,
                    published,
                    t,
                    o,
                )
            )
    out.write_csv("claims", claim_rows(sanity, claims), CLAIMS_CAPTION)
    published = (
        "Mohtashami and Jaggi 2023 introduced the test; Chen et al. 2023: PI fine-tuned models retrieve across the "
        "extended window while unscaled models fail beyond the training length; Peng et al. 2023 (YaRN, s=32, 7B): "
        "99.4% to 128k after fine-tuning. Jin et al. 2024 (Self-Extend) and Su 2023 (ReRoPE) extend the window without "
        "any tuning by remapping far positions to distances seen in training."
    )
    return {"findings": findings, "published": published, "agreement": agreement(sanity, claims)}


def _digits(out: Outputs, rows: list[dict[str, Any]], lengths: list[int], stages: list[str], T: int) -> None:
    plt = matplotlib_agg()
    fig, axes = plt.subplots(1, len(stages), figsize=(4.6 * len(stages), 3.6), sharey=True, squeeze=False)
    for ax, stage in zip(axes[0], stages, strict=True):
        for method in ZERO_SHOT if stage == "zero-shot" else FINETUNED:
            ys = [
                np.mean(
                    [
                        r["digit_accuracy"]
                        for r in rows
                        if r["scaling"] == method and r["stage"] == stage and r["length"] == L
                    ]
                )
                for L in lengths
            ]
            ax.plot(lengths, ys, label=method, **style(method))
        ax.axhline(0.1, color="grey", ls=":", lw=0.8)
        ax.axvline(T, color="grey", ls="--", lw=0.8)
        ax.set(xlabel="prompt length (bytes)", title=stage, ylim=(0, 1.02))
        ax.legend(fontsize=7)
    axes[0][0].set_ylabel("digit accuracy")
    out.save_figure(
        fig,
        "digits",
        "Per-digit passkey accuracy vs prompt length, mean over depths, per scaling and stage.\n"
        f"Teacher-forced argmax; dotted = chance (0.1), dashed = training length {T}; y from 0; Self-Extend and "
        "ReRoPE over their first prompts only (the accuracy CSV's 'prompts' column).",
    )


def _grid(out: Outputs, rows: list[dict[str, Any]], cfg: dict[str, Any], lengths: list[int], stages: list[str]) -> None:
    plt = matplotlib_agg()
    panels = [(s, m) for s in stages for m in (ZERO_SHOT if s == "zero-shot" else FINETUNED)]
    ncol = len(ZERO_SHOT)
    nrow = 1 + len(stages) - 1
    fig, axes = plt.subplots(nrow, ncol, figsize=(2.8 * ncol, 2.6 * nrow), squeeze=False)
    for ax in axes.flat:
        ax.set_visible(False)
    im = None
    for stage_i, stage in enumerate(stages):
        methods = ZERO_SHOT if stage == "zero-shot" else FINETUNED
        for j, method in enumerate(methods):
            ax = axes[stage_i][j]
            ax.set_visible(True)
            grid = np.array(
                [
                    [
                        next(
                            r["retrieval_accuracy"]
                            for r in rows
                            if r["scaling"] == method and r["stage"] == stage and r["length"] == L and r["depth"] == d
                        )
                        for L in lengths
                    ]
                    for d in cfg["depths"]
                ]
            )
            im = ax.imshow(grid, vmin=0, vmax=1, cmap="RdYlGn", aspect="auto")
            for (i, k), v in np.ndenumerate(grid):
                ax.text(k, i, f"{v:.2f}", ha="center", va="center", fontsize=6)
            ax.set_xticks(range(len(lengths)), [str(L) for L in lengths], fontsize=6)
            ax.set_yticks(range(len(cfg["depths"])), [f"{d:.2f}" for d in cfg["depths"]], fontsize=6)
            ax.set_title(f"{method}, {stage}", fontsize=8, color=style(method)["color"])
    assert panels and im is not None
    fig.colorbar(im, ax=axes, shrink=0.8, label="retrieval accuracy")
    out.save_figure(
        fig,
        "grid",
        "Passkey retrieval by prompt length (x, bytes) and key depth (y): zero-shot scalings and remappings (top row, "
        f"Self-Extend group {SELF_EXTEND_GROUP} and ReRoPE with window {cfg['train_len'] // 2}) and after "
        "fine-tuning "
        "at each target length (rows below).\n"
        f"All 5 digits right under teacher forcing; {cfg['samples']} prompts per cell (Self-Extend, ReRoPE: the first "
        f"{min(cfg['remap_samples'], cfg['samples'])}), SOTU validation filler; "
        f"trained at {cfg['train_len']}.",
    )
