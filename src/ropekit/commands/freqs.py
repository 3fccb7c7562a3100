"""``ropekit freqs``: per rotary pair, the frequency and wavelength before and after scaling.

For a scaled type, "effective context" of pair ``i`` is the length at which the scaled pair has turned
through the same angle as the unscaled pair does over the original context:
``L_eff_i = L * inv_default_i / inv_scaled_i`` (``L`` = original context; ``inf`` for frequency 0).
"""

from __future__ import annotations

import argparse
import math
from typing import Any

from ropekit.hf.config import from_hf_config, load_config_file
from ropekit.scaling import parse_rope_parameters, rope_frequencies, unscaled_spec

__all__ = ["frequency_table", "register"]


def frequency_table(config: dict[str, Any], *, seq_len: int | None = None) -> tuple[list[dict[str, float]], dict]:
    """Rows ``{pair, inv_freq, wavelength, scaled_inv_freq, scaled_wavelength, effective_context}`` and a
    summary dict (rope type, theta, head/rotary dim, attention factor, original context)."""
    args = from_hf_config(config)
    spec = parse_rope_parameters(args["rope_parameters"])
    head_dim, max_pos = args["head_dim"], args["max_position_embeddings"]
    plain, _ = rope_frequencies(unscaled_spec(spec), head_dim=head_dim)
    scaled, attention_factor = rope_frequencies(
        spec, head_dim=head_dim, max_position_embeddings=max_pos, seq_len=seq_len
    )
    original = getattr(spec.params, "original_max_position_embeddings", None) or max_pos
    rows = []
    for i, (f0, f1) in enumerate(zip(plain.tolist(), scaled.tolist(), strict=True)):
        rows.append(
            {
                "pair": i,
                "inv_freq": f0,
                "wavelength": 2 * math.pi / f0 if f0 else math.inf,
                "scaled_inv_freq": f1,
                "scaled_wavelength": 2 * math.pi / f1 if f1 else math.inf,
                "effective_context": (original * f0 / f1) if (f1 and original) else math.inf,
            }
        )
    summary = {
        "rope_type": spec.rope_type,
        "rope_theta": spec.rope_theta,
        "head_dim": head_dim,
        "rotary_dim": 2 * len(rows),
        "attention_factor": attention_factor,
        "original_context": original,
        "interleaved": args["interleaved"],
    }
    return rows, summary


def _run(args: argparse.Namespace) -> int:
    rows, summary = frequency_table(load_config_file(args.config), seq_len=args.seq_len)
    print("  ".join(f"{k}={v}" for k, v in summary.items()))
    scaled = summary["rope_type"] != "default"
    header = f"{'pair':>4} {'inv_freq':>12} {'wavelength':>12}"
    if scaled:
        header += f" {'scaled_freq':>12} {'scaled_wl':>12} {'eff_context':>12}"
    print(header)
    for r in rows:
        line = f"{r['pair']:>4} {r['inv_freq']:>12.6g} {r['wavelength']:>12.6g}"
        if scaled:
            line += f" {r['scaled_inv_freq']:>12.6g} {r['scaled_wavelength']:>12.6g} {r['effective_context']:>12.6g}"
        print(line)
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("freqs", help="per-pair frequencies and wavelengths of a Hugging Face config")
    p.add_argument("--config", required=True, help="path to a config.json")
    p.add_argument("--seq-len", type=int, default=None, help="current length (dynamic NTK, LongRoPE)")
    p.set_defaults(func=_run)
