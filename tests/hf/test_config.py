"""from_hf_config reads v4 and v5 config shapes without importing transformers."""

import typing

import pytest
import torch

from ropekit import RotaryEmbedding, from_hf_config, rope_frequencies


def test_v4_llama3_config():
    cfg = {
        "hidden_size": 4096,
        "num_attention_heads": 32,
        "max_position_embeddings": 131072,
        "rope_theta": 5e5,
        "rope_scaling": {
            "rope_type": "llama3",
            "factor": 8.0,
            "low_freq_factor": 1.0,
            "high_freq_factor": 4.0,
            "original_max_position_embeddings": 8192,
        },
    }
    args = from_hf_config(cfg)
    assert args["head_dim"] == 128 and args["rope_parameters"]["rope_theta"] == 5e5
    assert args["rope_parameters"]["rope_type"] == "llama3" and args["interleaved"] is False


def test_v5_and_v4_give_same_frequencies():
    v4 = {
        "head_dim": 64,
        "rope_theta": 1e6,
        "partial_rotary_factor": 0.5,
        "max_position_embeddings": 8192,
        "rope_scaling": {"type": "yarn", "factor": 2.0, "original_max_position_embeddings": 4096},
    }
    v5 = {
        "head_dim": 64,
        "max_position_embeddings": 8192,
        "rope_parameters": {
            "rope_type": "yarn",
            "rope_theta": 1e6,
            "partial_rotary_factor": 0.5,
            "factor": 2.0,
            "original_max_position_embeddings": 4096,
        },
    }
    a, b = from_hf_config(v4), from_hf_config(v5)
    assert a == b
    inv_a, _ = rope_frequencies(a["rope_parameters"], head_dim=64)
    assert inv_a.shape == (16,)


def test_neox_aliases_and_phi3_top_level_original():
    neox = from_hf_config({"hidden_size": 512, "num_attention_heads": 8, "rotary_pct": 0.25, "rotary_emb_base": 1e4})
    assert neox["rope_parameters"]["partial_rotary_factor"] == 0.25
    phi3 = from_hf_config(
        {
            "hidden_size": 256,
            "num_attention_heads": 4,
            "max_position_embeddings": 131072,
            "original_max_position_embeddings": 4096,
            "rope_scaling": {"type": "longrope", "short_factor": [1.0] * 32, "long_factor": [2.0] * 32},
        }
    )
    assert phi3["rope_parameters"]["original_max_position_embeddings"] == 4096


def test_nested_layer_types_and_interleave():
    cfg = {
        "head_dim": 32,
        "rope_interleave": True,
        "rope_parameters": {
            "full_attention": {"rope_type": "linear", "factor": 8.0, "rope_theta": 1e6},
            "sliding_attention": {"rope_type": "default", "rope_theta": 1e4},
        },
    }
    full = from_hf_config(cfg, layer_type="full_attention")
    assert full["rope_parameters"]["factor"] == 8.0 and full["interleaved"] is True
    rope = RotaryEmbedding(**from_hf_config(cfg, layer_type="sliding_attention"))
    assert rope.inv_freq[1] == pytest.approx(1e4 ** (-2 / 32))


def test_config_object_with_attributes():
    class Cfg:
        hidden_size, num_attention_heads, max_position_embeddings = 128, 2, 2048
        rope_parameters: typing.ClassVar = {"rope_type": "dynamic", "factor": 2.0, "rope_theta": 1e4}

    rope = RotaryEmbedding(**from_hf_config(Cfg()))
    q = torch.randn(1, 2, 3000, 64)
    rope(q, q)
    assert rope.inv_freq[-1] < 1e4 ** (-62 / 64)  # base grew past 2048


def test_conflicting_original_lengths_raise():
    with pytest.raises(ValueError, match="original_max_position_embeddings differs"):
        from_hf_config(
            {
                "head_dim": 64,
                "original_max_position_embeddings": 4096,
                "rope_scaling": {"rope_type": "yarn", "factor": 2.0, "original_max_position_embeddings": 2048},
            }
        )
