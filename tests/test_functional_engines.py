"""The engines' rotary calls and the ropekit call that does the same (``docs/kernels.md``, "From an engine's call").

flash-attention, vLLM and TransformerEngine are not installed here, so each engine's documented semantics is
written below as a small pure-torch oracle (per token, straight from the definitions, not their code), and the
ropekit call of the mapping table is checked against it.
"""

from __future__ import annotations

import pytest
import torch

from ropekit import apply_rotary, apply_rotary_qk, rope_cos_sin
from ropekit.functional import split_cos_sin_cache


def rotate_pairs(x: torch.Tensor, angle: torch.Tensor, interleaved: bool) -> torch.Tensor:
    """Rotate the first ``2r`` features of ``x: [..., D]`` by ``angle: [..., r]`` (float64, per pair)."""
    r = angle.shape[-1]
    x64 = x.double().clone()
    ia = torch.arange(r) * 2 if interleaved else torch.arange(r)
    ib = ia + 1 if interleaved else ia + r
    a, b = x64[..., ia], x64[..., ib]
    c, s = angle.double().cos(), angle.double().sin()
    x64[..., ia], x64[..., ib] = a * c - b * s, b * c + a * s
    return x64.to(x.dtype)


def angles_table(L: int, r: int) -> tuple[torch.Tensor, torch.Tensor]:
    inv_freq = 1.0 / 10000 ** (torch.arange(r, dtype=torch.float32) / r)
    return inv_freq, torch.arange(L).double()[:, None] * inv_freq.double()  # [L, r] float64 angles


# ---- flash-attention: apply_rotary_emb(x, cos, sin, interleaved, inplace, seqlen_offsets, cu_seqlens) ------------


def flash_oracle(x, cos, sin, *, interleaved, seqlen_offsets=0, cu_seqlens=None):
    """x ``[B, S, H, D]`` (or ``[total, H, D]`` with cu_seqlens), cos/sin ``[S_ro, rotary_dim / 2]``: token t of row
    (or sequence) b uses table row ``t + seqlen_offsets[b]``; features past rotary_dim pass through."""
    angle = torch.atan2(sin.double(), cos.double())  # the table's angles
    out = x.clone()
    if cu_seqlens is None:
        for b in range(x.shape[0]):
            off = int(seqlen_offsets[b]) if isinstance(seqlen_offsets, torch.Tensor) else seqlen_offsets
            for t in range(x.shape[1]):
                out[b, t] = rotate_pairs(x[b, t], angle[t + off], interleaved)
        return out
    for s in range(cu_seqlens.shape[0] - 1):
        off = int(seqlen_offsets[s]) if isinstance(seqlen_offsets, torch.Tensor) else seqlen_offsets
        for i, t in enumerate(range(int(cu_seqlens[s]), int(cu_seqlens[s + 1]))):
            out[t] = rotate_pairs(x[t], angle[i + off], interleaved)
    return out


@pytest.mark.parametrize("interleaved", [False, True])
def test_flash_attention_batched_with_offsets(interleaved: bool) -> None:
    inv_freq = 1.0 / 10000 ** (torch.arange(6, dtype=torch.float32) / 6)
    cos, sin = rope_cos_sin(inv_freq, torch.arange(32))  # [32, 6]: rotary_dim 12 of head_dim 16
    x = torch.randn(2, 5, 3, 16)
    offsets = torch.tensor([0, 9])
    got = apply_rotary(x, cos, sin, interleaved=interleaved, layout="bthd", seqlen_offsets=offsets)
    torch.testing.assert_close(got, flash_oracle(x, cos, sin, interleaved=interleaved, seqlen_offsets=offsets))
    got = apply_rotary(x, cos, sin, interleaved=interleaved, layout="bthd", seqlen_offsets=4)
    torch.testing.assert_close(got, flash_oracle(x, cos, sin, interleaved=interleaved, seqlen_offsets=4))


def test_flash_attention_varlen_inplace() -> None:
    inv_freq = 1.0 / 10000 ** (torch.arange(8, dtype=torch.float32) / 8)
    cos, sin = rope_cos_sin(inv_freq, torch.arange(32))
    cu = torch.tensor([0, 4, 5, 11], dtype=torch.int32)
    x = torch.randn(11, 2, 16, dtype=torch.bfloat16)
    want = flash_oracle(x, cos, sin, interleaved=False, seqlen_offsets=torch.tensor([3, 0, 7]), cu_seqlens=cu)
    out = apply_rotary(x, cos, sin, layout="thd", cu_seqlens=cu, seqlen_offsets=torch.tensor([3, 0, 7]), inplace=True)
    assert out is x
    torch.testing.assert_close(x, want, atol=1.6e-2, rtol=0)  # one bf16 rounding at |x| < 4 on both sides


# ---- vLLM: RotaryEmbedding(head_size, rotary_dim, ..., is_neox_style).forward(positions, query, key) -----------


def vllm_oracle(positions, query, key, cos_sin_cache, head_size, is_neox_style):
    """query ``[T, Hq * head_size]``, key ``[T, Hk * head_size]``, ``cos_sin_cache [L, rotary_dim]`` (cos | sin):
    each head's first rotary_dim features rotate by the cached angles of the token's position."""
    r = cos_sin_cache.shape[1] // 2
    angle = torch.atan2(cos_sin_cache[:, r:].double(), cos_sin_cache[:, :r].double())[positions]  # [T, r]
    outs = []
    for t in (query, key):
        heads = t.view(t.shape[0], -1, head_size)
        outs.append(rotate_pairs(heads, angle[:, None], not is_neox_style).view_as(t))
    return outs


@pytest.mark.parametrize("is_neox_style", [True, False])
def test_vllm_forward_with_cos_sin_cache(is_neox_style: bool) -> None:
    head_size, rotary_dim, hq, hk, n = 16, 12, 4, 2, 9
    inv_freq = 1.0 / 10000 ** (torch.arange(rotary_dim // 2, dtype=torch.float32) / (rotary_dim // 2))
    cos, sin = rope_cos_sin(inv_freq, torch.arange(64))
    cache = torch.cat((cos, sin), dim=-1)  # vLLM's layout
    positions = torch.randint(0, 64, (n,))
    query, key = torch.randn(n, hq * head_size), torch.randn(n, hk * head_size)
    want_q, want_k = vllm_oracle(positions, query, key, cache, head_size, is_neox_style)
    c, s = split_cos_sin_cache(cache)
    apply_rotary_qk(
        query.view(n, hq, head_size), key.view(n, hk, head_size), c, s, positions=positions, layout="thd",
        interleaved=not is_neox_style, inplace=True,
    )  # fmt: skip
    torch.testing.assert_close(query, want_q)
    torch.testing.assert_close(key, want_k)


# ---- TransformerEngine: apply_rotary_pos_emb(t, freqs, tensor_format, interleaved, cu_seqlens) -----------------


def te_oracle(t, freqs, tensor_format, interleaved=False, cu_seqlens=None):
    """freqs ``[S, 1, 1, rotary_dim]``: the angles, each pair's angle written twice (``cat(f, f)``, or
    ``(f0 f0 f1 f1 ..)`` interleaved); t ``[S, B, H, D]`` (sbhd), ``[B, S, H, D]`` (bshd) or ``[total, H, D]`` (thd,
    positions restart per sequence). The first rotary_dim features rotate."""
    rot = freqs.shape[-1]
    angle = freqs[:, 0, 0, 0::2] if interleaved else freqs[:, 0, 0, : rot // 2]  # [S, r]
    if tensor_format == "sbhd":
        return rotate_pairs(t, angle[: t.shape[0], None, None], interleaved)
    if tensor_format == "bshd":
        return rotate_pairs(t, angle[None, : t.shape[1], None], interleaved)
    out = t.clone()
    for s in range(cu_seqlens.shape[0] - 1):
        lo, hi = int(cu_seqlens[s]), int(cu_seqlens[s + 1])
        out[lo:hi] = rotate_pairs(t[lo:hi], angle[: hi - lo, None], interleaved)
    return out


@pytest.mark.parametrize(("tensor_format", "layout"), [("sbhd", "tbhd"), ("bshd", "bthd"), ("thd", "thd")])
def test_transformer_engine_formats(tensor_format: str, layout: str) -> None:
    inv_freq, angle = angles_table(24, 8)
    for interleaved in (False, True):
        f = angle.float()
        emb = torch.stack((f, f), dim=-1).flatten(-2) if interleaved else torch.cat((f, f), dim=-1)
        freqs = emb[:, None, None, :]  # [S, 1, 1, 16]: TE's RotaryPositionEmbedding output
        cos, sin = rope_cos_sin(inv_freq, torch.arange(24))  # the ropekit table of the same angles
        cu = torch.tensor([0, 6, 7, 15]) if tensor_format == "thd" else None
        shape = {"sbhd": (6, 2, 3, 20), "bshd": (2, 6, 3, 20), "thd": (15, 3, 20)}[tensor_format]
        t = torch.randn(*shape)
        want = te_oracle(t, freqs, tensor_format, interleaved, cu)
        got = apply_rotary(t, cos, sin, layout=layout, interleaved=interleaved, cu_seqlens=cu)
        torch.testing.assert_close(got, want)
