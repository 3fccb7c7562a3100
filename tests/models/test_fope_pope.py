"""FoPE and PoPE as ``ropekit.models`` position encodings; PoPE's core (:mod:`ropekit.pope`) against its formula."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from ropekit.models import ModelConfig, build_model, build_position_encoding
from ropekit.models.positions import Dims
from ropekit.pope import PolarEmbedding, apply_pope, pope_frequencies

V = 40


def tiny(pe: dict, task: str = "lm", **kw) -> torch.nn.Module:
    torch.manual_seed(0)
    cfg = ModelConfig(task=task, vocab_size=V, d_model=32, n_heads=4, n_layers=2, max_len=32, pe=pe, **kw)
    return build_model(cfg).eval()


IDS = torch.randint(0, V, (2, 8), generator=torch.Generator().manual_seed(3))


# ----------------------------------------------------------------------------------------------------- FoPE


def test_fope_model_at_identity_equals_the_rope_model():
    rope = tiny({"kind": "rope"})
    fope = tiny({"kind": "fope", "fope_init_factor": 0.0, "num_inv_freq": 4})  # head_dim 8: every pair kept
    missing, unexpected = fope.load_state_dict(rope.state_dict(), strict=False)
    assert not unexpected and all("cos_coef" in m or "sin_coef" in m for m in missing)
    torch.testing.assert_close(fope(IDS), rope(IDS), rtol=1e-5, atol=1e-5)
    moved = tiny({"kind": "fope", "fope_init_factor": 0.3, "num_inv_freq": 4})
    moved.load_state_dict(rope.state_dict(), strict=False)
    assert not torch.allclose(moved(IDS), rope(IDS), atol=1e-3)  # the coefficients matter


def test_fope_coefficients_train_with_the_model():
    model = tiny({"kind": "fope"}).train()
    logits = model(IDS)
    F.cross_entropy(logits[:, :-1].reshape(-1, V), IDS[:, 1:].reshape(-1)).backward()
    grads = [p.grad for n, p in model.named_parameters() if n.endswith(("cos_coef", "sin_coef"))]
    assert grads and all(g is not None and g.abs().sum() > 0 for g in grads)


def test_fope_grouped_query_model_needs_its_key_value_heads():
    with pytest.raises(ValueError, match="num_key_value_heads"):
        tiny({"kind": "fope"}, n_kv_heads=2)(IDS)
    model = tiny({"kind": "fope", "num_key_value_heads": 2}, n_kv_heads=2)
    assert model(IDS).shape == (2, 8, V)


def test_fope_spec_errors_are_clear():
    with pytest.raises(ValueError, match="rope_theta"):
        build_position_encoding({"kind": "fope", "rope_theta": 0}, Dims(32, 4, 8, 32))
    with pytest.raises(ValueError, match="unknown option"):
        build_position_encoding({"kind": "fope", "factor": 2.0}, Dims(32, 4, 8, 32))
    with pytest.raises(ValueError, match="below the floor"):
        build_position_encoding({"kind": "fope", "max_position_embeddings": 2}, Dims(32, 4, 8, 32))


# ----------------------------------------------------------------------------------------------------- PoPE


def _pope_scores_by_hand(
    q: torch.Tensor, k: torch.Tensor, qpos: torch.Tensor, kpos: torch.Tensor, delta: torch.Tensor, base: float
) -> torch.Tensor:
    """Gopalakrishnan et al. 2025 (and PoPE-pytorch's pope.py) as a complex product: q~ = softplus(q) e^{i t theta_c},
    k~ = softplus(k) e^{i (s theta_c + delta_c)}, a_ts = Re sum_c q~_tc conj(k~_sc); theta_c = base^(-c/D)."""
    D = q.shape[-1]
    theta = torch.tensor([base ** (-c / D) for c in range(D)], dtype=torch.float64)
    d = delta.clamp(-2 * math.pi, 0.0).double()[:, None, :]  # [H, 1, D]
    qc = torch.polar(F.softplus(q.double()), qpos.double()[:, None] * theta)  # [B, H, T, D]
    kc = torch.polar(F.softplus(k.double()), kpos.double()[:, None] * theta + d)
    return torch.einsum("bhtc,bhsc->bhts", qc, kc.conj()).real  # [B, H, T, S]


@pytest.mark.parametrize("base", [10_000.0, 50.0])
def test_pope_features_give_the_complex_score(base):
    g = torch.Generator().manual_seed(0)
    q, k = (
        torch.randn(2, 3, 5, 6, generator=g, dtype=torch.float64),
        torch.randn(2, 3, 7, 6, generator=g, dtype=torch.float64),
    )
    qpos, kpos = torch.tensor([3, 9, 10, 40, 41]), torch.tensor([0, 1, 2, 3, 9, 40, 100])
    delta = torch.rand(3, 6, generator=g, dtype=torch.float64) * 8 - 7  # partly outside [-2 pi, 0]: clamped
    qp, kp = apply_pope(q, k, pope_frequencies(6, base), qpos, delta, k_positions=kpos)
    assert qp.shape == (2, 3, 5, 12) and kp.shape == (2, 3, 7, 12)
    torch.testing.assert_close(  # float32 phase tables
        qp @ kp.transpose(-1, -2), _pope_scores_by_hand(q, k, qpos, kpos, delta, base), rtol=1e-5, atol=1e-5
    )


def test_pope_score_is_relative_and_content_only_at_zero_distance():
    g = torch.Generator().manual_seed(1)
    q, k = torch.randn(1, 2, 1, 8, generator=g), torch.randn(1, 2, 1, 8, generator=g)
    pope = PolarEmbedding(8, 2, bias_uniform_init=True, generator=g)

    def score(m: int, n: int) -> torch.Tensor:
        qp, _ = pope(q, k, torch.tensor([m]))
        _, kp = pope(q, k, torch.tensor([n]))
        return (qp * kp).sum(-1)

    torch.testing.assert_close(score(9, 4), score(1009, 1004), rtol=1e-4, atol=1e-4)
    assert not torch.allclose(score(9, 4), score(9, 5), atol=1e-3)
    zero = PolarEmbedding(8, 2)  # delta = 0
    qp, kp = zero(q, k, torch.tensor([17]))
    torch.testing.assert_close((qp * kp).sum(-1), (F.softplus(q) * F.softplus(k)).sum(-1))


def test_pope_grouped_keys_use_the_query_heads_offsets():
    g = torch.Generator().manual_seed(2)
    q, k = (
        torch.randn(1, 4, 3, 8, generator=g, dtype=torch.float64),
        torch.randn(1, 2, 3, 8, generator=g, dtype=torch.float64),
    )
    delta = -torch.rand(4, 8, generator=g, dtype=torch.float64) * 2 * math.pi
    pos = torch.arange(3) + 5
    qp, kp = apply_pope(q, k, pope_frequencies(8), pos, delta)
    k_rep = k.repeat_interleave(2, dim=1)
    torch.testing.assert_close(
        qp @ kp.repeat_interleave(2, dim=1).transpose(-1, -2), _pope_scores_by_hand(q, k_rep, pos, pos, delta, 1e4)
    )


def test_pope_model_is_shift_invariant_and_trains_its_offsets():
    model = tiny({"kind": "pope", "bias_uniform_init": True})
    torch.testing.assert_close(model(IDS, torch.arange(8) + 7), model(IDS), rtol=1e-4, atol=1e-4)
    model.train()
    logits = model(IDS)
    F.cross_entropy(logits[:, :-1].reshape(-1, V), IDS[:, 1:].reshape(-1)).backward()
    grads = [p.grad for n, p in model.named_parameters() if n.endswith("phase_bias")]
    assert grads and all(g is not None and g.abs().sum() > 0 for g in grads)


def test_pope_attention_uses_the_papers_scale():
    """The model's scores are a_ts / sqrt(D) (D = head_dim), although q, k carry 2D features."""
    pe = build_position_encoding({"kind": "pope", "bias_uniform_init": True}, Dims(32, 4, 8, 32))
    g = torch.Generator().manual_seed(5)
    q, k = torch.randn(1, 4, 6, 8, generator=g), torch.randn(1, 4, 6, 8, generator=g)
    qp, kp = pe.rotate(q, k, 0)
    scaled = qp @ kp.transpose(-1, -2) / math.sqrt(qp.shape[-1])  # what scaled_dot_product_attention forms
    expected = _pope_scores_by_hand(q, k, torch.arange(6), torch.arange(6), pe.polar.phase_bias.detach(), 1e4)
    torch.testing.assert_close(scaled.double(), expected / math.sqrt(8), rtol=1e-5, atol=1e-5)


def test_pope_errors_are_clear():
    with pytest.raises(ValueError, match="base"):
        build_position_encoding({"kind": "pope", "base": 1.0}, Dims(32, 4, 8, 32))
    with pytest.raises(ValueError, match="bias_uniform_init"):
        build_position_encoding({"kind": "pope", "bias_uniform_init": "yes"}, Dims(32, 4, 8, 32))
    q = torch.randn(1, 2, 3, 8)
    with pytest.raises(ValueError, match="share D"):
        apply_pope(q, q[..., :6], pope_frequencies(8), torch.arange(3))
    with pytest.raises(ValueError, match="phase_bias"):
        apply_pope(q, q, pope_frequencies(8), torch.arange(3), torch.zeros(3, 8))
    with pytest.raises(ValueError, match="integer"):
        apply_pope(q, q, pope_frequencies(8), torch.arange(3).float())
    with pytest.raises(ValueError, match="floating"):
        apply_pope(q.long(), q, pope_frequencies(8), torch.arange(3))
