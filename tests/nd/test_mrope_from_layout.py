"""MRotaryEmbedding.from_layout: each named layout equals its explicit construction; names, defaults, errors."""

from __future__ import annotations

import pytest
import torch

from ropekit import apply_rotary, rope_cos_sin, rope_frequencies
from ropekit.nd import MRotaryEmbedding
from ropekit.nd.multimodal import (
    LAYOUT_SECTIONS,
    MULTIMODAL_LAYOUTS,
    hope_frequencies,
    layout_cos_sin,
    layout_name,
    layout_pair_axes,
)

D = 24  # 12 rotary pairs
THETA = 5000.0
# asymmetric sections (in each layout's own order) so that a swapped axis shows
SECTIONS = {
    "qwen2_vl": (2, 5, 5),
    "qwen2_5_omni": (2, 5, 5),
    "qwen3_vl": (6, 3, 3),
    "qwen3_omni": (6, 3, 3),
    "mrope_interleave": (6, 3, 3),
    "ernie4_5_vl": (5, 5, 2),  # (h, w, t)
    "videorope": (2, 5, 5),  # t pairs 2, h and w share 10
    "hope": (2, 5, 5),
}
QWEN_LAYOUT = {
    "qwen2_vl": "chunked",
    "qwen2_5_omni": "chunked",
    "qwen3_vl": "interleaved",
    "qwen3_omni": "interleaved",
    "mrope_interleave": "interleaved",
}


def _qk(seed: int, B: int = 2, T: int = 9) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(B, 3, T, D, generator=g), torch.randn(B, 1, T, D, generator=g)


def _explicit(name: str, q: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
    """The layout by hand: the text model's ladder, the layout's pair map (HoPE: t pairs at zero), its pairing."""
    inv_freq, _ = rope_frequencies({"rope_type": "default", "rope_theta": THETA}, head_dim=D)
    sec = SECTIONS[name]
    axes = layout_pair_axes(name, sec)
    nope = hope_frequencies(inv_freq, sec[0])[1] if name == "hope" else None
    cos, sin = layout_cos_sin(inv_freq, ids, axes, nope_pairs=nope)  # [B, T, r]
    return apply_rotary(q, cos.unsqueeze(1), sin.unsqueeze(1), interleaved=MULTIMODAL_LAYOUTS[name])


def test_every_layout_has_a_case_here() -> None:
    assert set(SECTIONS) == set(MULTIMODAL_LAYOUTS) == set(LAYOUT_SECTIONS)


@pytest.mark.parametrize("name", list(MULTIMODAL_LAYOUTS))
def test_from_layout_equals_the_explicit_construction(name: str) -> None:
    q, k = _qk(1)
    ids = torch.randint(0, 60, (3, 2, 9), generator=torch.Generator().manual_seed(2))
    rope = MRotaryEmbedding.from_layout(name, D, {"rope_theta": THETA}, mrope_section=SECTIONS[name])
    qr, kr = rope(q, k, ids)
    torch.testing.assert_close(qr, _explicit(name, q, ids), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(kr, _explicit(name, k, ids), atol=1e-5, rtol=1e-5)
    if name in QWEN_LAYOUT:  # and the M-RoPE module built with its mrope_section and layout, bit for bit
        params = {"rope_theta": THETA, "mrope_section": list(SECTIONS[name])}
        plain = MRotaryEmbedding(D, params, layout=QWEN_LAYOUT[name])
        for got, want in zip((qr, kr), plain(q, k, ids), strict=True):
            assert torch.equal(got, want)


@pytest.mark.parametrize("name", [n for n in MULTIMODAL_LAYOUTS if n != "hope"])
def test_text_tokens_get_1d_rope(name: str) -> None:
    q, k = _qk(3)
    pos = torch.arange(9).expand(2, 9)
    rope = MRotaryEmbedding.from_layout(name, D, {"rope_theta": THETA}, mrope_section=SECTIONS[name])
    inv_freq, _ = rope_frequencies({"rope_type": "default", "rope_theta": THETA}, head_dim=D)
    cos, sin = rope_cos_sin(inv_freq, pos)  # [B, T, r]
    want = apply_rotary(q, cos.unsqueeze(1), sin.unsqueeze(1), interleaved=MULTIMODAL_LAYOUTS[name])
    torch.testing.assert_close(rope(q, k, pos.expand(3, 2, 9))[0], want, atol=1e-5, rtol=1e-5)


def test_hope_keeps_its_temporal_pairs_still() -> None:
    rope = MRotaryEmbedding.from_layout("hope", D, {"rope_theta": THETA}, mrope_section=SECTIONS["hope"])
    assert rope.nope_pairs is not None and int(rope.nope_pairs.sum()) == SECTIONS["hope"][0]
    q, k = _qk(4)
    ids = torch.zeros(3, 2, 9, dtype=torch.long)
    ids[0] = torch.arange(9) * 7  # only t moves: HoPE's t pairs are NoPE, so nothing turns
    assert torch.equal(rope(q, k, ids)[0], q)


def test_names_and_default_sections() -> None:
    for spelling in ("qwen2-vl", "Qwen2-VL", "qwen2_vl"):
        assert layout_name(spelling) == "qwen2_vl"
    assert layout_name("Qwen2.5-Omni") == "qwen2_5_omni"
    q, k = torch.randn(1, 2, 5, 128), torch.randn(1, 2, 5, 128)
    ids = torch.randint(0, 30, (3, 1, 5), generator=torch.Generator().manual_seed(5))
    named = MRotaryEmbedding.from_layout("qwen2-vl", 128, {"rope_theta": 1e6})
    assert named.mrope_section == LAYOUT_SECTIONS["qwen2_vl"] == (16, 24, 24)
    plain = MRotaryEmbedding(128, {"rope_theta": 1e6, "mrope_section": [16, 24, 24]})
    assert torch.equal(named(q, k, ids)[0], plain(q, k, ids)[0])
    # a section in rope_parameters (as hub configs carry it) is used; mrope_section= wins over it
    from_params = MRotaryEmbedding.from_layout("qwen3_vl", D, {"mrope_section": [6, 3, 3], "mrope_interleaved": True})
    assert from_params.mrope_section == (6, 3, 3)
    both = MRotaryEmbedding.from_layout("qwen3_vl", D, {"mrope_section": [8, 2, 2]}, mrope_section=(6, 3, 3))
    assert both.mrope_section == (6, 3, 3)


def test_bad_layouts_raise() -> None:
    with pytest.raises(ValueError, match="did you mean 'qwen2_vl'"):
        MRotaryEmbedding.from_layout("qwen2-vI", 128)
    with pytest.raises(ValueError, match="rotary pairs"):
        MRotaryEmbedding.from_layout("qwen2_vl", D)  # the released (16, 24, 24) needs head_dim 128
    with pytest.raises(ValueError, match="must equal mrope_section"):
        MRotaryEmbedding.from_layout("ernie4_5_vl", D, mrope_section=(4, 6, 2))
    with pytest.raises(ValueError, match="not realisable"):
        MRotaryEmbedding.from_layout("qwen3_vl", D, mrope_section=(2, 5, 5))
    with pytest.raises(TypeError, match="name"):
        MRotaryEmbedding.from_layout(3, D)  # type: ignore[arg-type]
