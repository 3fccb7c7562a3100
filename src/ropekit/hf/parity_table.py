"""Logit parity of ropekit-patched transformers models, every rope case x every family.

Run ``python -m ropekit.hf.parity_table`` (about 15 s on 2 cores). Each cell is the max |logit difference|
between the model and the same model after :func:`ropekit.hf.patch`, as ``prefill / cached decode``:
prefill is one forward pass over ``[2, 24]`` random tokens; cached decode prefills 20 tokens and decodes 4
one at a time with a ``DynamicCache`` (crossing dynamic NTK's threshold at 16 and LongRoPE's at 8).
``n/a`` marks combinations transformers itself rejects. See :mod:`ropekit.hf.families` for the configs.

``--layers`` prints the per-layer table instead: for the 6-layer Llama 4 and Gemma 3 models of
:data:`ropekit.hf.families.LAYER_FAMILIES`, what each layer does in transformers (its own rotary module and apply
function) and in a ropekit model built from :func:`ropekit.hf.config.from_hf_layers`, and the max |difference|
of the rotated q/k over ``[2, 24]`` tokens (positions ``0..23`` and ``5..28``).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Any

import torch

from ropekit.hf.config import from_hf_layers
from ropekit.hf.families import (
    FAMILIES,
    HEAD_DIM,
    LAYER_FAMILIES,
    ROPE_CASES,
    UnsupportedCase,
    tiny_layered_model,
    tiny_model,
)
from ropekit.hf.patch import patch

__all__ = ["layer_rows", "main", "measure"]

PREFILL, DECODE = 20, 4


def _runs(model: torch.nn.Module, ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits of a full forward ``[B, T, V]`` and of the decode steps ``[B, DECODE, V]``."""
    from transformers import DynamicCache

    full = model(ids).logits
    cache = DynamicCache(config=model.config)  # type: ignore[arg-type]  # nn.Module's __getattr__ hides the type
    out = model(ids[:, :PREFILL], past_key_values=cache, use_cache=True)
    steps = []
    for t in range(PREFILL, PREFILL + DECODE):
        out = model(ids[:, t : t + 1], past_key_values=out.past_key_values, use_cache=True)
        steps.append(out.logits[:, -1])
    return full, torch.stack(steps, dim=1)


@torch.no_grad()
def measure(family: str, case: str, *, seed: int = 0) -> tuple[float, float]:
    """``(prefill, decode)`` max |logit difference| of ``family`` x ``case`` with and without the patch."""
    model, override = tiny_model(family, case, seed=seed)
    ids = torch.randint(3, 128, (2, PREFILL + DECODE), generator=torch.Generator().manual_seed(seed))
    ref_full, ref_steps = _runs(model, ids)
    patch(model, rope_parameters=override)
    full, steps = _runs(model, ids)
    return float((full - ref_full).abs().max()), float((steps - ref_steps).abs().max())


def table(families: Sequence[str], cases: Sequence[str]) -> str:
    from tqdm import tqdm

    rows = ["| rope case | " + " | ".join(families) + " |", "|---|" + "---|" * len(families)]
    cells = {}
    for family, case in tqdm([(f, c) for c in cases for f in families], desc="parity", file=sys.stderr):
        try:
            prefill, decode = measure(family, case)
            cells[family, case] = f"{prefill:.1e} / {decode:.1e}"
        except UnsupportedCase:
            cells[family, case] = "n/a"
    for case in cases:
        rows.append(f"| {case} | " + " | ".join(cells[f, case] for f in families) + " |")
    return "\n".join(rows)


@torch.no_grad()
def layer_rows(family: str) -> list[tuple[int, str, str, str, float]]:
    """Per layer of ``family``'s tiny model: ``(layer, transformers, ropekit, temperature, max |q/k difference|)``,
    each side as ``"RoPE base b"`` / ``"NoPE"`` (plus ``window w`` / ``chunk c`` where set)."""
    from ropekit.models import DecoderLM, ModelConfig

    hf: Any = tiny_layered_model(family)  # transformers models: attributes typed by nn.Module
    read = from_hf_layers(hf.config)
    cfg = ModelConfig(
        task="lm", vocab_size=128, d_model=64, n_heads=4, n_layers=6, max_len=32, pe=read["pe"], layers=read["layers"]
    )
    lm = DecoderLM(cfg).eval()
    g = torch.Generator().manual_seed(0)
    q, k = torch.randn(2, 24, 4, HEAD_DIM, generator=g), torch.randn(2, 24, 4, HEAD_DIM, generator=g)  # [B, T, H, D]
    positions = torch.stack([torch.arange(24), torch.arange(24) + 5])
    rotary = hf.model.rotary_emb
    rows = []
    for i, layer in enumerate(hf.model.layers):
        attn: Any = layer.self_attn
        if family == "llama4":
            from transformers.models.llama4.modeling_llama4 import apply_rotary_emb

            rotates = bool(attn.use_rope)
            want = apply_rotary_emb(q, k, rotary(q, positions)) if rotates else (q, k)
            base = hf.config.rope_parameters["rope_theta"]
            extra = f", chunk {hf.config.attention_chunk_size}" if rotates and hf.config.attention_chunk_size else ""
            tuning = (
                f"floor {attn.floor_scale}, scale {attn.attn_scale}"
                if attn.attn_temperature_tuning and not rotates
                else "-"
            )
        else:
            from transformers.models.gemma3.modeling_gemma3 import apply_rotary_pos_emb

            rotates = True
            cos, sin = rotary(q, positions, attn.layer_type)
            want = tuple(
                t.transpose(1, 2) for t in apply_rotary_pos_emb(q.transpose(1, 2), k.transpose(1, 2), cos, sin)
            )
            base = hf.config.rope_parameters[attn.layer_type]["rope_theta"]
            extra = f", window {attn.sliding_window}" if attn.sliding_window else ""
            tuning = "-"
        theirs = f"RoPE base {base:g}{extra}" if rotates else "NoPE"
        enc: Any = lm.decoder.layer_encoding(i)
        block: Any = lm.decoder.blocks[i].attn
        if enc is None:
            got, ours = (q, k), "NoPE"
        else:
            qr, kr = enc.rotate(q.transpose(1, 2), k.transpose(1, 2), positions)
            got = (qr.transpose(1, 2), kr.transpose(1, 2))
            ours = f"RoPE base {enc.rotary.spec.rope_theta:g}" + (f", window {block.window}" if block.window else "")
        ours_t = f"floor {block.temperature[0]:g}, scale {block.temperature[1]:g}" if block.temperature else "-"
        diff = max(float((a - b).abs().max()) for a, b in zip(got, want, strict=True))
        rows.append(
            (
                i,
                theirs + f"; temperature {tuning}",
                ours + f"; temperature {ours_t}",
                read["per_layer"][i]["layer_type"] or "-",
                diff,
            )
        )
    return rows


def layer_table() -> str:
    rows = ["| family | layer | layer_type | transformers | ropekit | max abs q/k diff |", "|---|---|---|---|---|---|"]
    for family in LAYER_FAMILIES:
        for i, theirs, ours, layer_type, diff in layer_rows(family):
            rows.append(f"| {family} | {i} | {layer_type} | {theirs} | {ours} | {diff:.1e} |")
    return "\n".join(rows)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ropekit.hf.parity_table", description=__doc__.split("\n")[0])
    parser.add_argument("--families", nargs="+", default=list(FAMILIES), choices=list(FAMILIES))
    parser.add_argument("--cases", nargs="+", default=list(ROPE_CASES), choices=list(ROPE_CASES))
    parser.add_argument("--layers", action="store_true", help="per-layer table of Llama 4 and Gemma 3 instead")
    args = parser.parse_args(argv)
    import transformers

    torch.set_num_threads(1)
    transformers.logging.set_verbosity_error()
    if args.layers:
        print(f"per-layer rotation, ropekit (from_hf_layers) vs transformers {transformers.__version__}, float32")
        print(layer_table())
        return 0
    print(
        f"max |logit difference| patched vs transformers {transformers.__version__}, float32, prefill / cached decode"
    )
    print(table(args.families, args.cases))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
