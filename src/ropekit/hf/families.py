"""Tiny random transformers models of each supported family, for parity tests and the parity table.

No downloads: models are built from configs (hidden 64, 2 layers, 4 heads of 16, vocab 128). Each rope case
is written for a context of ``MAX_POS = 32`` with an original length of ``ORIGINAL = 8`` so that a 24-token
sequence crosses dynamic NTK's threshold (16, half the context for ``dynamic``) and LongRoPE's switch.

Legend: ``r = rotary_dim / 2`` (``rotary_dim = head_dim * partial_rotary_factor``; GPT-NeoX uses 0.25).
"""

from __future__ import annotations

import random
from typing import Any

import torch

__all__ = [
    "FAMILIES",
    "HEAD_DIM",
    "LAYER_FAMILIES",
    "MAX_POS",
    "ORIGINAL",
    "ROPE_CASES",
    "UnsupportedCase",
    "rope_case",
    "tiny_layered_model",
    "tiny_model",
]

HEAD_DIM = 16
MAX_POS = 32
ORIGINAL = 8

# family -> transformers model_type; Gemma 3's text model has rope parameters nested per layer type
FAMILIES: dict[str, str] = {
    "llama": "llama",
    "mistral": "mistral",
    "qwen2": "qwen2",
    "qwen3": "qwen3",
    "phi3": "phi3",
    "gpt_neox": "gpt_neox",
    "gemma": "gemma",
    "gemma2": "gemma2",
    "gemma3": "gemma3_text",
    "deepseek_v3": "deepseek_v3",
    "gpt_oss": "gpt_oss",
    "smollm3": "smollm3",
}
_PARTIAL = {"gpt_neox": 0.25}  # GPT-NeoX's rotary_pct default (Pythia)

ROPE_CASES = (
    "default",
    "linear",
    "ntk",
    "dynamic",
    "yarn",
    "yarn_deepseek",
    "yarn_gpt_oss",
    "longrope",
    "llama3",
    "proportional",
)


class UnsupportedCase(ValueError):
    """transformers itself rejects this family x rope case (e.g. Phi-3 with anything but default/longrope)."""


def _longrope_factors(n: int) -> tuple[list[float], list[float]]:
    rng = random.Random(n)
    return [1.0 + 0.1 * rng.random() for _ in range(n)], [1.0 + 0.5 * i + rng.random() for i in range(n)]


def rope_case(case: str, *, partial: float = 1.0) -> tuple[dict[str, Any], dict[str, Any] | None, int]:
    """``(hf_params, ropekit_override, max_position_embeddings)`` for one rope case.

    ``hf_params`` configure the transformers model; ``ropekit_override`` (or ``None``) is passed to
    :func:`ropekit.hf.patch` when transformers has no such type: ``ntk`` is checked against transformers
    ``default`` with the NTK-enlarged base ``theta * factor ** (d / (d - 2))``, which is what it means.
    """
    theta = 10_000.0
    p: dict[str, Any] = {"rope_theta": theta}
    if partial != 1.0:
        p["partial_rotary_factor"] = partial
    dim = int(HEAD_DIM * partial)
    original = {"original_max_position_embeddings": ORIGINAL}
    if case == "default":
        return {"rope_type": "default", **p}, None, MAX_POS
    if case == "linear":
        return {"rope_type": "linear", "factor": 2.0, **p}, None, MAX_POS
    if case == "ntk":
        factor = 4.0
        enlarged = {**p, "rope_theta": theta * factor ** (dim / (dim - 2))}
        return {"rope_type": "default", **enlarged}, {"rope_type": "ntk", "factor": factor, **p}, MAX_POS
    if case == "dynamic":
        return {"rope_type": "dynamic", "factor": 2.0, **p}, None, MAX_POS // 2
    if case == "yarn":
        return {"rope_type": "yarn", "factor": 4.0, **original, **p}, None, MAX_POS
    if case == "yarn_deepseek":  # DeepSeek V2/V3 style: mscale and mscale_all_dim
        extra = {"mscale": 0.707, "mscale_all_dim": 1.0, "beta_fast": 32.0, "beta_slow": 1.0}
        return {"rope_type": "yarn", "factor": 4.0, **extra, **original, **p}, None, MAX_POS
    if case == "yarn_gpt_oss":  # gpt-oss style: no floor/ceil of the ramp bounds
        extra = {"truncate": False, "beta_fast": 32.0, "beta_slow": 1.0}
        return {"rope_type": "yarn", "factor": 4.0, **extra, **original, **p}, None, MAX_POS
    if case == "longrope":
        short, long = _longrope_factors(dim // 2)
        params = {"rope_type": "longrope", "short_factor": short, "long_factor": long, **original, **p}
        return params, None, MAX_POS
    if case == "llama3":
        extra = {"factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0}
        return {"rope_type": "llama3", **extra, **original, **p}, None, MAX_POS
    if case == "proportional":
        return {"rope_type": "proportional", "rope_theta": theta, "partial_rotary_factor": 0.5}, None, MAX_POS
    raise ValueError(f"unknown rope case {case!r}; expected one of {ROPE_CASES}")


def _for_rotary_dim(case, dim, params, override):
    """Rebuild a case for a rotary dimension other than ``HEAD_DIM`` (LongRoPE lists, NTK's base depend on it)."""
    if case in ("longrope", "ntk"):
        params, override, _ = rope_case(case, partial=dim / HEAD_DIM)
        params.pop("partial_rotary_factor", None)
        if override is not None:
            override.pop("partial_rotary_factor", None)
    return params, override


def tiny_model(
    family: str, case: str, *, seed: int = 0, layers: int = 2
) -> tuple[torch.nn.Module, dict[str, Any] | None]:
    """A random ``*ForCausalLM`` of ``family`` in eval mode, float32, eager attention, and the ropekit
    override for :func:`ropekit.hf.patch` (``None`` unless the case needs one).

    Gemma 3 gets the case on its ``full_attention`` layers and default RoPE on its sliding ones, as published.
    Raises ``ValueError`` when transformers rejects the combination (Phi-3 accepts only default and longrope).
    """
    from transformers import AutoConfig, AutoModelForCausalLM

    if family not in FAMILIES:
        raise ValueError(f"unknown family {family!r}; expected one of {sorted(FAMILIES)}")
    partial = _PARTIAL.get(family, 1.0)
    params, override, max_pos = rope_case(case, partial=partial)
    kwargs: dict[str, Any] = dict(
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=layers,
        num_attention_heads=4,
        head_dim=HEAD_DIM,
        vocab_size=128,
        max_position_embeddings=max_pos,
        pad_token_id=0,
        bos_token_id=1,
        eos_token_id=2,
    )
    if family != "gpt_neox":
        kwargs["num_key_value_heads"] = 2  # GQA
    if family == "phi3":
        kwargs["original_max_position_embeddings"] = ORIGINAL  # Phi-3 keeps it at the top level
    if family == "gemma3":
        local = {"rope_type": "default", "rope_theta": 10_000.0}
        params = {"full_attention": params, "sliding_attention": local}
        override = {"full_attention": override} if override is not None else None
        kwargs.update(layer_types=["sliding_attention", "full_attention"][-layers:], sliding_window=16)
    if family == "gemma2":
        kwargs.update(sliding_window=16)
    if family == "deepseek_v3":  # MLA: 8 of each head's 16 q/k features rotate, interleaved pairs; dense MLPs
        mla = dict(kv_lora_rank=16, q_lora_rank=None, qk_rope_head_dim=8, qk_nope_head_dim=8, v_head_dim=16)
        moe = dict(n_routed_experts=4, num_experts_per_tok=2, n_group=1, topk_group=1, first_k_dense_replace=layers)
        kwargs.update(**mla, **moe, num_key_value_heads=4, moe_intermediate_size=32)
        kwargs.pop("head_dim")
        params, override = _for_rotary_dim(case, 8, params, override)
    if family == "smollm3":  # NoPE layers by index (SmolLM3): layer 0 rotates, layer 1 does not
        kwargs.update(no_rope_layers=[1, 0][:layers])
    if family == "gpt_oss":  # tables of width r (no duplicated halves); 2 experts, alternating sliding layers
        kwargs.update(num_local_experts=2, num_experts_per_tok=1, sliding_window=16)
    try:
        config = AutoConfig.for_model(FAMILIES[family], rope_parameters=params, **kwargs)
        config._attn_implementation = "eager"
        torch.manual_seed(seed)
        model = AutoModelForCausalLM.from_config(config).float().eval()
    except Exception as e:  # transformers raises its own validation error types
        raise UnsupportedCase(f"transformers rejects rope case {case!r} for {family}: {str(e).strip()[:200]}") from e
    return model, override


# per-layer schemes: family -> (transformers model_type, config keys of a tiny 6-layer text model)
LAYER_FAMILIES: dict[str, tuple[str, dict[str, Any]]] = {
    # Llama 4 iRoPE: every 3rd layer NoPE (layers 2, 5), query temperature there (floor_scale 4: visible in
    # 24 tokens), chunked attention on the RoPE layers, llama3 scaling as published for Scout
    "llama4": (
        "llama4_text",
        dict(
            no_rope_layer_interval=3,
            attn_temperature_tuning=True,
            floor_scale=4,
            attn_scale=0.25,
            attention_chunk_size=16,
            num_local_experts=2,
            num_experts_per_tok=1,
            intermediate_size_mlp=128,
            rope_parameters={
                "rope_type": "llama3",
                "rope_theta": 500_000.0,
                "factor": 8.0,
                "low_freq_factor": 1.0,
                "high_freq_factor": 4.0,
                "original_max_position_embeddings": ORIGINAL,
            },
        ),
    ),
    # Gemma 3: 5 sliding layers (base 10^4, window 8) per full one (base 10^6, linear x8 as in Gemma 3 4B+)
    "gemma3": (
        "gemma3_text",
        dict(
            layer_types=["sliding_attention"] * 5 + ["full_attention"],
            sliding_window=8,
            rope_parameters={
                "sliding_attention": {"rope_type": "default", "rope_theta": 10_000.0},
                "full_attention": {"rope_type": "linear", "factor": 8.0, "rope_theta": 1_000_000.0},
            },
        ),
    ),
}


def tiny_layered_model(family: str, *, seed: int = 0, **overrides: Any) -> torch.nn.Module:
    """A random 6-layer ``*ForCausalLM`` of a per-layer family (:data:`LAYER_FAMILIES`), float32, eager, eval.

    ``overrides`` replace config keys (e.g. ``attn_temperature_tuning=False``). Raises ``ValueError`` for an
    unknown family; transformers' own errors pass through.
    """
    from transformers import AutoConfig, AutoModelForCausalLM

    if family not in LAYER_FAMILIES:
        raise ValueError(f"unknown per-layer family {family!r}; expected one of {sorted(LAYER_FAMILIES)}")
    model_type, keys = LAYER_FAMILIES[family]
    kwargs: dict[str, Any] = dict(
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=6,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=HEAD_DIM,
        vocab_size=128,
        max_position_embeddings=MAX_POS,
        pad_token_id=0,
        bos_token_id=1,
        eos_token_id=2,
    )
    kwargs.update(keys)
    kwargs.update(overrides)
    config = AutoConfig.for_model(model_type, **kwargs)
    config._attn_implementation = "eager"
    torch.manual_seed(seed)
    return AutoModelForCausalLM.from_config(config).float().eval()
