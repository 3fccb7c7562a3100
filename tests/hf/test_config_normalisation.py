"""from_hf_config: vendor shapes, strictness, and the DeepSeek / gpt-oss YaRN variants against their formulas."""

import math

import pytest
import torch

from ropekit import RotaryEmbedding, from_hf_config, rope_frequencies

BASE = {"hidden_size": 64, "num_attention_heads": 4}


def _yarn_formula(dim, base, factor, original, beta_fast, beta_slow, truncate):
    """YaRN frequencies written out from the paper (Peng et al. 2023) and transformers' formula, in float64."""
    inv = [base ** (-2 * i / dim) for i in range(dim // 2)]

    def corr(rot):
        return dim * math.log(original / (rot * 2 * math.pi)) / (2 * math.log(base))

    low, high = corr(beta_fast), corr(beta_slow)
    if truncate:
        low, high = math.floor(low), math.ceil(high)
    low, high = max(low, 0), min(high, dim - 1)
    high = high + 0.001 if low == high else high
    out = []
    for i, f in enumerate(inv):
        ramp = min(max((i - low) / (high - low), 0.0), 1.0)  # 0: keep f, 1: f / factor
        out.append(f / factor * ramp + f * (1 - ramp))
    return torch.tensor(out, dtype=torch.float64)


def _mscale(s, m=1.0):
    return 1.0 if s <= 1 else 0.1 * m * math.log(s) + 1.0


def test_deepseek_yarn_variant_matches_its_formula():
    config = {
        "model_type": "deepseek_v3",
        **BASE,
        "qk_rope_head_dim": 64,
        "max_position_embeddings": 163840,
        "rope_theta": 10000,
        "rope_interleave": True,
        "rope_scaling": {
            "type": "deepseek_yarn",
            "factor": 40,
            "mscale": 0.707,
            "mscale_all_dim": 1.0,
            "beta_fast": 32,
            "beta_slow": 1,
            "original_max_position_embeddings": 4096,
        },
    }
    args = from_hf_config(config)
    assert args["head_dim"] == 64 and args["interleaved"] and args["rope_parameters"]["rope_type"] == "yarn"
    inv, af = rope_frequencies(args["rope_parameters"], head_dim=64, max_position_embeddings=163840)
    expected = _yarn_formula(64, 10000.0, 40.0, 4096, 32, 1, truncate=True)
    assert ((inv.double() - expected).abs() / expected).max() < 1e-6
    assert af == pytest.approx(_mscale(40, 0.707) / _mscale(40, 1.0), rel=1e-12)
    config["rope_scaling"]["mscale"] = 1.0  # DeepSeek V3's published values: the ratio is exactly 1
    inv, af = rope_frequencies(from_hf_config(config)["rope_parameters"], head_dim=64)
    assert af == 1.0


def test_gpt_oss_yarn_variant_matches_its_formula():
    config = {
        "model_type": "gpt_oss",
        **BASE,
        "head_dim": 64,
        "max_position_embeddings": 131072,
        "rope_theta": 150000,
        "rope_scaling": {
            "rope_type": "yarn",
            "factor": 32.0,
            "beta_fast": 32.0,
            "beta_slow": 1.0,
            "truncate": False,
            "original_max_position_embeddings": 4096,
        },
    }
    args = from_hf_config(config)
    inv, af = rope_frequencies(args["rope_parameters"], head_dim=64, max_position_embeddings=131072)
    expected = _yarn_formula(64, 150000.0, 32.0, 4096, 32, 1, truncate=False)
    truncated = _yarn_formula(64, 150000.0, 32.0, 4096, 32, 1, truncate=True)
    assert ((inv.double() - expected).abs() / expected).max() < 1e-6
    assert ((truncated - expected).abs() / expected).max() > 1e-2  # the flag matters here
    assert af == pytest.approx(_mscale(32.0), rel=1e-12)


def test_vendor_aliases():
    longrope = {"short_factor": [1.0] * 8, "long_factor": [2.0] * 8, "original_max_position_embeddings": 8}
    for model_type, kind in (("phi3", "yarn"), ("phi3", "su"), ("llama", "su")):
        cfg = {**BASE, "model_type": model_type, "rope_scaling": {"type": kind, **longrope}}
        assert from_hf_config(cfg)["rope_parameters"]["rope_type"] == "longrope"
    gptj = {**BASE, "model_type": "gptj", "rotary_dim": 4}
    args = from_hf_config(gptj)
    assert args["interleaved"] and RotaryEmbedding(**args).rotary_dim == 4


def test_gemma3_v4_local_base():
    cfg = {**BASE, "rope_theta": 1e6, "rope_local_base_freq": 1e4, "rope_scaling": {"rope_type": "linear", "factor": 8}}
    local = from_hf_config(cfg, layer_type="sliding_attention")["rope_parameters"]
    glob = from_hf_config(cfg, layer_type="full_attention")["rope_parameters"]
    assert local == {"rope_type": "default", "rope_theta": 1e4}
    assert glob["rope_theta"] == 1e6 and glob["factor"] == 8
    with pytest.raises(ValueError, match="layer_type"):
        from_hf_config(cfg)


@pytest.mark.parametrize(
    ("extra", "match"),
    [
        ({"rope_scalling": {"type": "linear", "factor": 2.0}}, "did you mean 'rope_scaling'"),
        ({"rope_thta": 5e5}, "did you mean 'rope_theta'"),
        ({"rope_scaling": {"factor": 2.0}}, "no 'rope_type'"),
        ({"rope_scaling": {"type": "linear", "factr": 2.0}}, "did you mean 'factor'"),
        ({"rope_theta": 5e5, "rope_parameters": {"rope_type": "default", "rope_theta": 1e4}}, "make them agree"),
        ({"use_dynamic_ntk": True}, "use_dynamic_ntk"),
        ({"rope_scaling": {"type": "deepseek_yarn", "factor": 4.0, "attn_factor": 1.0}}, "attention_factor"),
    ],
)
def test_scaling_is_never_silently_dropped(extra, match):
    with pytest.raises(ValueError, match=match):
        from_hf_config({**BASE, **extra})


def test_transformers_config_objects_read_like_dicts():
    pytest.importorskip("transformers")
    from ropekit.hf.families import tiny_model

    model, _ = tiny_model("gpt_neox", "yarn")
    as_object = from_hf_config(model.config)
    as_dict = from_hf_config(model.config.to_dict())
    assert as_object == as_dict and as_object["rope_parameters"]["partial_rotary_factor"] == 0.25
