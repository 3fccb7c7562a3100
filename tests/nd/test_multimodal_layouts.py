"""Named multimodal layouts (ropekit.nd.multimodal): transformers parity (ERNIE-4.5-VL, Qwen2.5-Omni) and properties."""

from __future__ import annotations

import types

import pytest
import torch

from ropekit import apply_rotary, rope_cos_sin
from ropekit.nd.multimodal import (
    ernie_pair_axes,
    ernie_position_ids,
    hope_frequencies,
    hope_position_ids,
    layout_cos_sin,
    layout_pair_axes,
    mhrope_cos_sin,
    mhrope_head_axes,
    mrope_interleave_pair_axes,
    mrope_interleave_position_ids,
    omni_position_ids,
    videorope_pair_axes,
    videorope_position_ids,
)


def _ladder(r: int, base: float = 1e4) -> torch.Tensor:
    return (1.0 / base ** (torch.arange(0, 2 * r, 2, dtype=torch.float64) / (2 * r))).float()


def _scores(q: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    return q @ k.transpose(-1, -2)


# ---- ERNIE-4.5-VL ----------------------------------------------------------------------------------------------


def test_ernie_pair_axes_rule() -> None:
    axes = ernie_pair_axes([22, 22, 20])
    assert axes[:4].tolist() == [1, 2, 1, 2] and axes[44:].tolist() == [0] * 20
    assert [int((axes == a).sum()) for a in range(3)] == [20, 22, 22]
    with pytest.raises(ValueError, match="must equal mrope_section"):
        ernie_pair_axes([20, 24, 20])


def _ernie_sequence() -> tuple[torch.Tensor, list[list[int]], list[list[int]]]:
    """text 3, image (1, 4, 6) merged 2x2 -> 6, text 2, video (4, 4, 4) merged 2 in t and 2x2 -> 8, text 3."""
    return torch.tensor([0] * 3 + [1] * 6 + [0] * 2 + [2] * 8 + [0] * 3), [[1, 4, 6]], [[4, 4, 4]]


def test_ernie_position_ids_match_transformers() -> None:
    modeling = pytest.importorskip("transformers.models.ernie4_5_vl_moe.modeling_ernie4_5_vl_moe")
    cls = modeling.Ernie4_5_VLMoeModel
    token_types, images, videos = _ernie_sequence()
    fake = types.SimpleNamespace(
        config=types.SimpleNamespace(
            vision_config=types.SimpleNamespace(spatial_merge_size=2, temporal_merge_size=2)
        )
    )
    fake.get_vision_position_ids = lambda *a, **kw: cls.get_vision_position_ids(fake, *a, **kw)
    ref, ref_delta = cls.get_rope_index(
        fake, token_types[None], token_types[None].int(), torch.tensor(images), torch.tensor(videos)
    )
    ids, delta = ernie_position_ids(token_types, images, videos, spatial_merge_size=2, temporal_merge_size=2)
    assert torch.equal(ids, ref[:, 0]) and delta == int(ref_delta[0, 0])
    assert ids[0, 11:19].tolist() == [8] * 4 + [9] * 4  # start 3 + max(2, 3) + 2 text; 4 frames merged -> 2 t ids
    # the vision helper with a time interval, against transformers' own
    ref_v = cls.get_vision_position_ids(fake, 5, torch.tensor([6, 4, 4]), 2, 2, time_interval=2.5)
    mine, _ = ernie_position_ids(torch.tensor([0] * 5 + [2] * 12), [], [[6, 4, 4]], time_interval=2.5)
    assert torch.equal(mine[:, 5:], ref_v)
    with pytest.raises(ValueError, match="makes 16 tokens"):
        ernie_position_ids(token_types, images, videos, temporal_merge_size=1)


def test_ernie_cos_sin_and_rotation_match_transformers() -> None:
    modeling = pytest.importorskip("transformers.models.ernie4_5_vl_moe.modeling_ernie4_5_vl_moe")
    conf = pytest.importorskip("transformers.models.ernie4_5_vl_moe.configuration_ernie4_5_vl_moe")
    section = [6, 6, 4]  # (h, w, t): r = 16, head_dim 32
    cfg = conf.Ernie4_5_VLMoeTextConfig(
        hidden_size=64, num_attention_heads=2, head_dim=32,
        rope_parameters={"rope_type": "default", "rope_theta": 500000.0, "mrope_section": section},
    )
    hf = modeling.Ernie4_5_VLMoeTextRotaryEmbedding(cfg)
    token_types, images, videos = _ernie_sequence()
    ids, _ = ernie_position_ids(token_types, images, videos)
    ids = torch.stack([ids, ids + 9], dim=1)  # [3, B=2, T]
    cos_hf, sin_hf = hf(torch.zeros(1), ids)  # [B, T, 2r], interleaved duplication
    inv_freq = _ladder(16, 500000.0)
    axes = layout_pair_axes("ernie4_5_vl", section)
    cos, sin = layout_cos_sin(inv_freq, ids, axes)
    torch.testing.assert_close(cos.repeat_interleave(2, -1), cos_hf, atol=2e-6, rtol=0)
    torch.testing.assert_close(sin.repeat_interleave(2, -1), sin_hf, atol=2e-6, rtol=0)
    q = torch.randn(2, 2, ids.shape[-1], 32)
    q_hf, _ = modeling.apply_rotary_pos_emb(q, q, cos_hf, sin_hf)
    torch.testing.assert_close(apply_rotary(q, cos[:, None], sin[:, None], interleaved=True), q_hf, atol=1e-5, rtol=0)


# ---- MRoPE-I and MHRoPE ------------------------------------------------------------------------------------------


def test_mrope_interleave_deals_round_robin() -> None:
    axes = mrope_interleave_pair_axes([22, 21, 21])
    assert axes[:9].tolist() == [0, 1, 2] * 3 and [int((axes == a).sum()) for a in range(3)] == [22, 21, 21]
    # every axis sees the highest and the lowest thirds of the ladder
    for a in range(3):
        j = torch.nonzero(axes == a).flatten()
        assert int(j.min()) < 3 and int(j.max()) >= 60


def test_mhrope_heads_follow_one_axis_each() -> None:
    head_axes = mhrope_head_axes([2, 1, 1])
    inv_freq = _ladder(8)
    ids = torch.randint(0, 50, (3, 5, 7))  # [3, B, T]
    cos, sin = mhrope_cos_sin(inv_freq, ids, head_axes)  # [B, H, T, r]
    assert cos.shape == (5, 4, 7, 8)
    for h, a in enumerate(head_axes.tolist()):
        ref_cos, ref_sin = rope_cos_sin(inv_freq, ids[a])  # the head is 1-D RoPE on its axis' ids
        torch.testing.assert_close(cos[:, h], ref_cos, atol=0, rtol=0)
        torch.testing.assert_close(sin[:, h], ref_sin, atol=0, rtol=0)


def test_mhrope_pads_unused_heads_with_nope() -> None:
    head_axes = mhrope_head_axes([2, 3, 3], num_heads=10)  # the authors' default split, two spare heads
    assert head_axes.tolist() == [0, 0, 1, 1, 1, 2, 2, 2, -1, -1]
    cos, sin = mhrope_cos_sin(_ladder(4), torch.randint(0, 50, (3, 6)), head_axes)
    assert torch.all(cos[8:] == 1) and torch.all(sin[8:] == 0) and not torch.all(cos[:8] == 1)
    with pytest.raises(ValueError, match="num_heads"):
        mhrope_head_axes([2, 3, 3], num_heads=7)


def _mrope_i_oracle(kinds: list[int], grids: list[list[int]], reset: bool, stride: int) -> list[list[int]]:
    """Token-by-token restatement of the MRoPE-I / spatial-reset rule (authors' code), written independently."""
    out: list[list[int]] = []
    nxt, i, g = 0, 0, 0
    while i < len(kinds):
        if kinds[i] == 0:
            out.append([nxt] * 3)
            nxt, i = nxt + 1, i + 1
            continue
        f, h, w = grids[g]
        g += 1
        off = 0 if reset else nxt
        for frame in range(f):
            for row in range(h):
                for col in range(w):
                    out.append([nxt + stride * frame, off + row, off + col])
        i += f * h * w
        nxt = (nxt + max(stride * (f - 1), h - 1, w - 1) + 1) if reset else max(max(p) for p in out) + 1
    return out


@pytest.mark.parametrize(("reset", "stride"), [(True, 1), (True, 3), (False, 1), (False, 2)])
def test_mrope_interleave_position_ids_match_token_oracle(reset: bool, stride: int) -> None:
    # text 2, image (1, 8, 4) merged 2x2 -> (1, 4, 2), text 3, video (3, 4, 6) -> (3, 2, 3), text 2
    kinds = [0] * 2 + [1] * 8 + [0] * 3 + [2] * 18 + [0] * 2
    ids, delta = mrope_interleave_position_ids(torch.tensor(kinds), [[1, 8, 4]], [[3, 4, 6]],
                                               spatial_reset=reset, temporal_stride=stride)
    expected = torch.tensor(_mrope_i_oracle(kinds, [[1, 4, 2], [3, 2, 3]], reset, stride)).T
    assert torch.equal(ids, expected) and delta == int(expected.max()) + 1 - len(kinds)
    if reset:  # every image starts its spatial frame at (0, 0)
        assert ids[1:, 2].tolist() == [0, 0] and ids[1:, 13].tolist() == [0, 0]


@pytest.mark.parametrize(
    "layout", ["qwen2_vl", "qwen3_vl", "qwen2_5_omni", "qwen3_omni", "mrope_interleave", "ernie4_5_vl", "videorope"]
)
def test_text_only_reduces_to_1d_rope(layout: str) -> None:
    section = {"qwen2_vl": [8, 12, 12], "qwen2_5_omni": [8, 12, 12], "ernie4_5_vl": [12, 12, 8],
               "videorope": [8, 12, 12]}.get(layout, [12, 10, 10])
    inv_freq = _ladder(32)
    pos = torch.cat([torch.arange(40), torch.tensor([70_001, 1_000_003])])
    cos, sin = layout_cos_sin(inv_freq, pos.expand(3, -1), layout_pair_axes(layout, section))
    cos1, sin1 = rope_cos_sin(inv_freq, pos)
    torch.testing.assert_close(cos, cos1, atol=0, rtol=0)
    torch.testing.assert_close(sin, sin1, atol=0, rtol=0)
    heads_cos, _ = mhrope_cos_sin(inv_freq, pos.expand(3, -1), mhrope_head_axes([1, 1, 1]))
    torch.testing.assert_close(heads_cos, cos1.expand(3, -1, -1), atol=0, rtol=0)


@pytest.mark.parametrize(
    "layout", ["qwen2_5_omni", "qwen3_omni", "mrope_interleave", "ernie4_5_vl", "videorope", "mhrope", "hope"]
)
def test_relative_along_each_axis(layout: str) -> None:
    """Scores depend only on id differences: shifting every token's id on one axis changes nothing."""
    torch.manual_seed(0)
    inv_freq = _ladder(12)
    q, k = torch.randn(2, 3, 10, 24, dtype=torch.float64).unbind(0)
    ids = torch.randint(0, 30, (3, 10))

    def rotate(x: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
        if layout == "mhrope":
            c, s = mhrope_cos_sin(inv_freq, p, mhrope_head_axes([1, 1, 1]))
            return apply_rotary(x.float(), c, s).double()
        nope = None
        if layout == "hope":
            axes, nope = hope_frequencies(inv_freq, 4)
        else:
            axes = layout_pair_axes(layout, [4, 4, 4])
        c, s = layout_cos_sin(inv_freq, p, axes, nope_pairs=nope)
        return apply_rotary(x.float(), c, s, interleaved=layout == "ernie4_5_vl").double()

    base = _scores(rotate(q, ids), rotate(k, ids))
    for a in range(3):
        shifted = ids.clone()
        shifted[a] += 37
        torch.testing.assert_close(_scores(rotate(q, shifted), rotate(k, shifted)), base, atol=2e-4, rtol=0)
    moved = ids.clone()
    moved[1, 0] += 5  # one token's h id: the scores must change (the test can fail)
    assert not torch.allclose(_scores(rotate(q, moved), rotate(k, moved)), base, atol=1e-3)


# ---- Qwen2.5-Omni time-aligned positions ------------------------------------------------------------------------

_VS, _VE, _AS, _AE, _IMG, _VID, _AUD, _TXT = 900, 901, 902, 903, 910, 911, 912, 5


def _omni_fake() -> types.SimpleNamespace:
    modeling = pytest.importorskip("transformers.models.qwen2_5_omni.modeling_qwen2_5_omni")
    cls = modeling.Qwen2_5OmniPreTrainedModelForConditionalGeneration
    fake = types.SimpleNamespace(
        spatial_merge_size=2,
        config=types.SimpleNamespace(
            image_token_id=_IMG, video_token_id=_VID, audio_token_id=_AUD, vision_start_token_id=_VS,
            audio_start_token_id=_AS, position_id_per_seconds=25, seconds_per_chunk=2,
        ),
    )
    fake.get_llm_pos_ids_for_vision = lambda *a, **kw: cls.get_llm_pos_ids_for_vision(fake, *a, **kw)
    fake.get_chunked_index = lambda *a, **kw: cls.get_chunked_index(fake, *a, **kw)
    fake.get_rope_index = lambda *a, **kw: cls.get_rope_index(fake, *a, **kw)
    return fake


def test_omni_position_ids_match_transformers() -> None:
    fake = _omni_fake()
    # text 2, <vs> image (1, 4, 6)->6 <ve>, text 1, <as> audio (seqlen 40 -> 10 tokens) <ae>,
    # <vs> video (3, 4, 4)->12 <ve>, text 2
    seq = ([_TXT] * 2 + [_VS] + [_IMG] * 6 + [_VE] + [_TXT] + [_AS] + [_AUD] * 10 + [_AE]
           + [_VS] + [_VID] * 12 + [_VE] + [_TXT] * 2)
    kinds = {_IMG: 1, _VID: 2, _AUD: 3}
    token_types = torch.tensor([kinds.get(t, 0) for t in seq])
    images, videos, spg = [[1, 4, 6]], [[3, 4, 4]], [0.96]
    ref, ref_delta = fake.get_rope_index(
        torch.tensor([seq]), torch.tensor(images), torch.tensor(videos), None, False, torch.tensor([40]),
        torch.tensor(spg),
    )
    ids, delta = omni_position_ids(token_types, images, videos, seconds_per_grid=spg, position_id_per_seconds=25)
    assert torch.equal(ids, ref[:, 0]) and delta == int(ref_delta[0, 0])
    video_t = ids[0, token_types == 2].unique() - ids[0, token_types == 2].min()
    assert video_t.tolist() == [0, 24, 48]  # floor(i * 0.96 s * 25 ids/s): ids follow seconds
    with pytest.raises(ValueError, match="seconds_per_grid"):
        omni_position_ids(token_types, images, videos)


# (seconds per grid, audio frames): the video has more chunks; the audio has more; t ids jump over whole chunks
@pytest.mark.parametrize(("spg", "audio_seqlen"), [(0.96, 400), (0.96, 800), (4.8, 300)])
def test_omni_audio_in_video_matches_transformers(spg: float, audio_seqlen: int) -> None:
    fake = _omni_fake()
    n_audio = ((audio_seqlen - 1) // 2 + 1 - 2) // 2 + 1  # Qwen2.5-Omni's audio encoder output length
    videos = [[6, 4, 4]]  # 6 grids of 2x2 merged tokens
    n_video = 6 * 2 * 2
    # text 2, <vs> image (1, 4, 6)->6 <ve>, text 1, <as> audio <ae>, text 1, <vs><as> clip <ae><ve>, text 2
    # (transformers reads only where the clip starts and its length, not the order of its tokens)
    seq = ([_TXT] * 2 + [_VS] + [_IMG] * 6 + [_VE] + [_TXT] + [_AS] + [_AUD] * 10 + [_AE] + [_TXT] + [_VS, _AS]
           + [_VID] * n_video + [_AUD] * n_audio + [_AE, _VE] + [_TXT] * 2)
    clip_start = seq.index(_VID)
    token_types = torch.tensor([1 if t == _IMG else 3 if t == _AUD else 0 for t in seq])
    token_types[clip_start:clip_start + n_video + n_audio] = 4
    ref, ref_delta = fake.get_rope_index(
        torch.tensor([seq]), torch.tensor([[1, 4, 6]]), torch.tensor(videos), None, True,
        torch.tensor([40, audio_seqlen]), torch.tensor([spg]),
    )
    ids, delta = omni_position_ids(token_types, [[1, 4, 6]], videos, seconds_per_grid=[spg])
    assert torch.equal(ids, ref[:, 0]) and delta == int(ref_delta[0, 0])
    markers = ids[0, clip_start - 2:clip_start].tolist(), ids[0, clip_start + n_video + n_audio:][:2].tolist()
    assert markers[0][0] == markers[0][1] and markers[1][0] == markers[1][1]  # paired markers share an id
    bad = torch.tensor([0] + [4] * (n_video + n_audio) + [0] * 2)  # one token before the clip: no marker pair
    with pytest.raises(ValueError, match="start markers"):
        omni_position_ids(bad, [], videos, seconds_per_grid=[spg])


# ---- VideoRoPE and HoPE --------------------------------------------------------------------------------------------


def test_videorope_allocation_low_frequency_temporal() -> None:
    axes = videorope_pair_axes(64, 16)
    assert axes[48:].tolist() == [0] * 16 and axes[:48].tolist() == [1, 2] * 24
    inv_freq = _ladder(64)
    assert float(inv_freq[axes == 0].max()) < float(inv_freq[axes != 0].min())  # t has the lowest frequencies
    with pytest.raises(ValueError, match="even remainder"):
        videorope_pair_axes(64, 15)


def test_videorope_diagonal_layout_and_spacing() -> None:
    token_types = torch.tensor([0] * 3 + [2] * 18 + [0] * 2)  # 2 frames of 3x3
    ids, _ = videorope_position_ids(token_types, [[2, 3, 3]], delta=2)
    video = ids[:, 3:21].reshape(3, 2, 3, 3)
    assert video[0, :, 0, 0].tolist() == [3, 5]  # t = start + delta * frame
    assert video[1, 0, :, 0].tolist() == [2, 3, 4] and video[2, 1, 0, :].tolist() == [4, 5, 6]  # centred on t
    center = video[:, :, 1, 1]  # the frame centre lies on the diagonal t = h = w
    assert torch.equal(center[0], center[1]) and torch.equal(center[0], center[2])
    assert ids[:, 21].tolist() == [5 + 1] * 3  # text resumes at the last frame's t id + 1
    text_only, _ = videorope_position_ids(torch.zeros(6, dtype=torch.long), delta=3)
    assert torch.equal(text_only, torch.arange(6).expand(3, 6))
    frac, _ = videorope_position_ids(token_types, [[2, 3, 3]], delta=0.5)
    assert frac.dtype == torch.float64 and frac[0, 12].item() == 3.5


def _videorope_oracle(kinds: list[int], grids: list[list[int]], delta: float) -> list[list[float]]:
    """Token-by-token restatement of the VideoRoPE rule (authors' code): [T][3] ids, written independently."""
    out: list[list[float]] = []
    nxt, i, g = 0.0, 0, 0
    while i < len(kinds):
        if kinds[i] == 0:
            out.append([nxt] * 3)
            nxt, i = nxt + 1, i + 1
            continue
        f, h, w = grids[g]
        g += 1
        for frame in range(f):
            for row in range(h):
                for col in range(w):
                    t = nxt + delta * frame
                    out.append([t, t + row - (h - 1) // 2, t + col - (w - 1) // 2])
        i += f * h * w
        nxt = nxt + delta * (f - 1) + 1
    return out


@pytest.mark.parametrize("delta", [2.0, 0.75, 3.0])
def test_videorope_ids_match_token_oracle(delta: float) -> None:
    grids = [[3, 4, 2], [1, 3, 5]]  # even and odd H, W: the centring is (H - 1) // 2
    kinds = [0] * 4 + [2] * 24 + [0] * 3 + [1] * 15 + [0] * 2
    ids, rope_delta = videorope_position_ids(torch.tensor(kinds), grids, delta=delta)
    expected = torch.tensor(_videorope_oracle(kinds, grids, delta), dtype=torch.float64).T
    torch.testing.assert_close(ids.double(), expected, atol=0, rtol=0)
    assert rope_delta == float(expected[0].max()) + 1 - len(kinds)
    assert ids.dtype == (torch.int64 if delta.is_integer() else torch.float64)
    with pytest.raises(ValueError, match="delta"):
        videorope_position_ids(torch.tensor(kinds), grids, delta=0.0)


def test_hope_nope_on_temporal_pairs_and_scaling() -> None:
    inv_freq = _ladder(16)
    axes, nope = hope_frequencies(inv_freq, 4)
    assert nope.tolist() == [False] * 12 + [True] * 4 and torch.equal(axes, videorope_pair_axes(16, 4))
    token_types = torch.tensor([0] * 2 + [2] * 8 + [0])
    ids, _ = hope_position_ids(token_types, [[2, 2, 2]], gamma=2.0)
    cos, sin = layout_cos_sin(inv_freq, ids, axes, nope_pairs=nope)
    assert torch.all(cos[:, nope] == 1) and torch.all(sin[:, nope] == 0)  # the temporal axis is NoPE
    # text-only: 1-D RoPE on the spatial pairs, identity on the NoPE pairs
    pos = torch.arange(20)
    cos_t, _ = layout_cos_sin(inv_freq, pos.expand(3, -1), axes, nope_pairs=nope)
    torch.testing.assert_close(cos_t[:, ~nope], rope_cos_sin(inv_freq, pos)[0][:, ~nope], atol=0, rtol=0)
    slow, _ = hope_position_ids(token_types, [[2, 2, 2]], gamma=0.5)
    assert slow[0, 6].item() - slow[0, 2].item() == 0.5  # frame stride = gamma
    with pytest.raises(ValueError, match="gamma"):
        hope_position_ids(token_types, [[2, 2, 2]], gamma=0.0)


# ---- Qwen3-Omni: real-valued time ids and audio in video ---------------------------------------------------------

_Q3_N_WINDOW = 50


def _qwen3_omni() -> tuple[types.ModuleType, types.SimpleNamespace]:
    modeling = pytest.importorskip("transformers.models.qwen3_omni_moe.modeling_qwen3_omni_moe")
    cls = modeling.Qwen3OmniMoePreTrainedModelForConditionalGeneration
    fake = types.SimpleNamespace(
        spatial_merge_size=2,
        config=types.SimpleNamespace(
            image_token_id=_IMG, video_token_id=_VID, audio_token_id=_AUD, vision_start_token_id=_VS,
            audio_start_token_id=_AS, position_id_per_seconds=13,
            audio_config=types.SimpleNamespace(n_window=_Q3_N_WINDOW),
        ),
    )
    fake.get_llm_pos_ids_for_vision = lambda *a, **kw: cls.get_llm_pos_ids_for_vision(fake, *a, **kw)
    fake.get_rope_index = lambda *a, **kw: cls.get_rope_index(fake, *a, **kw)
    return modeling, fake


def test_qwen3_omni_position_ids_match_transformers() -> None:
    modeling, fake = _qwen3_omni()
    n_audio = int(modeling._get_feat_extract_output_lengths(torch.tensor(40), _Q3_N_WINDOW))
    # text 2, <vs> image (1, 4, 6)->6 <ve>, text 1, <as> audio <ae>, <vs> video (3, 4, 4)->12 <ve>, text 2
    seq = ([_TXT] * 2 + [_VS] + [_IMG] * 6 + [_VE] + [_TXT] + [_AS] + [_AUD] * n_audio + [_AE]
           + [_VS] + [_VID] * 12 + [_VE] + [_TXT] * 2)
    kinds = {_IMG: 1, _VID: 2, _AUD: 3}
    token_types = torch.tensor([kinds.get(t, 0) for t in seq])
    images, videos, spg = [[1, 4, 6]], [[3, 4, 4]], [0.5]  # 0.5 s * 13 ids/s: t ids 6.5 apart, not floored
    ref, ref_delta = fake.get_rope_index(
        torch.tensor([seq]), torch.tensor(images), torch.tensor(videos), torch.ones(1, len(seq), dtype=torch.long),
        False, torch.tensor([40]), torch.tensor(spg),
    )
    ids, delta = omni_position_ids(token_types, images, videos, seconds_per_grid=spg, position_id_per_seconds=13,
                                   version="qwen3")
    assert ids.dtype == torch.float64
    torch.testing.assert_close(ids, ref[:, 0].double(), atol=1e-5, rtol=0)
    assert delta == pytest.approx(float(ref_delta[0, 0]))
    video_t = ids[0, token_types == 2].unique() - ids[0, token_types == 2].min()
    assert video_t.tolist() == [0.0, 6.5, 13.0]
    floored, _ = omni_position_ids(token_types, images, videos, seconds_per_grid=spg, position_id_per_seconds=13)
    assert (floored[0, token_types == 2].unique() - floored[0, token_types == 2].min()).tolist() == [0, 6, 13]


# (audio frames, video grid): the video outlasts the audio; the audio outlasts it; the audio outlasts the video's t
# ids (0, 13) but not its w ids (0..19), where transformers restarts after the audio anyway
@pytest.mark.parametrize(("audio_seqlen", "grid"), [(40, [4, 4, 6]), (400, [4, 4, 6]), (110, [2, 2, 40])])
def test_qwen3_omni_audio_in_video_matches_transformers(audio_seqlen: int, grid: list[int]) -> None:
    modeling, fake = _qwen3_omni()
    n_audio = int(modeling._get_feat_extract_output_lengths(torch.tensor(audio_seqlen), _Q3_N_WINDOW))
    videos, spg = [grid], [1.0]  # t ids 13 apart
    clip = grid[0] * (grid[1] // 2) * (grid[2] // 2) + n_audio
    # text 3, <vs> image (1, 2, 4)->2 <ve>, text 1, <vs><as> clip (video + its audio, merged by time) <ae><ve>, text 2
    # (transformers reads only the clip's length and that audio tokens exist, not their order inside the clip)
    seq = ([_TXT] * 3 + [_VS] + [_IMG] * 2 + [_VE] + [_TXT] + [_VS, _AS] + [_VID] * (clip - n_audio)
           + [_AUD] * n_audio + [_AE, _VE] + [_TXT] * 2)
    token_types = torch.tensor([1 if t == _IMG else 4 if t in (_VID, _AUD) else 0 for t in seq])
    images = [[1, 2, 4]]
    ref, ref_delta = fake.get_rope_index(
        torch.tensor([seq]), torch.tensor(images), torch.tensor(videos), torch.ones(1, len(seq), dtype=torch.long),
        True, torch.tensor([audio_seqlen]), torch.tensor(spg),
    )
    ids, delta = omni_position_ids(token_types, images, videos, seconds_per_grid=spg, position_id_per_seconds=13,
                                   version="qwen3")
    torch.testing.assert_close(ids, ref[:, 0].double(), atol=1e-5, rtol=0)
    assert delta == pytest.approx(float(ref_delta[0, 0]))
    run_t = ids[0, token_types == 4]
    assert torch.all(run_t[1:] >= run_t[:-1])  # the clip's tokens are in time order
    assert seq[8:10] == [_VS, _AS] and ids[0, 9] == ids[0, 8] + 1  # Qwen3-Omni counts the start markers
    q25, _ = omni_position_ids(token_types, images, videos, seconds_per_grid=spg, position_id_per_seconds=13)
    assert q25[0, 9] == q25[0, 8]  # Qwen2.5-Omni gives them one id


def test_qwen3_omni_cos_sin_match_transformers() -> None:
    modeling, _ = _qwen3_omni()
    conf = pytest.importorskip("transformers.models.qwen3_omni_moe.configuration_qwen3_omni_moe")
    section = [6, 5, 5]  # (t, h, w): r = 16, head_dim 32
    cfg = conf.Qwen3OmniMoeTextConfig(
        hidden_size=64, num_attention_heads=2, head_dim=32,
        rope_parameters={"rope_type": "default", "rope_theta": 1e6, "mrope_section": section},
    )
    hf = modeling.Qwen3OmniMoeThinkerTextRotaryEmbedding(cfg)
    ids = torch.stack([torch.randint(0, 60, (2, 30)), torch.randint(0, 60, (2, 30)), torch.randint(0, 60, (2, 30))])
    cos_hf, sin_hf = hf(torch.zeros(1), ids)  # [B, T, 2r], halves duplicated
    inv_freq = 1.0 / (1e6 ** (torch.arange(0, 32, 2, dtype=torch.float) / 32))
    cos, sin = layout_cos_sin(inv_freq, ids, layout_pair_axes("qwen3_omni", section))
    torch.testing.assert_close(torch.cat([cos, cos], -1), cos_hf, atol=2e-6, rtol=0)
    torch.testing.assert_close(torch.cat([sin, sin], -1), sin_hf, atol=2e-6, rtol=0)
