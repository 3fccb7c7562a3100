"""Logit parity of ropekit-patched transformers models, every rope case x every family.

Run ``python -m ropekit.hf.parity_table`` (about 15 s on 2 cores). Each cell is the max |logit difference|
between the model and the same model after :func:`ropekit.hf.patch`, as ``prefill / cached decode``:
prefill is one forward pass over ``[2, 24]`` random tokens; cached decode prefills 20 tokens and decodes 4
one at a time with a ``DynamicCache`` (crossing dynamic NTK's threshold at 16 and LongRoPE's at 8).
``n/a`` marks combinations transformers itself rejects. See :mod:`ropekit.hf.families` for the configs.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

import torch

from ropekit.hf.families import FAMILIES, ROPE_CASES, UnsupportedCase, tiny_model
from ropekit.hf.patch import patch

__all__ = ["main", "measure"]

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


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ropekit.hf.parity_table", description=__doc__.split("\n")[0])
    parser.add_argument("--families", nargs="+", default=list(FAMILIES), choices=list(FAMILIES))
    parser.add_argument("--cases", nargs="+", default=list(ROPE_CASES), choices=list(ROPE_CASES))
    args = parser.parse_args(argv)
    import transformers

    torch.set_num_threads(1)
    transformers.logging.set_verbosity_error()
    print(
        f"max |logit difference| patched vs transformers {transformers.__version__}, float32, prefill / cached decode"
    )
    print(table(args.families, args.cases))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
