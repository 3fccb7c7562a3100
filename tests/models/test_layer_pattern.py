"""Per-layer schemes in ropekit.models: NoPE layers (SmolLM3, Llama 4 iRoPE + temperature), Gemma 3 local layers."""

import json
import math

import pytest
import torch

from ropekit.models import ModelConfig, build_model
from ropekit.models.attention import Attention, LayerCache
from ropekit.models.io import load_model, save_model
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


def test_nope_layers_ignore_positions_and_rope_layers_stay_relative():
    """Through the whole model: all-NoPE ignores any positions; plain RoPE is shift-invariant but not stretch-invariant.
    Per layer: a NoPE layer's logits do not move with positions; a RoPE layer's depend only on their differences."""
    stretched = torch.arange(24) * 3 + 5
    _, nope = model_pair({"nope_every": 1}, init_std=0.3)  # sharper attention than the default init's
    torch.testing.assert_close(nope(IDS), nope(IDS, positions=stretched), rtol=1e-5, atol=1e-5)
    plain, mixed = model_pair({"nope_layers": [1]}, init_std=0.3)
    assert not torch.allclose(plain(IDS), plain(IDS, positions=stretched), atol=1e-3)
    stack = mixed.decoder
    assert stack.layer_pe == ["global", "none", "global", "global"]
    assert stack.layer_encoding(1) is None and stack.layer_encoding(0) is stack.pe
    x = torch.randn(2, 24, 32, generator=torch.Generator().manual_seed(2))
    nope_attn, rope_attn = stack.blocks[1].attn, stack.blocks[0].attn
    base = nope_attn.logits(x, stack.layer_encoding(1), torch.arange(24))
    for pos in (torch.arange(24) + 1000, stretched):
        assert torch.equal(nope_attn.logits(x, stack.layer_encoding(1), pos), base)
    rope = rope_attn.logits(x, stack.pe, torch.arange(24))
    torch.testing.assert_close(rope_attn.logits(x, stack.pe, torch.arange(24) + 1000), rope, rtol=1e-4, atol=1e-4)
    assert not torch.allclose(rope_attn.logits(x, stack.pe, stretched), rope, atol=1e-3)


def test_nope_layers_change_the_output():
    plain, patterned = model_pair({"nope_layers": [3]})
    assert not torch.allclose(plain(IDS), patterned(IDS), atol=1e-4)


def test_patterns_match_transformers_configs():
    transformers = pytest.importorskip("transformers")
    llama4 = transformers.Llama4TextConfig(num_hidden_layers=8)
    ours = LayerPattern.from_spec({"nope_every": 4}, 8)
    assert ours.nope_layers == tuple(i for i, use in enumerate(llama4.no_rope_layers) if not use)
    assert ours.nope_layers == LayerPattern.from_spec({"use_rope": list(llama4.no_rope_layers)}, 8).nope_layers
    t = LayerPattern.from_spec({"nope_every": 4, "attn_temperature_tuning": llama4.attn_temperature_tuning}, 8)
    t = t.temperature
    assert t == (llama4.floor_scale, llama4.attn_scale)
    gemma3 = transformers.Gemma3TextConfig(num_hidden_layers=12)
    local = LayerPattern.from_spec({"sliding_window_pattern": 6, "sliding_window": 4}, 12).local_layers
    assert local == tuple(i for i, t in enumerate(gemma3.layer_types) if t == "sliding_attention")
    spec = {"layer_types": list(gemma3.layer_types), "sliding_window": 4}
    assert LayerPattern.from_spec(spec, 12).local_layers == local


def test_llama4_temperature_formula():
    """Queries at token t scaled by 1 + attn_scale * log1p(floor((t + 1) / floor_scale)) (transformers' Llama4),
    written out here independently of the code under test."""
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


def test_llama4_nope_layer_matches_transformers_attention():
    """Our NoPE layer with temperature tuning equals transformers' ``Llama4TextAttention`` on its NoPE layer (same
    projections, eager attention, causal mask), prompt at once and then token by token with our KV cache."""
    transformers = pytest.importorskip("transformers")
    from transformers.models.llama4 import modeling_llama4

    cfg = transformers.Llama4TextConfig(
        hidden_size=16,
        num_attention_heads=2,
        num_key_value_heads=1,
        head_dim=8,
        num_hidden_layers=4,
        attn_temperature_tuning=True,
        floor_scale=3,
        attn_scale=0.25,
        no_rope_layer_interval=4,
    )
    cfg._attn_implementation = "eager"
    assert cfg.no_rope_layers[3] == 0  # layer 3 is the NoPE one
    torch.manual_seed(0)
    theirs = modeling_llama4.Llama4TextAttention(cfg, layer_idx=3).eval()
    ours = Attention(16, 2, 1, causal=True, temperature=(float(cfg.floor_scale), cfg.attn_scale)).eval()
    ours.load_state_dict({k: v for k, v in theirs.state_dict().items() if k.endswith("proj.weight")})
    T = 14
    x = torch.randn(2, T, 16)
    mask = torch.full((T, T), float("-inf")).triu(1)[None, None]  # [1, 1, T, T] additive causal mask
    with torch.no_grad():
        want, _ = theirs(x, position_embeddings=None, attention_mask=mask)
        got = ours(x)
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)
        cache = LayerCache()
        steps = [ours(x[:, :5], cache=cache)] + [ours(x[:, t : t + 1], cache=cache) for t in range(5, T)]
        torch.testing.assert_close(torch.cat(steps, dim=1), want, rtol=1e-5, atol=1e-6)
    # without tuning the layer is plain attention: the temperature really is what made the two agree above
    plain = Attention(16, 2, 1, causal=True)
    plain.load_state_dict(ours.state_dict())
    assert not torch.allclose(plain(x), want, atol=1e-4)


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
        ({"attn_temperature_tuning": True}, "no layer is NoPE"),
        ({"nope_every": 4, "floor_scale": 4}, "attn_temperature_tuning"),
        ({"local_rope_theta": 100.0}, "no layer is local"),
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


def test_config_json_and_checkpoint_round_trip(tmp_path):
    """Tuples become lists (the JSON form) at construction, so the config survives JSON; a checkpoint rebuilds the
    same pattern and the same outputs."""
    layers = {"nope_layers": (1, 3), "attn_temperature_tuning": True, "floor_scale": 5}
    cfg = ModelConfig(**BASE, layers=layers)
    assert cfg.layers == {"nope_layers": [1, 3], "attn_temperature_tuning": True, "floor_scale": 5}
    assert ModelConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
    torch.manual_seed(0)
    model = build_model(cfg).eval()
    save_model(model, tmp_path / "ckpt")
    loaded = load_model(tmp_path / "ckpt")
    assert loaded.config == cfg and loaded.decoder.layer_pe == ["global", "none", "global", "none"]
    assert torch.equal(loaded(IDS), model(IDS))


def test_layers_must_be_a_dict():
    with pytest.raises(ValueError, match="layers must be a dict"):
        ModelConfig(**BASE, layers=[3])


def test_gemma3_local_and_global_rotations_match_transformers():
    """Each layer's rotation equals transformers' Gemma 3 one for its layer type (local: ``rope_local_base_freq``,
    unscaled; global: the main base), with the same layer types from ``sliding_window_pattern``."""
    transformers = pytest.importorskip("transformers")
    from transformers.models.gemma3 import modeling_gemma3

    hf = transformers.Gemma3TextConfig(
        hidden_size=32,
        num_attention_heads=4,
        num_key_value_heads=4,
        head_dim=8,
        num_hidden_layers=4,
        sliding_window=5,
        sliding_window_pattern=2,
        rope_parameters={
            "full_attention": {"rope_type": "default", "rope_theta": 5_000.0},
            "sliding_attention": {"rope_type": "default", "rope_theta": 100.0},
        },
    )
    cfg = ModelConfig(
        **BASE,
        pe={"kind": "rope", "rope_parameters": {"rope_theta": 5_000.0}},
        layers={"sliding_window_pattern": 2, "sliding_window": hf.sliding_window, "local_rope_theta": 100.0},
    )
    stack = build_model(cfg).decoder
    assert stack.layer_pe == ["local" if t == "sliding_attention" else "global" for t in hf.layer_types]
    assert [b.attn.window for b in stack.blocks] == [5 if t == "sliding_attention" else None for t in hf.layer_types]
    rotary = modeling_gemma3.Gemma3RotaryEmbedding(hf)
    q, k = torch.randn(2, 4, 24, 8), torch.randn(2, 4, 24, 8)  # [B, H, T, D]
    positions = torch.arange(24) + 3
    for i, layer_type in enumerate(hf.layer_types):
        cos, sin = rotary(q, positions[None], layer_type)  # [1, T, D]
        want = modeling_gemma3.apply_rotary_pos_emb(q, k, cos, sin)
        pe = stack.layer_encoding(i)
        assert pe is not None
        got = pe.rotate(q, k, positions)
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    local, full = stack.layer_encoding(0), stack.layer_encoding(1)
    assert local is not None and full is not None
    assert not torch.allclose(local.rotate(q, k, positions)[0], full.rotate(q, k, positions)[0], atol=1e-3)


@pytest.mark.parametrize(("T", "past"), [(12, 0), (3, 9), (1, 11)])
def test_sliding_window_mask_matches_transformers(T, past):
    """Which keys each query sees (prefill and cached steps) equals transformers' sliding-window causal mask."""
    masking_utils = pytest.importorskip("transformers.masking_utils")
    W, Tk = 4, 12
    attn = Attention(16, 2, causal=True, window=W)
    # zero queries/keys give uniform weights over the visible keys; identity values read the weights out
    q, k = torch.zeros(1, 1, T, Tk), torch.zeros(1, 1, Tk, Tk)
    weights = attn._attend(q, k, torch.eye(Tk)[None, None], None, None, past)[0, 0]  # [T, Tk]
    want_fn = masking_utils.sliding_window_causal_mask_function(W)
    b, h, qi, kj = torch.tensor(0), torch.tensor(0), torch.arange(T)[:, None] + past, torch.arange(Tk)[None]
    want = want_fn(b, h, qi, kj).expand(T, Tk)  # [T, Tk]
    assert torch.equal(weights > 0, want)
