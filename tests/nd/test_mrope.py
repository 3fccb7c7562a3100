"""M-RoPE: section semantics, text reduces exactly to 1-D RoPE, parity with transformers' Qwen2-VL / Qwen3-VL code."""

from __future__ import annotations

import types

import pytest
import torch

from ropekit import apply_rotary, rope_cos_sin
from ropekit.nd import MRotaryEmbedding, mrope_cos_sin, mrope_pair_axes, mrope_position_ids, split_mrope_parameters


def test_pair_axes_chunked_and_interleaved() -> None:
    chunked = mrope_pair_axes([16, 24, 24], layout="chunked")
    assert chunked.tolist() == [0] * 16 + [1] * 24 + [2] * 24
    inter = mrope_pair_axes([24, 20, 20], layout="interleaved")
    assert inter[:6].tolist() == [0, 1, 2, 0, 1, 2] and inter[60:].tolist() == [0, 0, 0, 0]
    assert [int((inter == a).sum()) for a in range(3)] == [24, 20, 20]
    with pytest.raises(ValueError, match="not realisable"):
        mrope_pair_axes([10, 20, 20], layout="interleaved")
    with pytest.raises(ValueError, match="chunked"):
        mrope_pair_axes([1, 1, 1], layout="qwen")


@pytest.mark.parametrize(("section", "layout"), [([16, 24, 24], "chunked"), ([24, 20, 20], "interleaved")])
def test_text_only_is_exactly_1d_rope(section: list[int], layout: str) -> None:
    """Same id on t, h, w: the table equals rope_cos_sin bit for bit, at small and large positions."""
    inv_freq = 1.0 / (1e6 ** (torch.arange(0, 128, 2, dtype=torch.float64) / 128)).float()
    pos = torch.cat([torch.arange(50), torch.tensor([4095, 65_537, 1_000_003])])
    cos, sin = mrope_cos_sin(inv_freq, pos.expand(3, -1), section, layout=layout)
    cos1, sin1 = rope_cos_sin(inv_freq, pos)
    torch.testing.assert_close(cos, cos1, atol=0, rtol=0)
    torch.testing.assert_close(sin, sin1, atol=0, rtol=0)
    x = torch.randn(1, 2, pos.numel(), 128)
    module = MRotaryEmbedding(128, {"rope_type": "default", "rope_theta": 1e6, "mrope_section": section}, layout=layout)
    q, _ = module(x, x, pos.expand(3, 1, -1))
    cos1, sin1 = rope_cos_sin(module.inv_freq, pos)  # the module's ladder (rounded once from float64)
    torch.testing.assert_close(q, apply_rotary(x, cos1, sin1), atol=1e-6, rtol=0)


def _hf_sequence() -> tuple[torch.Tensor, list[list[int]], list[list[int]]]:
    """text 3, image grid (1, 4, 6) merged 2x2 -> 6 tokens, text 2, video (2, 4, 4) -> 8 tokens, text 4."""
    types_ = [0] * 3 + [1] * 6 + [0] * 2 + [2] * 8 + [0] * 4
    return torch.tensor(types_), [[1, 4, 6]], [[2, 4, 4]]


def _fake_model(cls: type, merge: int) -> types.SimpleNamespace:
    fake = types.SimpleNamespace(
        config=types.SimpleNamespace(vision_config=types.SimpleNamespace(spatial_merge_size=merge))
    )
    fake.get_vision_position_ids = lambda *a, **kw: cls.get_vision_position_ids(fake, *a, **kw)
    return fake


def test_position_ids_match_transformers_qwen2_vl() -> None:
    modeling = pytest.importorskip("transformers.models.qwen2_vl.modeling_qwen2_vl")
    token_types, images, videos = _hf_sequence()
    ids, delta = mrope_position_ids(token_types, images, videos, spatial_merge_size=2)
    fake = _fake_model(modeling.Qwen2VLModel, 2)
    ref, ref_delta = modeling.Qwen2VLModel.get_rope_index(
        fake, token_types[None], token_types[None].int(), torch.tensor(images), torch.tensor(videos)
    )
    assert torch.equal(ids, ref[:, 0])
    assert delta == int(ref_delta[0, 0])
    # the text after the image continues at start + max(h, w) / merge
    assert ids[:, 9].tolist() == [3 + 3, 3 + 3, 3 + 3]


def test_position_ids_errors() -> None:
    token_types, images, videos = _hf_sequence()
    with pytest.raises(ValueError, match="makes 24 tokens"):
        mrope_position_ids(token_types, images, videos, spatial_merge_size=1)
    with pytest.raises(ValueError, match="no grid left"):
        mrope_position_ids(token_types, images, [], spatial_merge_size=2)


@pytest.mark.parametrize("model", ["qwen2_vl", "qwen3_vl"])
def test_cos_sin_match_transformers(model: str) -> None:
    """Our [B, T, r] table, duplicated, equals transformers' rotary embedding output on mixed ids (small positions)."""
    if model == "qwen2_vl":
        mod = pytest.importorskip("transformers.models.qwen2_vl.modeling_qwen2_vl")
        conf = pytest.importorskip("transformers.models.qwen2_vl.configuration_qwen2_vl")
        section, layout = [8, 12, 12], "chunked"
        cfg = conf.Qwen2VLTextConfig(
            hidden_size=128,
            num_attention_heads=2,
            rope_parameters={"rope_type": "default", "rope_theta": 10000.0, "mrope_section": section},
        )
        hf = mod.Qwen2VLRotaryEmbedding(cfg)
    else:
        mod = pytest.importorskip("transformers.models.qwen3_vl.modeling_qwen3_vl")
        conf = pytest.importorskip("transformers.models.qwen3_vl.configuration_qwen3_vl")
        section, layout = [12, 10, 10], "interleaved"
        cfg = conf.Qwen3VLTextConfig(
            hidden_size=128,
            num_attention_heads=2,
            head_dim=64,
            rope_parameters={"rope_type": "default", "rope_theta": 10000.0, "mrope_section": section},
        )
        hf = mod.Qwen3VLTextRotaryEmbedding(cfg)
    token_types, images, videos = _hf_sequence()
    ids, _ = mrope_position_ids(token_types, images, videos, spatial_merge_size=2)
    ids = torch.stack([ids, ids + 7], dim=1)  # [3, B=2, T]
    cos_hf, sin_hf = hf(torch.zeros(1, dtype=torch.float32), ids)
    cos, sin = mrope_cos_sin(hf.inv_freq, ids, section, layout=layout)
    torch.testing.assert_close(torch.cat((cos, cos), -1), cos_hf, atol=2e-6, rtol=0)
    torch.testing.assert_close(torch.cat((sin, sin), -1), sin_hf, atol=2e-6, rtol=0)
    # and the rotation: transformers' apply_rotary_pos_emb equals ropekit's module built from the same config
    q = torch.randn(2, 2, ids.shape[-1], 64)
    q_hf, _ = mod.apply_rotary_pos_emb(q, q, cos_hf, sin_hf)
    torch.testing.assert_close(apply_rotary(q, cos[:, None], sin[:, None]), q_hf, atol=1e-5, rtol=0)
    params = dict(cfg.rope_parameters, mrope_interleaved=layout == "interleaved")
    module = MRotaryEmbedding(64, params)
    # ropekit rounds the ladder once from float64; transformers computes it in float32 (1 ulp apart at most)
    torch.testing.assert_close(module.inv_freq, hf.inv_freq, atol=0, rtol=2.4e-7)
    torch.testing.assert_close(module(q, q, ids)[0], q_hf, atol=1e-5, rtol=0)


def test_position_ids_match_transformers_qwen3_vl() -> None:
    """Qwen3-VL splits a video into one grid per frame (timestamps between frames): pass one t=1 grid per frame."""
    modeling = pytest.importorskip("transformers.models.qwen3_vl.modeling_qwen3_vl")
    token_types = torch.tensor([0] * 2 + [1] * 6 + [0] + [2] * 4 + [0] + [2] * 4 + [0] * 2)
    ids, delta = mrope_position_ids(token_types, [[1, 4, 6]], [[1, 4, 4], [1, 4, 4]], spatial_merge_size=2)
    fake = _fake_model(modeling.Qwen3VLModel, 2)
    ref, ref_delta = modeling.Qwen3VLModel.get_rope_index(
        fake, token_types[None], token_types[None].int(), torch.tensor([[1, 4, 6]]), torch.tensor([[2, 4, 4]])
    )
    assert torch.equal(ids, ref[:, 0])
    assert delta == int(ref_delta[0, 0])


def test_split_mrope_parameters() -> None:
    core, section, layout = split_mrope_parameters(
        {"rope_type": "default", "rope_theta": 5e6, "mrope_section": [24, 20, 20], "mrope_interleaved": True}
    )
    assert core == {"rope_type": "default", "rope_theta": 5e6} and section == (24, 20, 20) and layout == "interleaved"
    with pytest.raises(ValueError, match="no 'mrope_section'"):
        split_mrope_parameters({"rope_theta": 1e4})
    with pytest.raises(ValueError, match="sum to rotary_dim / 2"):
        MRotaryEmbedding(64, {"rope_theta": 1e4, "mrope_section": [16, 24, 24]})
    with pytest.raises(ValueError, match="unknown rope parameter"):  # the core's strict key check still applies
        MRotaryEmbedding(128, {"rope_theta": 1e4, "mrope_section": [16, 24, 24], "rope_thetta": 1.0})


def test_mrope_cos_sin_errors() -> None:
    inv = torch.ones(8)
    with pytest.raises(ValueError, match=r"\[3, \.\.\., T\]"):
        mrope_cos_sin(inv, torch.zeros(2, 5, dtype=torch.long), [2, 3, 3])
    with pytest.raises(ValueError, match="sum\\(mrope_section\\) = 9"):
        mrope_cos_sin(inv, torch.zeros(3, 5, dtype=torch.long), [3, 3, 3])


def test_v4_mrope_type_means_default_frequencies() -> None:
    """transformers v4 Qwen2-VL configs: rope_scaling {"type": "mrope", "mrope_section": ...} -> default ladder."""
    v4 = MRotaryEmbedding(128, {"type": "mrope", "rope_theta": 1e6, "mrope_section": [16, 24, 24]})
    v5 = MRotaryEmbedding(128, {"rope_type": "default", "rope_theta": 1e6, "mrope_section": [16, 24, 24]})
    pos = torch.arange(12).expand(3, 1, -1)  # [3, B=1, T]
    q = torch.randn(1, 2, 12, 128)
    torch.testing.assert_close(v4(q, q, pos)[0], v5(q, q, pos)[0], rtol=0, atol=0)
