"""Per-layer schemes in ropekit.models: NoPE layers (SmolLM3, Llama 4 iRoPE + temperature), Gemma 3 local layers."""

import math

import pytest
import torch

from ropekit.models import ModelConfig, build_model
from ropekit.models.attention import Attention
from ropekit.models.transformer import LayerPattern

BASE = dict(task="lm", vocab_size=50, d_model=32, n_heads=4, n_layers=4, max_len=64)


def model_pair(layers, **kw):
    """A plain model and one with ``layers``, with the same weights (the pattern adds no parameters)."""
    torch.manual_seed(0)
    plain = build_model(ModelConfig(**{**BASE, **kw})).eval()
    patterned = build_model(ModelConfig(**{**BASE, **kw}, layers=layers)).eval()
    patterned.load_state_dict(plain.state_dict())
    return plain, patterned


IDS = torch.randint(0, 50, (2, 24), generator=torch.Generator().manual_seed(1))


@pytest.mark.parametrize(
    "layers", [None, {}, {"nope_layers": []}, {"local_layers": [0, 2], "sliding_window": 64}, {"use_rope": [1] * 4}]
)
def test_identity_settings_match_the_plain_model(layers):
    plain, patterned = model_pair(layers)
    assert torch.equal(plain(IDS), patterned(IDS))


def test_all_nope_ignores_positions_and_rope_does_not():
    """NoPE layers never see positions; RoPE is shift-invariant (relative) but not stretch-invariant."""
    stretched = torch.arange(24) * 3 + 100
    _, nope = model_pair({"nope_every": 1}, init_std=0.2)  # larger weights: sharper attention, visible RoPE effect
    assert torch.equal(nope(IDS), nope(IDS, positions=stretched))
    plain, _ = model_pair(None, init_std=0.2)
    assert not torch.allclose(plain(IDS), plain(IDS, positions=stretched), atol=1e-3)


def test_nope_layers_change_the_output():
    plain, patterned = model_pair({"nope_layers": [3]})
    assert not torch.allclose(plain(IDS), patterned(IDS), atol=1e-4)


def test_patterns_match_transformers_configs():
    transformers = pytest.importorskip("transformers")
    llama4 = transformers.Llama4TextConfig(num_hidden_layers=8)
    ours = LayerPattern.from_spec({"nope_every": 4}, 8)
    assert ours.nope_layers == tuple(i for i, use in enumerate(llama4.no_rope_layers) if not use)
    assert ours.nope_layers == LayerPattern.from_spec({"use_rope": list(llama4.no_rope_layers)}, 8).nope_layers
    t = LayerPattern.from_spec({"attn_temperature_tuning": llama4.attn_temperature_tuning}, 8).temperature
    assert t == (llama4.floor_scale, llama4.attn_scale)
    gemma3 = transformers.Gemma3TextConfig(num_hidden_layers=12)
    local = LayerPattern.from_spec({"sliding_window_pattern": 6, "sliding_window": 4}, 12).local_layers
    assert local == tuple(i for i, t in enumerate(gemma3.layer_types) if t == "sliding_attention")
    spec = {"layer_types": list(gemma3.layer_types), "sliding_window": 4}
    assert LayerPattern.from_spec(spec, 12).local_layers == local


def test_llama4_temperature_formula():
    """Queries at token t scaled by 1 + attn_scale * log1p(floor((t + 1) / floor_scale)) (transformers' Llama4)."""
    attn = Attention(16, 2, causal=True, temperature=(4.0, 0.1))
    t = torch.arange(20)
    want = torch.tensor([1 + 0.1 * math.log1p(math.floor((i + 1) / 4)) for i in range(20)])
    torch.testing.assert_close(attn._query_scale(0, 20, t.device).squeeze(-1), want)
    torch.testing.assert_close(attn._query_scale(5, 15, t.device).squeeze(-1), want[5:])
    # in the layer: scores are the plain layer's scores with q scaled
    plain = Attention(16, 2, causal=True)
    plain.load_state_dict(attn.state_dict())
    x = torch.randn(1, 20, 16)
    torch.testing.assert_close(attn.logits(x), plain.logits(x) * want[:, None], rtol=1e-5, atol=1e-6)


def test_sliding_window_is_local():
    """A local layer's output at token t does not depend on tokens before t - W + 1; a full layer's does."""
    torch.manual_seed(0)
    attn, full = Attention(16, 2, causal=True, window=4), Attention(16, 2, causal=True)
    full.load_state_dict(attn.state_dict())
    x = torch.randn(1, 12, 16)
    y = x.clone()
    y[:, :5] += torch.randn(1, 5, 16)  # tokens 0..4 changed: token 8 (window 5..8) must not notice
    assert torch.allclose(attn(x)[:, 8:], attn(y)[:, 8:], atol=1e-6)
    assert not torch.allclose(attn(x)[:, 5:8], attn(y)[:, 5:8], atol=1e-4)
    assert not torch.allclose(full(x)[:, 8:], full(y)[:, 8:], atol=1e-4)
    wide = Attention(16, 2, causal=True, window=12)
    wide.load_state_dict(attn.state_dict())
    torch.testing.assert_close(wide(x), full(x))


def test_local_base_identity_and_effect():
    gemma_like = {"sliding_window_pattern": 2, "sliding_window": 8}
    _, same_theta = model_pair({**gemma_like, "local_rope_theta": 10_000.0})
    _, windowed = model_pair(gemma_like)
    torch.testing.assert_close(same_theta(IDS), windowed(IDS))  # local base = global base: no change
    _, other = model_pair({**gemma_like, "local_rope_theta": 100.0})
    assert not torch.allclose(other(IDS), windowed(IDS), atol=1e-4)
    assert other.decoder.layer_pe == ["local", "global", "local", "global"]


@pytest.mark.parametrize(
    "layers",
    [
        {"nope_every": 2, "attn_temperature_tuning": True, "floor_scale": 4},
        {"sliding_window_pattern": 2, "sliding_window": 5, "local_rope_theta": 500.0},
    ],
)
def test_kv_cache_decoding_matches_the_full_forward(layers):
    _, model = model_pair(layers)
    full = model(IDS)  # [B, T, V]
    cache = model.new_cache()
    steps = [model(IDS[:, :10], cache=cache)] + [model(IDS[:, t : t + 1], cache=cache) for t in range(10, 24)]
    torch.testing.assert_close(torch.cat(steps, dim=1), full, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize(
    ("layers", "match"),
    [
        ({"nope_layer": [1]}, "did you mean 'nope_layers'"),
        ({"nope_layers": [4]}, r"indices in \[0, 4\)"),
        ({"nope_layers": [1], "nope_every": 2}, "one way"),
        ({"use_rope": [1, 0]}, "one entry per layer"),
        ({"local_layers": [0]}, "sliding_window"),
        ({"sliding_window": 4}, "no layer is local"),
        ({"layer_types": ["sliding", "full", "full", "full"], "sliding_window": 2}, "entries must be in"),
        ({"local_layers": [0], "sliding_window": 4, "local_rope_theta": -1.0}, "local_rope_theta"),
    ],
)
def test_bad_layer_specs_are_refused(layers, match):
    with pytest.raises(ValueError, match=match):
        ModelConfig(**BASE, layers=layers)


def test_local_base_needs_rope_and_classifier_refuses_windows():
    with pytest.raises(ValueError, match="needs pe kind 'rope'"):
        ModelConfig(
            **BASE, pe={"kind": "alibi"}, layers={"local_layers": [0], "sliding_window": 4, "local_rope_theta": 1e4}
        )
    with pytest.raises(ValueError, match="causal"):
        ModelConfig(**{**BASE, "task": "classify"}, layers={"local_layers": [0], "sliding_window": 4})


def test_config_round_trips():
    cfg = ModelConfig(**BASE, layers={"nope_every": 4, "attn_temperature_tuning": True})
    assert ModelConfig.from_dict(cfg.to_dict()) == cfg
