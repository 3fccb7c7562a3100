"""Per-layer schemes against transformers' own modules: Llama 4 (iRoPE, NoPE-layer query temperature) and
Gemma 3 (sliding layers with their own base), layer by layer, through :func:`ropekit.hf.config.from_hf_layers` and a
ropekit model built from what it reads."""

from __future__ import annotations

import pytest
import torch

from ropekit.hf.config import from_hf_config, from_hf_layers
from ropekit.hf.families import HEAD_DIM, tiny_layered_model
from ropekit.models import DecoderLM, ModelConfig

pytest.importorskip("transformers")
# the modeling modules are imported inside the tests, not at collection: they import triton, which must not be
# imported before tests/kernels/conftest.py sets TRITON_INTERPRET (its knobs are read once)


@pytest.fixture
def llama4():
    return pytest.importorskip("transformers.models.llama4.modeling_llama4")


@pytest.fixture
def gemma3():
    return pytest.importorskip("transformers.models.gemma3.modeling_gemma3")


B, T, H = 2, 24, 4


def _ropekit_lm(hf_model: torch.nn.Module) -> DecoderLM:
    """A ropekit decoder with the scheme read off the transformers config (weights unrelated)."""
    read = from_hf_layers(hf_model.config)
    cfg = ModelConfig(
        task="lm", vocab_size=128, d_model=64, n_heads=H, n_layers=6, max_len=32, pe=read["pe"], layers=read["layers"]
    )
    model = DecoderLM(cfg)
    assert model.decoder.blocks[0].attn.head_dim == HEAD_DIM
    return model.eval()


def _qk(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Random ``q, k: [B, T, H, D]`` (transformers' layout before the transpose) and positions ``[B, T]``."""
    g = torch.Generator().manual_seed(seed)
    q, k = torch.randn(B, T, H, HEAD_DIM, generator=g), torch.randn(B, T, H, HEAD_DIM, generator=g)
    positions = torch.stack([torch.arange(T), torch.arange(T) + 5])  # a second row starting at 5
    return q, k, positions


def _ropekit_rotate(lm: DecoderLM, i: int, q: torch.Tensor, k: torch.Tensor, positions: torch.Tensor):
    """Layer ``i``'s rotation in ropekit, on ``[B, T, H, D]`` (identity on a NoPE layer)."""
    enc = lm.decoder.layer_encoding(i)
    if enc is None:
        return q, k
    qr, kr = enc.rotate(q.transpose(1, 2), k.transpose(1, 2), positions)
    return qr.transpose(1, 2), kr.transpose(1, 2)


@torch.no_grad()
def test_llama4_layers_rotate_like_transformers(llama4) -> None:
    hf = tiny_layered_model("llama4")
    lm = _ropekit_lm(hf)
    q, k, positions = _qk()
    freqs_cis = hf.model.rotary_emb(q, positions)  # complex [B, T, r]
    use_rope = [bool(layer.self_attn.use_rope) for layer in hf.model.layers]
    assert use_rope == [True, True, False, True, True, False]  # no_rope_layer_interval=3
    for i in range(len(hf.model.layers)):
        assert (lm.decoder.layer_encoding(i) is not None) == use_rope[i], f"layer {i}"
        want = llama4.apply_rotary_emb(q, k, freqs_cis) if use_rope[i] else (q, k)
        got = _ropekit_rotate(lm, i, q, k, positions)
        torch.testing.assert_close(got[0], want[0], atol=2e-5, rtol=1e-5)
        torch.testing.assert_close(got[1], want[1], atol=2e-5, rtol=1e-5)


def test_llama4_pairs_are_interleaved(llama4) -> None:
    hf = tiny_layered_model("llama4")
    assert from_hf_config(hf.config)["interleaved"] is True  # complex pairs (x[2j], x[2j+1])
    half = ModelConfig(
        task="lm",
        vocab_size=128,
        d_model=64,
        n_heads=H,
        n_layers=6,
        max_len=32,
        pe={**from_hf_layers(hf.config)["pe"], "interleaved": False},
    )
    q, k, positions = _qk()
    want = llama4.apply_rotary_emb(q, k, hf.model.rotary_emb(q, positions))
    got = _ropekit_rotate(DecoderLM(half).eval(), 0, q, k, positions)
    assert not torch.allclose(got[0], want[0], atol=1e-3)  # the test can fail: the half layout differs


def _capture_queries(
    llama4, hf: torch.nn.Module, ids: torch.Tensor, cache=None
) -> dict[int, tuple[torch.Tensor, torch.Tensor]]:
    """Per layer: (the query transformers attends with ``[B, H, T, D]``, ``q_proj`` of the layer input in the
    same layout), from one forward of transformers' own Llama 4 attention modules."""
    inputs: dict[int, torch.Tensor] = {}
    captured: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}

    def pre_hook(module, args, kwargs):
        inputs[module.layer_idx] = kwargs["hidden_states"] if "hidden_states" in kwargs else args[0]

    def attention(module, query, key, value, attention_mask, **kwargs):
        h = inputs[module.layer_idx]
        raw = module.q_proj(h).view(*h.shape[:-1], -1, module.head_dim).transpose(1, 2)
        captured[module.layer_idx] = (query, raw)
        return llama4.eager_attention_forward(module, query, key, value, attention_mask, **kwargs)

    from transformers import AttentionInterface

    AttentionInterface.register("ropekit_capture", attention)
    hooks = [layer.self_attn.register_forward_pre_hook(pre_hook, with_kwargs=True) for layer in hf.model.layers]
    previous = hf.config._attn_implementation
    try:
        hf.config._attn_implementation = "ropekit_capture"
        out = hf(ids, past_key_values=cache, use_cache=cache is not None)
    finally:
        hf.config._attn_implementation = previous
        for hook in hooks:
            hook.remove()
    captured[-1] = out.past_key_values  # type: ignore[assignment]
    return captured


@torch.no_grad()
def test_llama4_nope_query_temperature_matches_transformers(llama4) -> None:
    from transformers import DynamicCache

    hf = tiny_layered_model("llama4")
    lm = _ropekit_lm(hf)
    ids = torch.randint(3, 128, (B, T), generator=torch.Generator().manual_seed(1))
    cache = DynamicCache(config=hf.config)
    prefill = _capture_queries(llama4, hf, ids[:, :20], cache)
    step = _capture_queries(llama4, hf, ids[:, 20:21], prefill[-1])
    seen_nope = 0
    for i, layer in enumerate(hf.model.layers):
        attn = lm.decoder.blocks[i].attn
        if layer.self_attn.use_rope:
            assert attn.temperature is None, f"layer {i} rotates: no temperature there"
            continue
        seen_nope += 1
        assert attn.temperature == (4.0, 0.25)
        for (query, raw), past, n in ((prefill[i], 0, 20), (step[i], 20, 1)):
            theirs = query / raw  # [B, H, n, D]: one scale per token
            ours = attn._query_scale(past, n, query.device)  # [n, 1]
            torch.testing.assert_close(theirs, ours.expand_as(theirs), atol=1e-5, rtol=1e-5)
            if past == 0:
                assert ours[-1].item() > 1.0  # floor_scale 4 within 20 tokens: the scale is not trivially 1
    assert seen_nope == 2


@torch.no_grad()
def test_llama4_temperature_off_reads_as_none(llama4) -> None:
    hf = tiny_layered_model("llama4", attn_temperature_tuning=False)
    read = from_hf_layers(hf.config)
    assert all(p["temperature"] is None for p in read["per_layer"])
    assert "attn_temperature_tuning" not in read["layers"]
    assert all(b.attn.temperature is None for b in _ropekit_lm(hf).decoder.blocks)


@torch.no_grad()
def test_gemma3_layers_rotate_like_transformers(gemma3) -> None:
    hf = tiny_layered_model("gemma3")
    lm = _ropekit_lm(hf)
    q, k, positions = _qk(2)
    qt, kt = q.transpose(1, 2), k.transpose(1, 2)  # Gemma 3 rotates [B, H, T, D]
    bases = set()
    for i, layer in enumerate(hf.model.layers):
        layer_type = layer.self_attn.layer_type
        cos, sin = hf.model.rotary_emb(q, positions, layer_type)
        want = gemma3.apply_rotary_pos_emb(qt, kt, cos, sin)
        got = _ropekit_rotate(lm, i, q, k, positions)
        torch.testing.assert_close(got[0].transpose(1, 2), want[0], atol=2e-5, rtol=1e-5)
        torch.testing.assert_close(got[1].transpose(1, 2), want[1], atol=2e-5, rtol=1e-5)
        assert lm.decoder.blocks[i].attn.window == layer.self_attn.sliding_window, f"layer {i}"
        enc = lm.decoder.layer_encoding(i)
        bases.add((layer_type, enc.rotary.spec.rope_theta))
    assert bases == {("sliding_attention", 10_000.0), ("full_attention", 1_000_000.0)}


def test_gemma3_sliding_window_mask_matches_transformers(gemma3) -> None:
    from transformers.masking_utils import causal_mask_function, sliding_window_overlay

    hf = tiny_layered_model("gemma3")
    attn = _ropekit_lm(hf).decoder.blocks[0].attn
    overlay = sliding_window_overlay(hf.config.sliding_window)
    want = torch.tensor(
        [[bool(overlay(0, 0, i, j)) and bool(causal_mask_function(0, 0, i, j)) for j in range(T)] for i in range(T)]
    )
    assert torch.equal(attn._visible(T, T, 0, None, torch.device("cpu"))[0, 0], want)


def test_reader_from_dicts_and_v4_shapes(gemma3) -> None:
    hf = tiny_layered_model("gemma3")
    as_object, as_dict = from_hf_layers(hf.config), from_hf_layers(hf.config.to_dict())
    assert as_object["layers"] == as_dict["layers"] and as_object["pe"] == as_dict["pe"]
    v4 = {  # Gemma 3 as published before transformers 5: a pattern and a local base at the top level
        "model_type": "gemma3_text",
        "num_hidden_layers": 12,
        "head_dim": 16,
        "sliding_window": 512,
        "sliding_window_pattern": 6,
        "rope_theta": 1_000_000.0,
        "rope_local_base_freq": 10_000.0,
        "rope_scaling": {"rope_type": "linear", "factor": 8.0},
    }
    read = from_hf_layers(v4)
    types = [p["layer_type"] for p in read["per_layer"]]
    assert types == (["sliding_attention"] * 5 + ["full_attention"]) * 2
    assert read["layers"]["local_rope_theta"] == 10_000.0
    assert read["pe"]["rope_parameters"]["factor"] == 8.0
    multimodal = {"model_type": "gemma3", "text_config": {k: v for k, v in v4.items() if k != "model_type"}}
    assert from_hf_layers(multimodal)["layers"] == read["layers"]


def test_reader_llama4_defaults_and_plain_models() -> None:
    cfg = {"model_type": "llama4_text", "num_hidden_layers": 8, "head_dim": 16, "rope_theta": 500_000.0}
    read = from_hf_layers(cfg)  # Llama4TextConfig defaults: NoPE every 4th layer, tuning on, chunks of 8192
    assert [p["rope"] for p in read["per_layer"]] == [True, True, True, False] * 2
    assert [p["temperature"] for p in read["per_layer"]][3] == (8192.0, 0.1)
    assert read["per_layer"][0]["attention_chunk_size"] == 8192 and read["not_in_layers"]
    plain = from_hf_layers({"model_type": "llama", "num_hidden_layers": 3, "head_dim": 16})
    assert plain["layers"] is None and all(p["rope"] and p["temperature"] is None for p in plain["per_layer"])


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ({"no_rope_layers": [1, 0]}, "one 0/1 flag per layer"),
        ({"no_rope_layers": [1, 2, 1, 1]}, "one 0/1 flag per layer"),
        ({"attn_temperature_tuning": "yes"}, "true or false"),
        ({"floor_scale": "8192"}, "finite number"),
        ({"floor_scale": 0}, "must be > 0"),
        ({"num_hidden_layers": 0}, "positive integer"),
        ({"layer_types": ["full_attention"]}, "one layer type name per layer"),
    ],
)
def test_reader_bad_input(change: dict, match: str) -> None:
    cfg = {"model_type": "llama4_text", "num_hidden_layers": 4, "head_dim": 16, **change}
    with pytest.raises(ValueError, match=match):
        from_hf_layers(cfg)


def test_reader_refuses_scaled_sliding_layers() -> None:
    cfg = {
        "model_type": "gemma3_text",
        "num_hidden_layers": 2,
        "head_dim": 16,
        "sliding_window": 8,
        "layer_types": ["sliding_attention", "full_attention"],
        "rope_parameters": {
            "sliding_attention": {"rope_type": "linear", "factor": 2.0, "rope_theta": 10_000.0},
            "full_attention": {"rope_type": "default", "rope_theta": 1e6},
        },
    }
    with pytest.raises(ValueError, match="local_rope_theta"):
        from_hf_layers(cfg)


@pytest.mark.parametrize("family", ["llama4", "gemma3"])
def test_parity_layer_table_agrees(family: str, request: pytest.FixtureRequest) -> None:
    request.getfixturevalue(family)  # skip when transformers lacks the model
    import re

    from ropekit.hf.parity_table import layer_rows

    rows = layer_rows(family)
    assert len(rows) == 6
    for i, theirs, ours, _, diff in rows:
        assert diff < 1e-5, f"layer {i}: {diff}"
        assert re.sub(r", chunk \d+", "", theirs) == ours, f"layer {i}"  # chunked attention: in not_in_layers


def test_reader_needs_the_window_of_sliding_layers() -> None:
    cfg = {
        "model_type": "gemma3_text",
        "num_hidden_layers": 2,
        "head_dim": 16,
        "layer_types": ["sliding_attention"] * 2,
    }
    with pytest.raises(ValueError, match="no 'sliding_window'"):
        from_hf_layers(cfg)


@torch.no_grad()
def test_smollm3_nope_layers_read_like_transformers() -> None:
    pytest.importorskip("transformers.models.smollm3.modeling_smollm3")
    from ropekit.hf.families import tiny_model

    hf, _ = tiny_model("smollm3", "default", layers=2)
    read = from_hf_layers(hf.config)
    assert [p["rope"] for p in read["per_layer"]] == [bool(layer.self_attn.use_rope) for layer in hf.model.layers]
    assert read["layers"] == {"use_rope": [1, 0]}  # no temperature: that is Llama 4's alone
