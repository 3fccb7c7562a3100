"""FoPE core (:mod:`ropekit.fope`): reduction to RoPE, floored pairs, the paper's / vLLM's formula, errors."""

from __future__ import annotations

import math

import pytest
import torch

from ropekit.fope import FourierRotaryEmbedding, apply_fope, fope_cos_sin, fope_inv_freq

D, R = 16, 8


def _qk(B: int = 2, H: int = 4, G: int = 2, T: int = 6, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(B, H, T, D, generator=g, dtype=torch.float64), torch.randn(
        B, G, T, D, generator=g, dtype=torch.float64
    )


def _rope_by_hand(x: torch.Tensor, positions: torch.Tensor, theta: float = 10_000.0) -> torch.Tensor:
    """Plain RoPE, half layout, written from Su et al. 2021 (RoFormer): pair (j, j + r) turns by t * theta^(-2j/D)."""
    out = x.clone()
    for j in range(R):
        w = theta ** (-2 * j / D)
        ang = positions.double() * w  # [T]
        c, s = ang.cos(), ang.sin()
        a, b = x[..., j], x[..., j + R]
        out[..., j] = a * c - b * s
        out[..., j + R] = b * c + a * s
    return out


def test_identity_coefficients_without_floor_equal_plain_rope():
    q, k = _qk()
    pos = torch.arange(6) * 37 + 5
    fope = FourierRotaryEmbedding(D, 2, max_position_embeddings=64, num_inv_freq=R).double()
    qo, ko = fope(q, k, pos)
    torch.testing.assert_close(qo, _rope_by_hand(q, pos), rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(ko, _rope_by_hand(k, pos), rtol=1e-6, atol=1e-6)


def test_identity_equals_transformers_rotary():
    llama = pytest.importorskip("transformers.models.llama.modeling_llama")
    q, k = _qk()
    pos = torch.arange(6) + 100
    fope = FourierRotaryEmbedding(D, 2, max_position_embeddings=64, num_inv_freq=R).double()
    inv = 10_000.0 ** (-torch.arange(0, D, 2, dtype=torch.float64) / D)
    emb = torch.cat((pos.double()[:, None] * inv, pos.double()[:, None] * inv), dim=-1)  # [T, D]
    qe, ke = llama.apply_rotary_pos_emb(q, k, emb.cos()[None], emb.sin()[None])
    qo, ko = fope(q, k, pos)
    torch.testing.assert_close(qo, qe, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(ko, ke, rtol=1e-6, atol=1e-6)


def test_floor_rule_keeps_frequencies_with_a_full_period():
    for L in (8, 64, 1000, 10**6):
        expected = sum(1 for j in range(R) if 10_000.0 ** (-2 * j / D) > 2 * math.pi / L)
        if expected == 0:
            with pytest.raises(ValueError, match="below the floor"):
                fope_inv_freq(D, 10_000.0, L)
            continue
        assert fope_inv_freq(D, 10_000.0, L).numel() == expected


def test_floored_pairs_do_not_rotate():
    q, k = _qk()
    fope = FourierRotaryEmbedding(
        D, 2, max_position_embeddings=64, fope_init_factor=0.3, generator=torch.Generator().manual_seed(1)
    ).double()
    n = fope.inv_freq.numel()
    assert 0 < n < R  # the default L=64 floors some pairs
    qo, ko = fope(q, k, torch.arange(6) * 11)
    keep = [*range(n, R), *range(n + R, D)]
    torch.testing.assert_close(qo[..., keep], q[..., keep], rtol=0, atol=0)
    torch.testing.assert_close(ko[..., keep], k[..., keep], rtol=0, atol=0)
    assert not torch.allclose(qo[..., :n], q[..., :n])


def _fope_by_hand(x: torch.Tensor, pos: torch.Tensor, w: list[float], C: torch.Tensor, S: torch.Tensor) -> torch.Tensor:
    """The paper's series, as vLLM's fope.py tabulates it: pair j of head h (group h // (H/G)) turns with
    cos_j = sum_i C[g,i,j] cos(w_i t), sin_j = sum_i S[g,i,j] sin(w_i t); pairs j >= n: cos 1, sin 0."""
    _, H, T, _ = x.shape
    G, n = C.shape[0], len(w)
    out = x.clone()
    for h in range(H):
        g = h // (H // G)
        for t in range(T):
            tt = float(pos[t])
            for j in range(n):
                c = sum(float(C[g, i, j]) * math.cos(w[i] * tt) for i in range(n))
                s = sum(float(S[g, i, j]) * math.sin(w[i] * tt) for i in range(n))
                a, b = x[:, h, t, j], x[:, h, t, j + R]
                out[:, h, t, j] = a * c - b * s
                out[:, h, t, j + R] = b * c + a * s
    return out


@pytest.mark.parametrize("sep", [True, False])
def test_matches_the_series_formula(sep):
    q, k = _qk(H=4, G=2)
    pos = torch.tensor([0, 3, 17, 40, 41, 90])
    fope = FourierRotaryEmbedding(
        D,
        2,
        max_position_embeddings=64,
        fope_sep_head=sep,
        fope_init_factor=0.5,
        generator=torch.Generator().manual_seed(2),
    ).double()
    n = fope.inv_freq.numel()
    w = [10_000.0 ** (-2 * j / D) for j in range(n)]
    C, S = fope.cos_coef.detach(), fope.sin_coef.detach()
    if not sep:
        C, S = C[:1].expand(2, -1, -1), S[:1].expand(2, -1, -1)
    qo, ko = fope(q, k, pos)
    torch.testing.assert_close(qo, _fope_by_hand(q, pos, w, C, S), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(ko, _fope_by_hand(k, pos, w, C, S), rtol=1e-5, atol=1e-5)


def test_batched_positions_match_per_row():
    q, k = _qk()
    fope = FourierRotaryEmbedding(
        D, 2, max_position_embeddings=64, fope_init_factor=0.2, generator=torch.Generator().manual_seed(3)
    ).double()
    pos = torch.stack((torch.arange(6), torch.arange(6) * 5 + 9))
    qo, ko = fope(q, k, pos)
    for b in range(2):
        qb, kb = fope(q[b : b + 1], k[b : b + 1], pos[b])
        torch.testing.assert_close(qo[b : b + 1], qb)
        torch.testing.assert_close(ko[b : b + 1], kb)


def _score(fope: FourierRotaryEmbedding, q: torch.Tensor, k: torch.Tensor, m: int, n: int) -> torch.Tensor:
    qo, _ = fope(q, k, torch.tensor([m]))
    _, ko = fope(q, k, torch.tensor([n]))
    return (qo[:, :2] * ko[:, :1]).sum(-1)  # heads 0, 1 use group 0


def test_relative_for_equal_diagonal_coefficients_and_not_in_general():
    g = torch.Generator().manual_seed(4)
    q, k = (
        torch.randn(1, 4, 1, D, generator=g, dtype=torch.float64),
        torch.randn(1, 2, 1, D, generator=g, dtype=torch.float64),
    )
    fope = FourierRotaryEmbedding(D, 2, max_position_embeddings=64).double()
    n = fope.inv_freq.numel()
    diag = torch.diag_embed(torch.rand(2, n, generator=g, dtype=torch.float64) + 0.5)
    fope.load_coefficients(diag, diag)
    torch.testing.assert_close(_score(fope, q, k, 9, 4), _score(fope, q, k, 30, 25), rtol=1e-5, atol=1e-5)
    fope.load_coefficients(diag + 0.3 * torch.randn(2, n, n, generator=g, dtype=torch.float64), diag)
    assert not torch.allclose(_score(fope, q, k, 9, 4), _score(fope, q, k, 30, 25), rtol=1e-3, atol=1e-3)


def test_gradients_reach_the_coefficients():
    q, k = _qk()
    fope = FourierRotaryEmbedding(D, 2, max_position_embeddings=64, fope_init_factor=0.1).double()
    qo, ko = fope(q, k, torch.arange(6))
    (qo.sum() + ko.square().sum()).backward()
    assert fope.cos_coef.grad is not None and fope.cos_coef.grad.abs().sum() > 0
    assert fope.sin_coef.grad is not None and fope.sin_coef.grad.abs().sum() > 0


def test_low_precision_inputs_keep_their_dtype():
    q, k = _qk()
    fope = FourierRotaryEmbedding(D, 2, max_position_embeddings=64)
    qo, ko = fope(q.bfloat16(), k.bfloat16(), torch.arange(6))
    assert qo.dtype == ko.dtype == torch.bfloat16
    torch.testing.assert_close(
        qo.double(), fope(q.float(), k.float(), torch.arange(6))[0].double(), rtol=2e-2, atol=2e-2
    )


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda: FourierRotaryEmbedding(15, 2, 64), "even head_dim"),
        (lambda: FourierRotaryEmbedding(D, 2, 64, num_inv_freq=9), "num_inv_freq"),
        (lambda: FourierRotaryEmbedding(D, 2, 64, num_inv_freq=0), "num_inv_freq"),
        (lambda: FourierRotaryEmbedding(D, 0, 64), "num_key_value_heads"),
        (lambda: FourierRotaryEmbedding(D, 2, 0), "max_position_embeddings"),
        (lambda: FourierRotaryEmbedding(D, 2, 2), "below the floor"),
        (lambda: FourierRotaryEmbedding(D, 2, 64, fope_sep_head=1), "fope_sep_head"),  # type: ignore[arg-type]
        (lambda: FourierRotaryEmbedding(D, 2, 64, fope_init_factor=-1.0), "fope_init_factor"),
        (
            lambda: FourierRotaryEmbedding.from_rope_parameters(
                {"factor": 2.0}, head_dim=D, num_key_value_heads=2, max_position_embeddings=64
            ),
            "unknown FoPE",
        ),
        (
            lambda: FourierRotaryEmbedding.from_rope_parameters(
                {"rope_type": "yarn"}, head_dim=D, num_key_value_heads=2, max_position_embeddings=64
            ),
            "default frequency ladder",
        ),
    ],
)
def test_bad_configuration_raises_clear_errors(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_bad_inputs_raise_clear_errors():
    q, k = _qk()
    fope = FourierRotaryEmbedding(D, 2, max_position_embeddings=64)
    n = fope.inv_freq.numel()
    with pytest.raises(ValueError, match="num_key_value_heads"):
        fope(q, q, torch.arange(6))  # 4 key heads, 2 groups
    with pytest.raises(ValueError, match="integer"):
        fope(q, k, torch.arange(6).float())
    with pytest.raises(ValueError, match="batch"):
        fope(q, k, torch.arange(18).view(3, 6))
    with pytest.raises(ValueError, match="do not match"):
        fope.load_coefficients(torch.zeros(3, n, n), torch.zeros(3, n, n))
    with pytest.raises(ValueError, match="cos_coef must be"):
        fope_cos_sin(fope.inv_freq, torch.zeros(2, n + 1, n), torch.zeros(2, n + 1, n), torch.arange(6), R)
    cos, sin = fope.cos_sin(torch.arange(6))
    with pytest.raises(ValueError, match="do not fit"):
        apply_fope(q[..., :8], cos, sin)
    with pytest.raises(ValueError, match="floating"):
        apply_fope(q.long(), cos, sin)


def test_from_rope_parameters_reads_vllm_keys():
    fope = FourierRotaryEmbedding.from_rope_parameters(
        {"rope_theta": 500.0, "num_inv_freq": 3, "fope_sep_head": False, "fope_init_factor": 0.0},
        head_dim=D,
        num_key_value_heads=2,
        max_position_embeddings=64,
    )
    torch.testing.assert_close(fope.inv_freq, 500.0 ** (-torch.arange(0, 6, 2, dtype=torch.float64) / D))
    assert not fope.fope_sep_head and fope.cos_coef.shape == (2, 3, 3)
