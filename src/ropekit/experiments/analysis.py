"""Analysis without training: what RoPE's frequencies imply, computed from the formulas.

Six pieces, one function and one figure each: RoFormer's long-term decay bound for several bases; the base
lower bound of Men et al. 2024 (``sum_i cos(m theta_i) >= 0`` for every ``m <= L``) as the smallest passing base and
as the base above which every base passes (the passing set is not an interval); the critical dimension for a training
length; per-pair frequency and wavelength of every scaling type on one config (via :func:`ropekit.rope_frequencies`);
attention locality for large and small theta; and the Hilbert pair ``a'(r), b'(r)`` of the receptive-field
variant (docs/training.md).

Legend: ``d`` rotary dimension, ``r = m - n`` relative distance, ``theta_i = base^(-2i/d)``, ``i = 0 .. d/2-1``.
"""

from __future__ import annotations

import itertools
import math
from typing import Any

import numpy as np

from ropekit.experiments._common import CLAIMS_CAPTION, Claim, Outputs, agreement, claim_rows, matplotlib_agg, protocol

__all__ = [
    "NAME",
    "PRESETS",
    "TITLE",
    "critical_dimension",
    "decay_bound",
    "first_negative_position",
    "receptive_field_pair",
    "run",
]

NAME = "analysis"
TITLE = "Analysis without training: decay, base bounds, critical dimension, scaled frequencies, locality"

PRESETS: dict[str, dict[str, Any]] = {
    "tiny": {
        "dim": 32,
        "max_distance": 256,
        "bases": [100.0, 1e4, 1e6],
        "contexts": [64, 256, 1024],
        "base_grid_per_decade": 6,
        "heat_len": 32,
        "hilbert_len": 256,
    },
    "quick": {
        "dim": 128,
        "max_distance": 8192,
        "bases": [100.0, 1e3, 1e4, 1e5, 1e6],
        "contexts": [256, 512, 1024, 2048, 4096, 8192, 16384, 32768],
        "base_grid_per_decade": 24,
        "heat_len": 128,
        "hilbert_len": 2048,
    },
    "full": {
        "dim": 128,
        "max_distance": 32768,
        "bases": [100.0, 1e3, 1e4, 1e5, 1e6, 1e7],
        "contexts": [256, 512, 1024, 2048, 4096, 8192, 16384, 32768, 65536, 131072],
        "base_grid_per_decade": 48,
        "heat_len": 256,
        "hilbert_len": 8192,
    },
}
PRESETS["gpu"] = dict(PRESETS["full"])  # no model is trained: the GPU changes nothing

# One config for the frequency comparison: a Llama-like head (d=128) trained at 4096, extended 4x.
_FREQ_HEAD_DIM, _FREQ_L, _FREQ_FACTOR = 128, 4096, 4.0


def _thetas(dim: int, base: float) -> np.ndarray:
    """``[d/2]`` float64 ``base^(-2i/d)``."""
    return base ** (-np.arange(0, dim, 2, dtype=np.float64) / dim)


def decay_bound(dim: int, base: float, distances: np.ndarray) -> np.ndarray:
    """RoFormer's bound factor ``(1/(d/2)) sum_j |S_j(r)|``, ``S_j = sum_{i<j} e^{i r theta_i}``: ``[len(r)]``.

    RoFormer (Su et al. 2021, section 3.4.3): ``|sum_i h_i e^{i r theta_i}| <= max_i |h_{i+1} - h_i| sum_j |S_j|``.
    """
    phase = np.exp(1j * np.outer(distances, _thetas(dim, base)))  # [R, d/2]
    partial = np.cumsum(phase, axis=1)  # [R, d/2]: S_1 .. S_{d/2}
    return np.abs(partial).mean(axis=1)


def first_negative_position(dim: int, base: float, max_m: int, chunk: int = 8192) -> int:
    """Smallest ``m`` in ``1..max_m`` with ``sum_i cos(m theta_i) < 0``, or ``max_m + 1`` if none."""
    thetas = _thetas(dim, base)
    for start in range(1, max_m + 1, chunk):
        m = np.arange(start, min(max_m, start + chunk - 1) + 1, dtype=np.float64)
        total = np.cos(np.outer(m, thetas)).sum(axis=1)  # [chunk]
        neg = np.nonzero(total < 0)[0]
        if neg.size:
            return int(m[neg[0]])
    return max_m + 1


def critical_dimension(dim: int, base: float, train_len: int) -> int:
    """Liu et al. 2023 (Scaling Laws of RoPE-based Extrapolation): ``2 ceil((d/2) log_base(T_train / 2 pi))``.

    The number of leading dimensions whose pairs complete a full period within the training length (capped at d).
    """
    return min(dim, int(2 * math.ceil((dim / 2) * math.log(train_len / (2 * math.pi)) / math.log(base))))


def receptive_field_pair(
    q: np.ndarray, k: np.ndarray, distances: np.ndarray, alpha: float, base: float = 10000.0
) -> tuple[np.ndarray, np.ndarray]:
    """``a'(r), b'(r)``: real and imaginary parts of the complex score sum.

    ``sum_j (q_{2j} + i q_{2j+1})(k_{2j} - i k_{2j+1}) e^{i r (1-alpha) theta_j}``.

    The receptive-field variant (docs/training.md); ``q, k: [d]`` in the interleaved layout, result ``[len(r)]`` each.
    """
    zq = q[0::2] + 1j * q[1::2]
    zk = k[0::2] - 1j * k[1::2]
    thetas = _thetas(q.shape[0], base)
    s = (np.exp(1j * np.outer(distances, (1 - alpha) * thetas)) * (zq * zk)).sum(axis=1)  # [R]
    return s.real, s.imag


def _rope_score_direct(q: np.ndarray, k: np.ndarray, r: np.ndarray, thetas: np.ndarray) -> np.ndarray:
    """``<R_m q, R_n k>`` with ``m - n = r`` computed by rotating real 2-vectors (interleaved pairs): ``[len(r)]``."""
    q2, k2 = q.reshape(-1, 2), k.reshape(-1, 2)  # [d/2, 2]
    ang = np.outer(r, thetas)  # [R, d/2]
    c, s = np.cos(ang), np.sin(ang)
    # rotate q by r (k by 0): relative form of the score
    qr0 = c * q2[:, 0] - s * q2[:, 1]
    qr1 = s * q2[:, 0] + c * q2[:, 1]
    return (qr0 * k2[:, 0] + qr1 * k2[:, 1]).sum(axis=1)


def _analytic_imag(x: np.ndarray) -> np.ndarray:
    """Discrete Hilbert transform via the FFT analytic signal (imaginary part)."""
    n = x.shape[0]
    spec = np.fft.fft(x)
    h = np.zeros(n)
    h[0] = 1
    if n % 2 == 0:
        h[n // 2] = 1
        h[1 : n // 2] = 2
    else:
        h[1 : (n + 1) // 2] = 2
    return np.fft.ifft(spec * h).imag


Result = tuple[list[str], list[tuple[str, bool]], list[Claim]]  # findings, sanity checks, claims


def _decay(cfg: dict[str, Any], out: Outputs) -> Result:
    """1. RoFormer's long-term decay bound per base."""
    plt = matplotlib_agg()
    dim = cfg["dim"]
    distances = np.unique(np.round(np.geomspace(1, cfg["max_distance"], 400))).astype(np.float64)
    rows, (fig, ax) = [], plt.subplots(figsize=(6.4, 3.8))
    early_late = {}
    for base in cfg["bases"]:
        bound = decay_bound(dim, base, distances)
        rows += [
            {"base": base, "dim": dim, "distance": float(r), "mean_abs_partial_sum": float(b)}
            for r, b in zip(distances, bound, strict=True)
        ]
        ax.plot(distances, bound, label=f"base {base:g}")
        early_late[base] = (float(bound[distances <= 16].mean()), float(bound[distances >= distances[-1] / 4].mean()))
    ax.set(
        xscale="log",
        xlabel="relative distance r",
        ylabel="(2/d) sum_j |S_j(r)|",
        title=f"RoFormer decay bound, d={dim}",
    )
    ax.legend(fontsize=8)
    out.write_csv("decay", rows, "Mean |S_j(r)| per base and distance (RoFormer's upper-bound factor).")
    out.save_figure(
        fig,
        "decay",
        "RoFormer's long-term decay bound factor (2/d) sum_j |S_j(r)| versus distance, per base.\n"
        f"Computed exactly in float64 for d={dim} at {len(distances)} log-spaced distances.",
    )
    decays = [b for b, (e, late) in early_late.items() if late < e]
    claim = Claim(
        "the bound decays with relative distance",
        "Su et al. 2021 (RoFormer), section 3.4.3",
        "decaying upper bound (their figure 2, base 10000)",
        f"long-range mean below the r<=16 mean for {len(decays)} of {len(early_late)} bases",
        "agrees" if len(decays) == len(early_late) else "disagrees",
    )
    return (
        [
            f"Decay bound: the mean of |S_j| at long range is below its value at r<=16 for {len(decays)} of "
            f"{len(early_late)} bases ({', '.join(f'{b:g}' for b in decays) or 'none'})."
        ],
        [],
        [claim],
    )


def _base_bound(cfg: dict[str, Any], out: Outputs) -> Result:
    """2. Base lower bound: smallest passing base, and the base above which every grid base passes."""
    plt = matplotlib_agg()
    dim = cfg["dim"]
    lo_exp, hi_exp = 1.0, 10.0
    grid = 10 ** np.linspace(lo_exp, hi_exp, int((hi_exp - lo_exp) * cfg["base_grid_per_decade"]) + 1)
    first_neg = np.array([first_negative_position(dim, b, max(cfg["contexts"])) for b in grid])  # [G]
    rows, smallest, all_above = [], [], []
    for L in cfg["contexts"]:
        ok = first_neg > L  # [G]
        base_min = float(grid[ok].min()) if ok.any() else math.nan
        fails = np.nonzero(~ok)[0]
        above = (
            float(grid[fails[-1] + 1])
            if fails.size and fails[-1] + 1 < grid.size
            else (float(grid[0]) if not fails.size else math.nan)
        )
        holes = int(((~ok) & (grid > base_min)).sum()) if ok.any() else 0
        smallest.append(base_min)
        all_above.append(above)
        rows.append(
            {
                "dim": dim,
                "context_length": L,
                "smallest_passing_base": base_min,
                "every_base_passes_above": above,
                "failing_grid_bases_above_smallest": holes,
                "grid_points_per_decade": cfg["base_grid_per_decade"],
            }
        )
    out.write_csv(
        "base_bound",
        rows,
        "Base lower bound per context: smallest passing base and the base above which every grid base passes.",
    )
    fig, ax = plt.subplots(figsize=(6.4, 3.8))
    ax.plot(cfg["contexts"], smallest, "o-", label="smallest passing base")
    ax.plot(cfg["contexts"], all_above, "s--", label="every base above passes")
    ax.set(xscale="log", yscale="log", xlabel="context length L", ylabel="base", title=f"Base lower bound, d={dim}")
    ax.legend(fontsize=8)
    out.save_figure(
        fig,
        "base_bound",
        "RoPE base lower bound: sum_i cos(m theta_i) >= 0 for every m <= L, as the smallest passing base and as the "
        "base "
        "above which every base passes.\n"
        f"Exhaustive check of m = 1..L in float64 over a log grid of bases ({cfg['base_grid_per_decade']} per "
        f"decade), d={dim}.",
    )
    finite = [v for v in all_above if math.isfinite(v)]
    monotone = all(b >= a for a, b in itertools.pairwise(finite))
    holes = sum(r["failing_grid_bases_above_smallest"] > 0 for r in rows)
    finding = (
        f"Base bound (d={dim}): at L={cfg['contexts'][0]} smallest passing base {smallest[0]:.3g}, every base above "
        f"{all_above[0]:.3g} passes; at L={cfg['contexts'][-1]}: {smallest[-1]:.3g} and {all_above[-1]:.3g}. "
        f"For {holes} of {len(rows)} contexts some base above the smallest passing one fails (not an interval)."
    )
    claim = Claim(
        "the base lower bound grows with the context length",
        "Men et al. 2024 (Base of RoPE Bounds Context Length)",
        "bound increasing in L (published tables disagree with each other, so no number is quoted)",
        f"'every base above passes' non-decreasing in L: {monotone}",
        "agrees" if monotone else "disagrees",
    )
    return [finding], [], [claim]


def _critical(cfg: dict[str, Any], out: Outputs) -> Result:
    """3. Critical dimension per base and training length (Liu et al. 2023)."""
    plt = matplotlib_agg()
    dim = cfg["dim"]
    train_lens = [256, 512, 1024, 2048, 4096, 8192, 16384, 32768]
    rows = [
        {"dim": dim, "base": b, "train_len": t, "critical_dim": critical_dimension(dim, b, t)}
        for b in cfg["bases"]
        for t in train_lens
    ]
    out.write_csv(
        "critical_dim", rows, "Critical dimension 2 ceil((d/2) log_base(T/2pi)) per base and training length."
    )
    fig, ax = plt.subplots(figsize=(6.4, 3.8))
    for b in cfg["bases"]:
        ax.plot(train_lens, [critical_dimension(dim, b, t) for t in train_lens], "o-", label=f"base {b:g}")
    ax.axhline(dim, color="grey", lw=0.8, ls=":")
    ax.set(xscale="log", xlabel="training length T", ylabel="critical dimension", title=f"Critical dimension, d={dim}")
    ax.legend(fontsize=8)
    out.save_figure(
        fig,
        "critical_dim",
        "Dimensions whose rotary pairs complete a full period within the training length.\n"
        "Formula of Liu et al. 2023 evaluated per base and training length (no training).",
    )
    crit = critical_dimension(128, 10000.0, 4096)
    claim = Claim(
        "critical dimension for d=128, base 10000, T=4096",
        "Liu et al. 2023 (Scaling Laws of RoPE-based Extrapolation)",
        "92",
        str(crit),
        "agrees" if crit == 92 else "disagrees",
    )
    return [f"Critical dimension for d=128, base 10000, T=4096: {crit}."], [], [claim]


def _frequencies(cfg: dict[str, Any], out: Outputs) -> Result:
    """4. Per-pair frequencies of every scaling type on one config (via ``ropekit.rope_frequencies``)."""
    from ropekit import rope_frequencies

    plt = matplotlib_agg()
    L, s = _FREQ_L, _FREQ_FACTOR
    r = _FREQ_HEAD_DIM // 2
    variants: dict[str, dict[str, Any]] = {
        "default": {"rope_type": "default"},
        "PI (linear)": {"rope_type": "linear", "factor": s},
        "NTK": {"rope_type": "ntk", "factor": s},
        "dynamic NTK": {"rope_type": "dynamic", "factor": s},
        "YaRN": {"rope_type": "yarn", "factor": s, "original_max_position_embeddings": L},
        "Llama 3": {
            "rope_type": "llama3",
            "factor": s,
            "low_freq_factor": 1.0,
            "high_freq_factor": 4.0,
            "original_max_position_embeddings": L,
        },
        # illustrative LongRoPE factors: 1 at the highest frequency rising linearly to `s` at the lowest
        "LongRoPE": {
            "rope_type": "longrope",
            "short_factor": [1.0] * r,
            "long_factor": list(np.linspace(1.0, s, r)),
            "original_max_position_embeddings": L,
        },
    }
    rows: list[dict[str, Any]] = []
    table: dict[str, np.ndarray] = {}
    for label, params in variants.items():
        params = {"rope_theta": 10000.0, **params}
        max_pos = int(L * s) if params["rope_type"] in ("longrope",) else L
        inv, att = rope_frequencies(
            params, head_dim=_FREQ_HEAD_DIM, max_position_embeddings=max_pos, seq_len=int(L * s)
        )
        table[label] = inv.double().numpy()
        for i, f in enumerate(table[label].tolist()):
            rows.append(
                {
                    "variant": label,
                    "pair": i,
                    "inv_freq": f,
                    "wavelength": 2 * math.pi / f if f else math.inf,
                    "attention_factor": att,
                    "head_dim": _FREQ_HEAD_DIM,
                    "original_length": L,
                    "factor": s,
                    "evaluated_length": int(L * s),
                }
            )
    out.write_csv(
        "frequencies",
        rows,
        "Per-pair inverse frequency and wavelength for each scaling type (ropekit.rope_frequencies).",
    )
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.8))
    for label, inv_np in table.items():
        axes[0].plot(2 * math.pi / inv_np, label=label, lw=1.2)
        axes[1].plot(inv_np / table["default"], label=label, lw=1.2)
    axes[0].axhline(L, color="grey", ls=":", lw=0.8)
    axes[0].set(yscale="log", xlabel="pair i", ylabel="wavelength (tokens)", title="Wavelength per pair")
    axes[1].set(xlabel="pair i", ylabel="inv_freq / default", title=f"Ratio to default (factor {s:g})")
    axes[1].legend(fontsize=7)
    out.save_figure(
        fig,
        "frequencies",
        f"Per-pair wavelength and ratio to default RoPE for seven scaling types (d={_FREQ_HEAD_DIM}, "
        f"L={L}, factor {s:g}).\nFrom ropekit.rope_frequencies at length {int(L * s)}; dotted line = L; "
        "LongRoPE factors are illustrative (linear 1 -> factor).",
    )
    yarn, base_f = table["YaRN"], table["default"]
    between = bool(np.all(yarn <= base_f * (1 + 1e-6)) and np.all(yarn >= base_f / s * (1 - 1e-6)))
    kept = int(np.isclose(yarn, base_f, rtol=1e-6).sum())
    interp = int(np.isclose(yarn, base_f / s, rtol=1e-6).sum())
    finding = (
        f"YaRN at factor {s:g}: {kept} of {r} pairs keep the default frequency, {interp} are divided by "
        f"{s:g}, all lie between default/{s:g} and default: {between}."
    )
    claim = Claim(
        "YaRN keeps high frequencies and interpolates low ones (all between default/s and default)",
        "Peng et al. 2023 (YaRN)",
        "ramp between no interpolation and PI",
        f"{kept} kept, {interp} divided by s, between: {between}",
        "agrees" if between and kept and interp else "disagrees",
    )
    return [finding], [], [claim]


def _locality(cfg: dict[str, Any], out: Outputs) -> Result:
    """5. Attention locality for large and small theta (the receptive-field variant, docs/training.md)."""
    import matplotlib.colors as mcolors

    plt = matplotlib_agg()
    T = cfg["heat_len"]
    hd = 64
    pos = np.arange(T)
    rel = pos[:, None] - pos[None, :]  # [T, T]
    scales = {"large theta (x4)": 4.0, "small theta (x0.02)": 0.02}
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.8))
    rows, local_mass = [], {}
    for ax, (label, scale) in zip(axes, scales.items(), strict=True):
        thetas = scale * _thetas(hd, 10000.0)
        # q = k = all-ones content: the score depends on position only, sum_i 2 cos(r theta_i)
        score = 2 * np.cos(rel[..., None] * thetas).sum(-1) / math.sqrt(hd)  # [T, T]
        score = np.where(rel >= 0, score, -np.inf)  # causal
        att = np.exp(score - score.max(axis=1, keepdims=True))
        att /= att.sum(axis=1, keepdims=True)
        w = 8
        mass = float(np.where((rel >= 0) & (rel <= w), att, 0).sum(axis=1)[T // 2 :].mean())
        local_mass[label] = mass
        rows.append(
            {
                "variant": label,
                "theta_scale": scale,
                "head_dim": hd,
                "length": T,
                "window": w,
                "mean_mass_within_window": mass,
            }
        )
        im = ax.imshow(att, cmap="viridis", aspect="auto", norm=mcolors.PowerNorm(gamma=0.3))
        ax.set(title=f"{label}: mass within {w} = {mass:.2f}", xlabel="key position n", ylabel="query position m")
    out.write_csv("locality", rows, "Mean attention mass within 8 tokens of the diagonal (queries in the second half).")
    (lab_big, m_big), (lab_small, m_small) = local_mass.items()
    fig.colorbar(im, ax=list(axes), shrink=0.85, label="attention weight (gamma 0.3)")
    out.save_figure(
        fig,
        "locality",
        "Causal softmax attention of identical content q = k under RoPE with frequencies scaled x4 and x0.02.\n"
        f"Scores sum_i 2cos((m-n)theta_i)/sqrt(d), d={hd}, base 10000; colour gamma 0.3.",
    )
    claim = Claim(
        "larger theta concentrates attention near the diagonal",
        "the receptive-field variant (docs/training.md)",
        "qualitative",
        f"mass within 8 tokens {m_big:.2f} ({lab_big}) vs {m_small:.2f} ({lab_small})",
        "agrees" if m_big > m_small else "disagrees",
    )
    return (
        [f"Locality: attention mass within 8 tokens is {m_big:.2f} for {lab_big} and {m_small:.2f} for {lab_small}."],
        [],
        [claim],
    )


def _receptive_field(cfg: dict[str, Any], out: Outputs, seed: int) -> Result:
    """6. The receptive-field variant's Hilbert pair ``a'(r), b'(r)``, checked against the direct score."""
    plt = matplotlib_agg()
    rng = np.random.default_rng(seed)
    hd = 64
    q, k = rng.standard_normal(hd), rng.standard_normal(hd)
    k = 0.5 * k + 0.5 * q  # correlated content, so the score has a visible trend
    rdist = np.arange(cfg["hilbert_len"], dtype=np.float64)
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6), sharey=True)
    rows, max_err, hilbert_corr = [], 0.0, {}
    rhos = [0.25, 0.5]
    for ax, alpha in zip(axes, [0.0, 0.5, 0.9], strict=True):
        a, b = receptive_field_pair(q, k, rdist, alpha)
        ax.plot(rdist, a, lw=0.9, label="a'(r)")
        ax.plot(rdist, b, lw=0.9, label="b'(r)")
        for rho in rhos:
            phi = alpha / 10000.0**rho
            score = np.cos(rdist * phi) * a - np.sin(rdist * phi) * b
            direct = _rope_score_direct(q, k, rdist, phi + (1 - alpha) * _thetas(hd, 10000.0))
            max_err = max(max_err, float(np.abs(score - direct).max()))
            for r_, a_, b_, s_ in zip(rdist[::8], a[::8], b[::8], score[::8], strict=True):
                rows.append(
                    {
                        "alpha": alpha,
                        "rho": rho,
                        "distance": float(r_),
                        "a_prime": float(a_),
                        "b_prime": float(b_),
                        "score": float(s_),
                    }
                )
        hb = _analytic_imag(a - a.mean())
        hilbert_corr[alpha] = float(np.corrcoef(hb, b - b.mean())[0, 1])
        ax.set(title=f"alpha={alpha:g}: corr(H[a'], b') = {hilbert_corr[alpha]:.2f}", xlabel="relative distance r")
        ax.legend(fontsize=8)
    axes[0].set_ylabel("value")
    out.write_csv("receptive_field", rows, "a'(r), b'(r) and the score cos(r phi) a' - sin(r phi) b' for alpha, rho.")
    out.save_figure(
        fig,
        "receptive_field",
        "Real and imaginary parts a'(r), b'(r) of the receptive-field RoPE variant for three alpha.\n"
        f"Random q, k (d={hd}, seed {seed}); title: correlation of b' with the FFT Hilbert transform of a'.",
    )
    finding = (
        f"Receptive-field variant: cos(r phi) a' - sin(r phi) b' matches the direct RoPE score with "
        f"theta* = phi + (1-alpha) theta to max |error| {max_err:.2e}; corr(H[a'], b') = "
        + ", ".join(f"{v:.2f} (alpha {k:g})" for k, v in hilbert_corr.items())
        + "."
    )
    sanity = [
        (
            f"the Hilbert-pair score equals the direct RoPE score with theta* (max |error| {max_err:.1e} <= 1e-9)",
            max_err <= 1e-9,
        )
    ]
    return [finding], sanity, []


@protocol
def run(cfg: dict[str, Any], out: Outputs, *, seed: int) -> dict[str, Any]:
    """The six analyses, one function each; the verdict over their claims."""
    findings: list[Any] = []
    sanity: list[Any] = []
    claims: list[Any] = []
    for part in (_decay, _base_bound, _critical, _frequencies, _locality):
        f, s, c = part(cfg, out)
        findings, sanity, claims = findings + f, sanity + s, claims + c
    f, s, c = _receptive_field(cfg, out, seed)
    findings, sanity, claims = findings + f, sanity + s, claims + c
    out.write_csv("claims", claim_rows(sanity, claims), CLAIMS_CAPTION)
    published = (
        "YaRN (Peng et al. 2023) interpolates low frequencies and keeps high ones; docs/training.md: larger "
        "theta gives more local attention; Men et al. 2024 (Base of RoPE Bounds Context Length): the base lower "
        "bound grows with context; Liu et al. 2023: critical dimension 92 for d=128, T=4096; RoFormer: decaying bound."
    )
    return {"findings": findings, "published": published, "agreement": agreement(sanity, claims)}
