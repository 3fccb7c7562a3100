"""Length generalisation on a synthetic copy (or reverse) task: trained on short sequences, tested longer.

Each example is ``[BOS, x_1 .. x_n, SEP, y_1 .. y_n]`` with ``x_i`` uniform over ``n_symbols`` symbols and
``y = x`` (copy) or ``y = reversed(x)`` (reverse). A :class:`ropekit.models.DecoderLM` is trained
(:func:`ropekit.train.run_steps`, the same batches for every encoding) with the loss on the ``y`` positions only,
for ``n`` uniform in ``[1, train_max_n]``, and evaluated (teacher-forced argmax) on fixed examples at ``n`` up to
``max(test_ns)``. Position encodings (``ModelConfig.pe``): RoPE, randomized-position RoPE (``random_max``, Ruoss et
al. 2023; positions drawn from ``[0, 2 max(test_ns) + 2)`` in training and at test), p-RoPE, sinusoidal, ALiBi, NoPE.

p-RoPE at head_dim 16 has 8 rotary pairs; with base 10000 the lowest pairs turn by well under a radian over the
test lengths, so dropping only those (p = 0.75) leaves RoPE almost unchanged. The presets use ``p = 0.5``, and the
section states the angle the first dropped pair would reach at the longest test length.

Legend: ``n`` sequence length to copy, ``T = 2n + 2`` tokens per example, ``ids: [B, T]``.
"""

from __future__ import annotations

import math
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
    mean_spread,
    plot_histories,
    protocol,
    style,
    train_config,
)
from ropekit.experiments._lm import train_model
from ropekit.models import ModelConfig, random_positions
from ropekit.train.device import model_device, to_device

__all__ = ["NAME", "PRESETS", "TITLE", "encodings", "make_batch", "run"]

NAME = "lengthgen"
TITLE = "Length generalisation on a synthetic copy task"

PRESETS: dict[str, dict[str, Any]] = {
    "tiny": {
        "task": "copy",
        "n_symbols": 8,
        "train_max_n": 4,
        "test_ns": [2, 4, 8],
        "steps": 4,
        "batch": 16,
        "d_model": 32,
        "n_layers": 1,
        "n_heads": 2,
        "seeds": 1,
        "lr": 3e-3,
        "init_std": 0.08,
        "eval_examples": 16,
        "prope_p": 0.5,
        "min_in_dist_acc": 0.9,
    },
    "quick": {
        "task": "copy",
        "n_symbols": 16,
        "train_max_n": 16,
        "test_ns": [4, 8, 16, 24, 32, 48, 64],
        "steps": 550,
        "batch": 48,
        "d_model": 64,
        "n_layers": 2,
        "n_heads": 4,
        "seeds": 1,
        "lr": 3e-3,
        "init_std": 0.08,
        "eval_examples": 128,
        "prope_p": 0.5,
        "min_in_dist_acc": 0.9,
    },
    "full": {
        "task": "copy",
        "n_symbols": 16,
        "train_max_n": 16,
        "test_ns": [4, 8, 16, 24, 32, 48, 64, 80],
        "steps": 900,
        "batch": 48,
        "d_model": 64,
        "n_layers": 2,
        "n_heads": 4,
        "seeds": 3,
        "lr": 3e-3,
        "init_std": 0.08,
        "eval_examples": 256,
        "prope_p": 0.5,
        "min_in_dist_acc": 0.9,
    },
}
# One GPU: the same protocol as quick with about 100x the parameters (d_model 8x, twice the layers).
PRESETS["gpu"] = {
    **PRESETS["quick"],
    "d_model": 512,
    "n_layers": 4,
    "n_heads": 8,
    "steps": 2000,
    "lr": 1e-3,
    "init_std": 0.02,
    "seeds": 3,
}


def encodings(cfg: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Label -> ``pe`` spec for this preset."""
    rand_max = 2 * max(cfg["test_ns"]) + 2
    return {
        "RoPE": {"kind": "rope"},
        "randomized RoPE": {"kind": "rope", "random_max": rand_max},
        f"p-RoPE (p={cfg['prope_p']})": {"kind": "prope", "p": cfg["prope_p"]},
        "sinusoidal": {"kind": "sinusoidal"},
        "ALiBi": {"kind": "alibi"},
        "NoPE": {"kind": "none"},
    }


def make_batch(
    batch: int, n: int, n_symbols: int, task: str, gen: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(ids [B, 2n+2], target_mask [B, 2n+2])``: mask is True where the next token is an answer token."""
    if task not in ("copy", "reverse"):
        raise ValueError(f"task must be 'copy' or 'reverse', got {task!r}")
    x = torch.randint(0, n_symbols, (batch, n), generator=gen)  # [B, n]
    y = x if task == "copy" else x.flip(-1)
    bos, sep = torch.full((batch, 1), n_symbols), torch.full((batch, 1), n_symbols + 1)
    ids = torch.cat([bos, x, sep, y], dim=1)  # [B, 2n+2]
    mask = torch.zeros_like(ids, dtype=torch.bool)
    mask[:, n + 1 : 2 * n + 1] = True  # predicting y_1..y_n from SEP..y_{n-1}
    return ids, mask


def _loss(model: torch.nn.Module, batch: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
    ids, mask = batch
    logits = model(ids)  # [B, T, V]; random positions come from the model's random_max while training
    return F.cross_entropy(logits[:, :-1][mask[:, :-1]], ids[:, 1:][mask[:, :-1]])


@torch.no_grad()
def _per_example(
    model: torch.nn.Module, ids: torch.Tensor, mask: torch.Tensor, random_max: int | None, gen: torch.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Token accuracy and whole-answer correctness per example, ``[B]`` each (teacher-forced argmax)."""
    positions = random_positions(ids.shape[0], ids.shape[1], random_max, gen) if random_max else None  # Ruoss et al.
    pred = model(*to_device((ids, positions), model_device(model))).argmax(-1)[:, :-1].cpu()  # [B, T-1]
    right, m = pred == ids[:, 1:], mask[:, :-1]
    tok = (right & m).sum(1).double() / m.sum(1).double()
    return tok.numpy(), (right | ~m).all(1).double().numpy()


@protocol
def run(cfg: dict[str, Any], out: Outputs, *, seed: int) -> dict[str, Any]:
    """Train each encoding on short sequences (same batches), evaluate on fixed examples at every test length."""
    vocab = cfg["n_symbols"] + 2
    encs = encodings(cfg)
    seeds = list(range(seed, seed + cfg["seeds"]))
    tests = {
        n: make_batch(cfg["eval_examples"], n, cfg["n_symbols"], cfg["task"], torch.Generator().manual_seed(10_000 + n))
        for n in cfg["test_ns"]
    }
    tok_acc: dict[tuple[str, int], list[np.ndarray]] = {}
    seq_acc: dict[tuple[str, int], list[np.ndarray]] = {}
    hist: list[dict[str, Any]] = []
    for s in seeds:

        def batch_fn(step: int, s: int = s) -> tuple[torch.Tensor, torch.Tensor]:
            g = torch.Generator().manual_seed(s * 1_000_003 + step)
            n = int(torch.randint(1, cfg["train_max_n"] + 1, (1,), generator=g))
            return make_batch(cfg["batch"], n, cfg["n_symbols"], cfg["task"], g)

        train_cfg = train_config(cfg["steps"], cfg["batch"], cfg["lr"], s)
        for label, pe in encs.items():
            model_cfg = ModelConfig(
                task="lm",
                vocab_size=vocab,
                d_model=cfg["d_model"],
                n_heads=cfg["n_heads"],
                n_layers=cfg["n_layers"],
                max_len=2 * max(cfg["test_ns"]) + 2,
                pe=pe,
                init_std=cfg["init_std"],
            )
            model, history = train_model(model_cfg, _loss, batch_fn, train_cfg, desc=f"{NAME}: {label} seed {s}")
            hist += history_rows(label, history, seed=s)
            gen = torch.Generator().manual_seed(20_000 + s)
            for n, (ids, mask) in tests.items():
                t, q = _per_example(model, ids, mask, pe.get("random_max"), gen)
                tok_acc.setdefault((label, n), []).append(t)
                seq_acc.setdefault((label, n), []).append(q)

    rows = [
        {
            "encoding": label,
            "seed": s,
            "task": cfg["task"],
            "n": n,
            "in_distribution": n <= cfg["train_max_n"],
            "token_accuracy": float(tok_acc[(label, n)][i].mean()),
            "sequence_accuracy": float(seq_acc[(label, n)][i].mean()),
        }
        for label in encs
        for n in cfg["test_ns"]
        for i, s in enumerate(seeds)
    ]
    out.write_csv("accuracy", rows, "Teacher-forced token and sequence accuracy per encoding, seed and length n.")
    out.write_csv(
        "history",
        hist,
        "Training loss per step of every model.\nTidy rows (model, step, split, metric, value); plotted in the "
        "training-curve figure(s).",
    )
    ind_ns = [n for n in cfg["test_ns"] if n <= cfg["train_max_n"]]
    ood_ns = [n for n in cfg["test_ns"] if n > cfg["train_max_n"]]

    def items(label: str, ns: list[int]) -> np.ndarray:
        return np.concatenate([np.stack(tok_acc[(label, n)]) for n in ns], axis=1)  # [S, examples over ns]

    ood = {label: float(items(label, ood_ns).mean()) if ood_ns else math.nan for label in encs}
    summary = [
        {
            "encoding": label,
            "in_distribution_token_acc": float(items(label, ind_ns).mean()),
            "out_of_distribution_token_acc": ood[label],
            "over_seeds_ood": mean_spread(items(label, ood_ns).mean(1).tolist()) if ood_ns else "n/a",
        }
        for label in encs
    ]
    out.write_csv("summary", summary, f"Mean token accuracy in distribution (n <= {cfg['train_max_n']}) and beyond.")
    plt = matplotlib_agg()
    fig, axes = plt.subplots(1, 2, figsize=(12, 4))
    for label in encs:
        st = style(label)
        for ax, key in zip(axes, ("token_accuracy", "sequence_accuracy"), strict=True):
            ax.plot(
                cfg["test_ns"],
                [np.mean([r[key] for r in rows if r["encoding"] == label and r["n"] == n]) for n in cfg["test_ns"]],
                ms=4,
                label=label,
                **st,
            )
    for ax, name in zip(axes, ("token accuracy", "whole-sequence accuracy"), strict=True):
        ax.axvspan(0, cfg["train_max_n"], color="#e8f0e8", zorder=0)
        ax.set(xlabel=f"sequence length n ({cfg['task']} task)", ylabel=name, ylim=(0, 1.02))
    axes[0].axhline(1 / cfg["n_symbols"], color="grey", ls=":", lw=0.8)
    axes[1].legend(fontsize=8)
    out.save_figure(
        fig,
        "accuracy",
        f"{cfg['task'].capitalize()}-task accuracy vs length for {len(encs)} position encodings trained on n <= "
        f"{cfg['train_max_n']} (shaded).\n"
        f"Teacher-forced argmax on {cfg['eval_examples']} fixed examples per length; dotted = chance; {len(seeds)} "
        "seed(s); y from 0.",
    )
    plot_histories(
        out,
        hist,
        "training",
        "Training loss per encoding (running mean over 10 steps).\n"
        f"Identical batches for every encoding; n uniform in 1..{cfg['train_max_n']}, batch {cfg['batch']}.",
    )

    ind = {r["encoding"]: r["in_distribution_token_acc"] for r in summary}
    head_dim = cfg["d_model"] // cfg["n_heads"]
    r_pairs = head_dim // 2
    keep = round(cfg["prope_p"] * r_pairs)
    first_dropped = 10000.0 ** (-2 * keep / head_dim) if keep < r_pairs else 0.0
    findings = [
        "Out-of-distribution token accuracy (n > train): "
        + ", ".join(
            f"{r['encoding']} {r['over_seeds_ood']}" for r in sorted(summary, key=lambda r: -ood[str(r["encoding"])])
        )
        + ".",
        "In-distribution token accuracy: " + ", ".join(f"{k} {ind[k]:.3f}" for k in encs) + ".",
        f"p-RoPE keeps {keep} of {r_pairs} pairs (head_dim {head_dim}); the first dropped pair would turn by "
        f"{first_dropped * (2 * max(cfg['test_ns']) + 2):.2f} rad over the longest test sequence.",
    ]
    ok = {k: ind[k] >= cfg["min_in_dist_acc"] for k in encs}
    sanity = [
        (f"at least one encoding reaches in-distribution token accuracy >= {cfg['min_in_dist_acc']}", any(ok.values()))
    ]
    claims = []

    def ood_claim(a: str, b: str, source: str, published: str) -> None:
        if not ood_ns:
            return
        if not (ok[a] and ok[b]):
            bad = [k for k in (a, b) if not ok[k]]
            claims.append(
                Claim(
                    f"{a} generalises beyond the training length better than {b}",
                    source,
                    published,
                    f"in-distribution accuracy of {', '.join(bad)} below {cfg['min_in_dist_acc']}: no OOD ranking",
                    "not tested",
                )
            )
            return
        o, t = compare(items(a, ood_ns), items(b, ood_ns))
        claims.append(
            Claim(
                f"{a} generalises beyond the training length better than {b} (A = {a}, B = {b}, OOD token accuracy)",
                source,
                published,
                t,
                o,
            )
        )

    for a, b in (("NoPE", "ALiBi"), ("ALiBi", "RoPE"), ("RoPE", "sinusoidal")):
        ood_claim(a, b, "Kazemnejad et al. 2023", "OOD ranking NoPE > T5 bias > ALiBi > RoPE > absolute")
    ood_claim(
        "randomized RoPE", "RoPE", "Ruoss et al. 2023", "randomized positions raise OOD accuracy on algorithmic tasks"
    )
    prope = next(k for k in encs if k.startswith("p-RoPE"))
    claims.append(
        Claim(
            "p-RoPE improves on RoPE",
            "Barbero et al. 2024",
            "p = 0.75 best in Gemma-scale language models",
            f"OOD token accuracy {ood[prope]:.3f} vs RoPE {ood['RoPE']:.3f} (protocol differs: LM perplexity at scale)",
            "not tested",
        )
    )
    out.write_csv("claims", claim_rows(sanity, claims), CLAIMS_CAPTION)
    published = (
        "Kazemnejad et al. 2023: NoPE > T5 bias > ALiBi > RoPE > absolute out of distribution on small synthetic "
        "tasks; "
        "Ruoss et al. 2023: randomized positions improve length generalisation; Barbero et al. 2024: p-RoPE (p=0.75) "
        "in LMs."
    )
    scores = [
        {
            "task": f"copy, OOD (n <= {max(cfg['test_ns'])})",
            "higher_is_better": True,
            "values": dict(ood),
            "chance": 1 / cfg["n_symbols"],
        }
    ]
    return {"findings": findings, "published": published, "agreement": agreement(sanity, claims), "scores": scores}
