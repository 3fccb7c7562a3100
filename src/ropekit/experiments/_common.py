"""Shared plumbing for experiments: outputs, figure styles, statistics and computed verdicts.

Every experiment follows the protocol in ``docs/report.md``. Its module defines ``NAME``, ``TITLE``, ``PRESETS`` and
one function decorated with :func:`protocol`::

    @protocol
    def run(cfg: dict, out: Outputs, *, seed: int) -> dict:   # findings, published, agreement (, notes, scores)
        ...

The decorator turns it into the registry's ``run(preset, out_dir, *, seed=0) -> section``: the report's runner
(:func:`ropekit.report.runner.run_protocol`) checks the preset, sets threads and seeds, times it and writes the
section; the experiment's body is its protocol only.

Verdicts: an experiment lists its *sanity checks* (does the set-up work at all: in-distribution accuracy above
chance, ...) apart from the *published claims* (:class:`Claim`), each decided from numbers, with a paired bootstrap
confidence interval where two methods are compared (:func:`paired_bootstrap`), or marked "not tested" where the
protocol differs from the paper's. :func:`agreement` writes the sentence; no expected outcome is written anywhere.
"""

from __future__ import annotations

import csv
import functools
import io
import json
import math
import os
import pathlib
import random
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np

from ropekit.fileio import atomic_write

__all__ = [
    "CLAIMS_CAPTION",
    "STYLES",
    "Claim",
    "Outputs",
    "agreement",
    "check_preset",
    "claim_rows",
    "compare",
    "history_rows",
    "matplotlib_agg",
    "mean_spread",
    "paired_bootstrap",
    "plot_histories",
    "progress",
    "protocol",
    "run_device",
    "running_on",
    "seed_everything",
    "style",
    "train_config",
]

T = TypeVar("T")

# The report sets this to "0" in its worker processes so that parallel experiments do not draw
# interleaved bars; the report shows one line per experiment instead.
PROGRESS_ENV = "ROPEKIT_INNER_PROGRESS"


def train_config(
    steps: int, batch: int, lr: float, seed: int, *, evals: int | None = None, warmup_div: int = 10, **extra: Any
) -> Any:
    """The experiments' one training recipe: :class:`ropekit.train.TrainConfig` with warm-up over the first
    ``steps // warmup_div`` steps and, with ``evals``, that many validation points; ``extra`` passes other fields."""
    from ropekit.train import TrainConfig

    if evals is not None:
        extra["eval_every"] = max(1, steps // evals)
    return TrainConfig(steps=steps, batch_size=batch, lr=lr, warmup=max(1, steps // warmup_div), seed=seed, **extra)


def progress(iterable: Iterable[T], *, desc: str, total: int | None = None) -> Iterable[T]:
    """``tqdm`` over ``iterable`` unless the report disabled inner bars (env ``ROPEKIT_INNER_PROGRESS=0``)."""
    from tqdm.auto import tqdm

    disable = os.environ.get(PROGRESS_ENV, "1") == "0"
    return tqdm(iterable, desc=desc, total=total, disable=disable, leave=False, dynamic_ncols=True)


def inner_progress() -> bool:
    """True when experiments may draw their own progress bars (``ropekit experiment``), False in report workers."""
    return os.environ.get(PROGRESS_ENV, "1") != "0"


def check_preset(name: str, presets: Mapping[str, Mapping[str, Any]], preset: str) -> dict[str, Any]:
    """The preset dict (a copy), or a ``ValueError`` naming the valid presets."""
    if preset not in presets:
        raise ValueError(f"experiment {name!r} has no preset {preset!r}; choose one of {sorted(presets)}")
    return dict(presets[preset])


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (CPU) from one integer."""
    import torch

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def protocol(measure: Callable[..., dict[str, Any]]) -> Callable[..., dict[str, Any]]:
    """Decorator: ``measure(cfg, out, *, seed) -> dict`` becomes ``run(preset, out_dir, *, seed=0, device="cpu")
    -> section``."""

    @functools.wraps(measure)
    def run(preset: str, out_dir: pathlib.Path | str, *, seed: int = 0, device: str = "cpu") -> dict[str, Any]:
        from ropekit.report.runner import run_protocol

        return run_protocol(measure, preset, pathlib.Path(out_dir), seed=seed, device=device)

    return run


_DEVICE: ContextVar[str] = ContextVar("ropekit_experiment_device", default="cpu")


@contextmanager
def running_on(device: str) -> Iterator[None]:
    """Within the block, :func:`run_device` is ``device`` (checked: a CUDA device needs CUDA). The runner's."""
    from ropekit.train.device import resolve_device

    token = _DEVICE.set(str(resolve_device(device)))
    try:
        yield
    finally:
        _DEVICE.reset(token)


def run_device() -> Any:
    """The ``torch.device`` the experiments train on (``--device``; the CPU by default). Data is built on the
    CPU and follows the model (:mod:`ropekit.train.device`); results come back with ``.cpu()``."""
    import torch

    return torch.device(_DEVICE.get())


# ----------------------------------------------------------------------------------------------- figure styles
# One colour and marker per encoding / method across the whole report (every figure reads this table).
STYLES: dict[str, tuple[str, str]] = {
    "RoPE": ("#1f77b4", "o"),
    "RoPE + none": ("#1f77b4", "o"),
    "RoPE + PI": ("#ff7f0e", "s"),
    "RoPE + NTK": ("#2ca02c", "^"),
    "RoPE + dynamic NTK": ("#d62728", "v"),
    "RoPE + YaRN": ("#9467bd", "D"),
    "RoPE + Llama 3": ("#8c564b", "P"),
    "randomized RoPE": ("#17becf", "X"),
    "p-RoPE": ("#bcbd22", "h"),
    "receptive RoPE": ("#e377c2", "*"),
    "hierarchical RoPE": ("#637939", "8"),
    "xPos": ("#7f7f7f", "<"),
    "Self-Extend": ("#e7ba52", "H"),
    "ReRoPE": ("#843c39", "8"),
    "ALiBi": ("#000000", ">"),
    "sinusoidal": ("#aec7e8", "p"),
    "learned": ("#ffbb78", "d"),
    "NoPE": ("#98df8a", "x"),
    "CoPE": ("#c51b7d", "8"),
    "bag of tokens": ("#555555", "_"),
    "majority class": ("#aaaaaa", "_"),
    # vision
    "learned absolute (interp.)": ("#ffbb78", "d"),
    "axial RoPE": ("#1f77b4", "o"),
    "RoPE-Mixed": ("#9467bd", "D"),
    "commuting Lie (Cayley P)": ("#2ca02c", "^"),
    "LieRE (dense)": ("#d62728", "v"),
    "no position": ("#98df8a", "x"),
}
for _method in ("none", "PI", "NTK", "dynamic NTK", "YaRN", "Llama 3"):
    STYLES.setdefault(_method, STYLES[f"RoPE + {_method}"])


def style(label: str) -> dict[str, str]:
    """``{"color", "marker"}`` of ``label`` from :data:`STYLES` (prefix match, e.g. ``"p-RoPE (0.5)"``)."""
    key = label if label in STYLES else next((k for k in STYLES if label.startswith(k)), None)
    if key is None:
        raise KeyError(f"no figure style for {label!r}; add it to STYLES so it keeps one colour across the report")
    color, marker = STYLES[key]
    return {"color": color, "marker": marker}


def clip_note(ax: Any, values: Sequence[float], lo: float, hi: float) -> str:
    """Set ``ylim(lo, hi)``; when some ``values`` fall outside, say so on the axes and return the note ("" if none)."""
    ax.set_ylim(lo, hi)
    out = [v for v in values if math.isfinite(v) and not lo <= v <= hi]
    if not out:
        return ""
    note = f"{len(out)} point(s) off the axes (max {max(out):.3g}); values in the CSV"
    ax.text(0.99, 0.99, "clipped: " + note, transform=ax.transAxes, ha="right", va="top", fontsize=7, color="#9b1c1c")
    return note


# ------------------------------------------------------------------------------------------------- statistics
def mean_spread(values: Sequence[float]) -> str:
    """``"0.812 +- 0.010 (n=3)"`` (sample std), or ``"0.812 (n=1)"``: one seed has no spread."""
    vals = [float(v) for v in values]
    if not vals:
        return "n/a (n=0)"
    m = sum(vals) / len(vals)
    if len(vals) == 1:
        return f"{m:.3f} (n=1)"
    sd = math.sqrt(sum((v - m) ** 2 for v in vals) / (len(vals) - 1))
    return f"{m:.3f} +- {sd:.3f} (n={len(vals)})"


def paired_bootstrap(
    diff: np.ndarray, *, n_boot: int = 2000, level: float = 0.95, seed: int = 0
) -> tuple[float, float, float]:
    """Mean of paired differences and its bootstrap CI, resampling seeds and items: ``diff: [S, N]``.

    ``diff[s, i]`` = score of method A minus method B on item ``i`` for seed ``s`` (same items, same seeds, same
    batches: paired). Each replicate draws ``S`` seeds and then ``N`` items with replacement (two-level bootstrap).
    Returns ``(mean, lo, hi)``.
    """
    d = np.asarray(diff, dtype=np.float64)
    if d.ndim == 1:
        d = d[None]
    S, N = d.shape
    rng = np.random.default_rng(seed)
    seeds = rng.integers(0, S, size=(n_boot, S))  # [R, S]
    items = rng.integers(0, N, size=(n_boot, S, N))  # [R, S, N]
    reps = d[seeds[..., None], items].mean(axis=(1, 2))  # [R]
    a = (1 - level) / 2
    return float(d.mean()), float(np.quantile(reps, a)), float(np.quantile(reps, 1 - a))


def compare(a: np.ndarray, b: np.ndarray, *, higher_is_better: bool = True, seed: int = 0) -> tuple[str, str]:
    """``(outcome, text)`` for the claim "A beats B" from paired per-item scores ``a, b: [S, N]`` (text: the mean
    difference A - B and its 95% CI).

    ``outcome``: ``agrees`` when the 95% CI of mean(A - B) lies on A's side of 0, ``disagrees`` when on B's side,
    ``inconclusive`` when it contains 0.
    """
    m, lo, hi = paired_bootstrap(np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64), seed=seed)
    better, worse = (lo > 0, hi < 0) if higher_is_better else (hi < 0, lo > 0)
    outcome = "agrees" if better else "disagrees" if worse else "inconclusive"
    return outcome, f"A - B = {m:+.3f}, 95% CI [{lo:+.3f}, {hi:+.3f}]"


@dataclass
class Claim:
    """One published claim and what the measurement says about it.

    ``outcome``: ``agrees``, ``disagrees``, ``inconclusive`` (CI contains no difference) or ``not tested`` (the
    protocol differs from the paper's, or a precondition such as in-distribution accuracy failed; ``measured`` says
    why)."""

    statement: str
    source: str
    published: str
    measured: str
    outcome: str

    def __post_init__(self) -> None:
        if self.outcome not in ("agrees", "disagrees", "inconclusive", "not tested"):
            raise ValueError(f"claim outcome {self.outcome!r} is not one of agrees/disagrees/inconclusive/not tested")


CLAIMS_CAPTION = (
    "Sanity checks and published claims, the published number beside the measured one.\n"
    "Outcomes from paired bootstrap 95% CIs over seeds and items (or exact checks); 'not tested' where the protocol "
    "differs from the paper's or a sanity check failed."
)


def agreement(sanity: Sequence[tuple[str, bool]], claims: Sequence[Claim]) -> str:
    """The verdict sentence: sanity checks first, then the claims; the leading word is computed.

    ``Agrees``: every tested claim agrees. ``Disagrees``: every decided claim disagrees. ``Mixed``: both occur.
    ``Inconclusive``: no tested claim was decided. ``Not tested``: no claim could be tested (or a sanity check
    failed, which makes every claim untestable).
    """
    failed = [t for t, ok in sanity if not ok]
    tested = [c for c in claims if c.outcome != "not tested"]
    agree = sum(c.outcome == "agrees" for c in tested)
    disagree = sum(c.outcome == "disagrees" for c in tested)
    if failed or not tested:
        word = "Not tested"
    elif agree and disagree:
        word = "Mixed"
    elif agree == len(tested):
        word = "Agrees"
    elif disagree and not agree:
        word = "Disagrees"
    elif agree:
        word = "Mixed"
    else:
        word = "Inconclusive"
    head = (
        f"Not tested: a sanity check failed, so none of the {len(claims)} claims was tested."
        if failed
        else f"{word} ({agree} agree, {disagree} disagree, {len(tested) - agree - disagree} inconclusive, "
        f"{len(claims) - len(tested)} not tested of {len(claims)} claims)."
    )
    parts = [head]
    if sanity:
        parts.append("Sanity checks: " + "; ".join(f"{t}: {'pass' if ok else 'FAIL'}" for t, ok in sanity) + ".")
    for c in claims:
        outcome = "not tested" if failed else c.outcome
        parts.append(f"[{outcome}] {c.statement} ({c.source}; published: {c.published}; measured: {c.measured}).")
    return " ".join(parts)


def claim_rows(sanity: Sequence[tuple[str, bool]], claims: Sequence[Claim]) -> list[dict[str, str]]:
    """Rows of the claims table (published number beside the measured one)."""
    failed = any(not ok for _, ok in sanity)
    rows = [
        {
            "kind": "sanity check",
            "statement": t,
            "source": "",
            "published": "",
            "measured": "",
            "outcome": "pass" if ok else "FAIL",
        }
        for t, ok in sanity
    ]
    rows += [
        {
            "kind": "published claim",
            "statement": c.statement,
            "source": c.source,
            "published": c.published,
            "measured": c.measured,
            "outcome": "not tested" if failed else c.outcome,
        }
        for c in claims
    ]
    return rows


# ------------------------------------------------------------------------------------------- training curves
def history_rows(model: str, history: Sequence[Mapping[str, Any]], **extra: Any) -> list[dict[str, Any]]:
    """Tidy rows ``{model, **extra, step, split, metric, value}`` from a :func:`ropekit.train.run_steps` history."""
    rows = []
    for h in history:
        if "loss" in h:
            rows.append(
                {"model": model, **extra, "step": h["step"], "split": "train", "metric": "loss", "value": h["loss"]}
            )
        for k, v in (h.get("eval") or {}).items():
            rows.append({"model": model, **extra, "step": h["step"], "split": "validation", "metric": k, "value": v})
    return rows


def plot_histories(
    out: Outputs, rows: Sequence[Mapping[str, Any]], figure: str, caption: str, *, smooth: int = 10
) -> None:
    """Training loss (running mean over ``smooth`` steps) and validation metrics per model, one panel per metric."""
    plt = matplotlib_agg()
    metrics = ["loss", *sorted({r["metric"] for r in rows if r["split"] == "validation" and r["metric"] != "loss"})]
    fig, axes = plt.subplots(1, len(metrics), figsize=(5.2 * len(metrics), 3.6), squeeze=False)
    models = list(dict.fromkeys(r["model"] for r in rows))
    for ax, metric in zip(axes[0], metrics, strict=True):
        for m in models:
            st = style(m.split(" [")[0])
            tr = [
                (r["step"], r["value"])
                for r in rows
                if r["model"] == m and r["split"] == "train" and r["metric"] == metric
            ]
            if tr:
                ys = (
                    np.convolve([v for _, v in tr], np.ones(smooth) / smooth, mode="valid")
                    if len(tr) >= smooth
                    else [v for _, v in tr]
                )
                ax.plot(
                    [s for s, _ in tr][len(tr) - len(ys) :], ys, color=st["color"], lw=1, alpha=0.8, label=f"{m} train"
                )
            va = [
                (r["step"], r["value"])
                for r in rows
                if r["model"] == m and r["split"] == "validation" and r["metric"] == metric
            ]
            if va:
                ax.plot(*zip(*va, strict=True), color=st["color"], marker=st["marker"], ls="--", ms=4, label=f"{m} val")
        ax.set(xlabel="step", ylabel=metric, title=metric)
        ax.grid(alpha=0.3)
    axes[0][-1].legend(fontsize=6, ncol=2)
    out.save_figure(fig, figure, caption)


# ------------------------------------------------------------------------------------------------- outputs
class Outputs:
    """Paths and writers under one report folder for one experiment.

    ``out_dir/results/<name>_<table>.csv``, ``out_dir/figures/<name>_<figure>.png``,
    ``out_dir/sections/<name>.json``. Paths recorded in the section are relative to ``out_dir``.
    """

    def __init__(self, out_dir: pathlib.Path | str, name: str) -> None:
        self.root = pathlib.Path(out_dir)
        self.name = name
        for sub in ("results", "figures", "sections"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        self.figures: list[dict[str, str]] = []
        self.tables: list[dict[str, str]] = []

    def write_csv(self, table: str, rows: Sequence[Mapping[str, Any]], caption: str) -> str:
        """Write tidy ``rows`` (one measurement per row; all rows share the first row's keys) to a CSV."""
        if not rows:
            raise ValueError(f"{self.name}: table {table!r} has no rows; an experiment must measure something")
        columns = list(rows[0].keys())
        rel = f"results/{self.name}_{table}.csv"
        for row in rows:
            if list(row.keys()) != columns:
                raise ValueError(f"{self.name}/{table}: row columns {list(row)} differ from {columns}")
        text = io.StringIO(newline="")
        writer = csv.DictWriter(text, fieldnames=columns)
        writer.writeheader()
        writer.writerows({k: _fmt(v) for k, v in row.items()} for row in rows)
        atomic_write(self.root / rel, text.getvalue().encode("utf-8"))
        self.tables.append({"path": rel, "caption": caption})
        return rel

    def save_figure(self, fig: Any, figure: str, caption: str) -> str:
        """Save a matplotlib figure as PNG (dpi 110) and close it. ``caption``: what it shows / how measured."""
        import matplotlib.pyplot as plt

        rel = f"figures/{self.name}_{figure}.png"
        atomic_write(self.root / rel, lambda tmp: fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight"))
        plt.close(fig)
        self.figures.append({"path": rel, "caption": caption})
        return rel

    def section(
        self,
        *,
        title: str,
        config: Mapping[str, Any],
        seed: int,
        runtime_s: float,
        device: str = "cpu",
        **body: Any,
    ) -> dict[str, Any]:
        """Build the section dict (``body``: findings, published, agreement, notes, scores) and write it to
        ``sections/<name>.json``."""
        section = {
            "name": self.name,
            "title": title,
            "figures": list(self.figures),
            "tables": list(self.tables),
            "findings": list(body.get("findings", [])),
            "published": body.get("published", ""),
            "agreement": body.get("agreement", ""),
            "config": dict(config),
            "seed": seed,
            "runtime_s": round(runtime_s, 2),
            "device": device,
            "notes": list(body.get("notes") or []),
            "scores": body.get("scores") or [],
        }
        atomic_write(self.root / "sections" / f"{self.name}.json", json.dumps(section, indent=2, default=str).encode())
        return section


def _fmt(value: Any) -> Any:
    """Floats with 6 significant digits in CSVs; everything else as is."""
    if isinstance(value, float):
        return f"{value:.6g}"
    return value


def matplotlib_agg() -> Any:
    """``matplotlib.pyplot`` with the non-interactive Agg backend selected."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt
