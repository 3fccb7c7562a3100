"""Parity of :func:`ropekit.rope_frequencies` with transformers' own rope functions.

Imports transformers (the ``hf`` extra); used by ``ropekit verify`` and the tests. ``PARITY_CASES`` is a
spread of configs over every rope type transformers has (``ntk`` is ropekit's own and is checked by
formula in the tests).
"""

from __future__ import annotations

import copy
import logging
import random
from typing import Any

import torch
import transformers
from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS

from ropekit.scaling import rope_frequencies

__all__ = ["PARITY_CASES", "ParityCase", "max_relative_difference", "transformers_frequencies"]

ParityCase = tuple[dict[str, Any], int, int, int | None]  # params, head_dim, max_position_embeddings, seq_len


def _longrope_lists(n: int, seed: int) -> tuple[list[float], list[float]]:
    rng = random.Random(seed)
    short = [1.0 + rng.random() * 0.2 for _ in range(n)]
    long = [1.0 + i * 0.5 + rng.random() for i in range(n)]
    return short, long


def _cases() -> list[ParityCase]:
    cases: list[ParityCase] = []
    for head_dim in (64, 128, 96):
        for partial in (1.0, 0.5):
            p = {"partial_rotary_factor": partial} if partial != 1.0 else {}
            dim = int(head_dim * partial)
            for theta in (10_000.0, 500_000.0, 1_000_000.0):
                cases.append(({"rope_type": "default", "rope_theta": theta, **p}, head_dim, 4096, None))
            for factor in (2.0, 8.0):
                cases.append(({"rope_type": "linear", "factor": factor, **p}, head_dim, 4096, None))
            for seq_len in (None, 4096, 5000, 40_000):
                cases.append(({"rope_type": "dynamic", "factor": 4.0, **p}, head_dim, 4096, seq_len))
            yarn = {"rope_type": "yarn", "original_max_position_embeddings": 4096, **p}
            cases += [
                ({**yarn, "factor": 4.0}, head_dim, 16_384, None),
                ({**yarn, "factor": 32.0, "rope_theta": 150_000.0}, head_dim, 131_072, None),
                ({**yarn, "factor": 40.0, "mscale": 1.0, "mscale_all_dim": 1.0}, head_dim, 163_840, None),
                ({**yarn, "factor": 40.0, "mscale": 0.707, "mscale_all_dim": 1.0}, head_dim, 163_840, None),
                (
                    {
                        **yarn,
                        "factor": 32.0,
                        "truncate": False,
                        "beta_fast": 32.0,
                        "beta_slow": 1.0,
                        "rope_theta": 150_000.0,
                    },
                    head_dim,
                    131_072,
                    None,
                ),
                (
                    {**yarn, "factor": 8.0, "beta_fast": 16.0, "beta_slow": 2.0, "attention_factor": 1.3},
                    head_dim,
                    32_768,
                    None,
                ),
            ]
            short, long = _longrope_lists(dim // 2, seed=head_dim)
            lr = {
                "rope_type": "longrope",
                "short_factor": short,
                "long_factor": long,
                "original_max_position_embeddings": 4096,
                **p,
            }
            for seq_len in (None, 4096, 4097, 100_000):
                cases.append((lr, head_dim, 131_072, seq_len))
            cases.append(({**lr, "factor": 16.0, "attention_factor": 1.2}, head_dim, 131_072, 9000))
            cases.append(
                (
                    {
                        "rope_type": "llama3",
                        "factor": 8.0,
                        "low_freq_factor": 1.0,
                        "high_freq_factor": 4.0,
                        "original_max_position_embeddings": 8192,
                        "rope_theta": 500_000.0,
                        **p,
                    },
                    head_dim,
                    131_072,
                    None,
                )
            )
            cases.append(
                (
                    {
                        "rope_type": "llama3",
                        "factor": 32.0,
                        "low_freq_factor": 2.0,
                        "high_freq_factor": 8.0,
                        "original_max_position_embeddings": 2048,
                        **p,
                    },
                    head_dim,
                    65_536,
                    None,
                )
            )
        for partial, factor in ((0.25, 1.0), (0.5, 8.0), (1.0, 4.0)):
            cases.append(
                (
                    {
                        "rope_type": "proportional",
                        "rope_theta": 1_000_000.0,
                        "partial_rotary_factor": partial,
                        "factor": factor,
                    },
                    head_dim,
                    4096,
                    None,
                )
            )
    return cases


PARITY_CASES: list[ParityCase] = _cases()


def transformers_frequencies(
    params: dict[str, Any], head_dim: int, max_position_embeddings: int, seq_len: int | None
) -> tuple[torch.Tensor, float]:
    """What transformers computes for the same rope parameters (a Llama config carries them)."""
    logging.getLogger("transformers").setLevel(logging.ERROR)
    n_heads = 4
    config = transformers.LlamaConfig(
        hidden_size=n_heads * head_dim,
        num_attention_heads=n_heads,
        num_key_value_heads=n_heads,
        head_dim=head_dim,
        max_position_embeddings=max_position_embeddings,
        rope_parameters=copy.deepcopy(params),
    )
    rope_type = params.get("rope_type", "default")
    if rope_type not in ROPE_INIT_FUNCTIONS:
        # transformers 5 computes default RoPE in each model class; GPT-NeoX's honours partial_rotary_factor
        neox = transformers.models.gpt_neox.modeling_gpt_neox.GPTNeoXRotaryEmbedding
        return neox.compute_default_rope_parameters(config)  # type: ignore[arg-type]  # reads only rope keys
    return ROPE_INIT_FUNCTIONS[rope_type](config, torch.device("cpu"), seq_len=seq_len)


def max_relative_difference(cases: list[ParityCase] | None = None) -> float:
    """Worst relative difference of inv_freq (and of the attention factor) over the cases."""
    worst = 0.0
    for params, head_dim, max_pos, seq_len in cases or PARITY_CASES:
        ours, ours_af = rope_frequencies(params, head_dim=head_dim, max_position_embeddings=max_pos, seq_len=seq_len)
        theirs, theirs_af = transformers_frequencies(params, head_dim, max_pos, seq_len)
        theirs = theirs.to(torch.float32)
        if ours.shape != theirs.shape:
            return float("inf")
        denom = theirs.abs().clamp_min(torch.finfo(torch.float32).tiny)
        rel = ((ours - theirs).abs() / denom).max().item() if ours.numel() else 0.0
        worst = max(worst, rel, abs(ours_af - float(theirs_af)) / abs(float(theirs_af)))
    return worst
