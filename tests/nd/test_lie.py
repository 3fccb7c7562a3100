"""The Lie-algebra family: fast toral form vs matrix_exp, commutation, Cayley, relativity in 2-D and 3-D, LieRE."""

from __future__ import annotations

import pytest
import torch

from ropekit.nd import (
    CommutingLieEmbedding,
    LieREEmbedding,
    MixedRotaryEmbedding,
    apply_dense_lie,
    apply_liere,
    apply_rotary_nd,
    axial_frequencies,
    block_generators,
    cayley,
    liere_rotation,
    mixed_frequencies,
    relativity_defect,
)


def _random_orthogonal(D: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    S = torch.randn(D, D, generator=g, dtype=torch.float64)
    return cayley(S - S.T)


@pytest.mark.parametrize("interleaved", [False, True])
@pytest.mark.parametrize(("n_axes", "D"), [(2, 8), (3, 12), (3, 14)])
def test_fast_form_equals_matrix_exp(n_axes: int, D: int, interleaved: bool) -> None:
    """P B(p) P^T x (two matmuls + cheap rotation) == matrix_exp(sum_k p_k P J_k P^T) x; 14 has a pass-through pair."""
    g = torch.Generator().manual_seed(n_axes * D)
    freqs = axial_frequencies([D // (2 * n_axes)] * n_axes, 100.0)  # [A, r], 2r <= D
    P = _random_orthogonal(D, 1)
    x = torch.randn(2, 5, D, generator=g, dtype=torch.float64)
    pos = torch.randn(5, n_axes, generator=g, dtype=torch.float64) * 7
    fast = apply_rotary_nd(x, freqs, pos, P=P, interleaved=interleaved)
    G = P @ block_generators(freqs, D, interleaved=interleaved) @ P.T  # [A, D, D]
    dense = apply_dense_lie(x, G, pos)
    # angles are narrowed to float32 once (as in the 1-D core): error ~ |x| * 2 ulp(float32 pi)
    torch.testing.assert_close(fast, dense, atol=2e-6, rtol=0)
    dense_by_hand = torch.stack(
        [torch.linalg.matrix_exp((pos[t, :, None, None] * G).sum(0)) @ x[:, t].T for t in range(5)]
    ).permute(2, 0, 1)  # [2, 5, D]
    torch.testing.assert_close(dense, dense_by_hand, atol=1e-12, rtol=0)


def test_generators_commute_and_cayley_is_orthogonal() -> None:
    D = 12
    P = _random_orthogonal(D, 3)
    torch.testing.assert_close(P @ P.T, torch.eye(D, dtype=torch.float64), atol=1e-12, rtol=0)
    G = P @ block_generators(mixed_frequencies(1, [3, 3], generator=torch.Generator().manual_seed(0))[0], D) @ P.T
    torch.testing.assert_close(G[0] @ G[1], G[1] @ G[0], atol=1e-12, rtol=0)
    torch.testing.assert_close(G, -G.transpose(-1, -2), atol=1e-14, rtol=0)
    dense = torch.randn(2, D, D, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    dense = dense - dense.transpose(-1, -2)
    assert (dense[0] @ dense[1] - dense[1] @ dense[0]).abs().max() > 0.1  # LieRE's generators do not commute


def _encoders(n_axes: int, D: int) -> dict[str, object]:
    g = torch.Generator().manual_seed(7)
    freqs = axial_frequencies([D // (2 * n_axes)] * n_axes, 100.0)
    mixed = mixed_frequencies(1, [D // (2 * n_axes)] * n_axes, 10.0, generator=g)[0]
    P = _random_orthogonal(D, 5).float()
    gens = torch.randn(n_axes, D, D, generator=g) * 0.5 / D**0.5
    return {
        "axial": lambda x, p: apply_rotary_nd(x, freqs, p),
        "mixed": lambda x, p: apply_rotary_nd(x, mixed, p),
        "commuting_lie": lambda x, p: apply_rotary_nd(x, freqs, p, P=P, interleaved=True),
        "liere": lambda x, p: apply_liere(x, gens, p),
    }


@pytest.mark.parametrize("n_axes", [2, 3])
def test_commuting_constructions_are_relative_and_liere_is_not(n_axes: int) -> None:
    """<R(p) q, R(p') k> depends only on p' - p for commuting generators; LieRE's deviation is measured."""
    D, T = 12, 9
    g = torch.Generator().manual_seed(n_axes)
    q, k = torch.randn(T, D, generator=g), torch.randn(T, D, generator=g)
    pos = torch.rand(T, n_axes, generator=g) * 20 - 10  # random real positions
    shift = torch.rand(n_axes, generator=g) * 50
    defects = {name: relativity_defect(enc, q, k, pos, shift) for name, enc in _encoders(n_axes, D).items()}
    for name in ("axial", "mixed", "commuting_lie"):
        assert defects[name] < 2e-5, (name, defects)
    # LieRE is not relative: its scores move by a sizeable fraction (docs/nd.md records the measured values).
    assert defects["liere"] > 1e-2, defects


def test_norms_preserved() -> None:
    for enc in _encoders(3, 12).values():
        x = torch.randn(4, 12, dtype=torch.float32)
        p = torch.randn(4, 3) * 5
        torch.testing.assert_close(enc(x, p).norm(dim=-1), x.norm(dim=-1), atol=1e-5, rtol=1e-5)


def test_modules_learn_and_stay_relative() -> None:
    """Gradients reach the learnable parameters; after a perturbation the commuting module is still relative."""
    D, H, T = 8, 2, 6
    pos = torch.rand(T, 2) * 4
    for module in (
        MixedRotaryEmbedding(D, H, generator=torch.Generator().manual_seed(0)),
        CommutingLieEmbedding(D),
        LieREEmbedding(D, generator=torch.Generator().manual_seed(0)),
    ):
        q, k = torch.randn(1, H, T, D), torch.randn(1, H, T, D)
        qr, kr = module(q, k, pos)
        (qr @ kr.transpose(-1, -2)).square().sum().backward()
        grads = [p.grad for p in module.parameters() if p.requires_grad]
        assert grads and all(gr is not None and gr.abs().sum() > 0 for gr in grads), type(module).__name__
    lie = CommutingLieEmbedding(D)
    with torch.no_grad():
        lie.S.normal_()
    P = lie.basis()
    torch.testing.assert_close(P @ P.T, torch.eye(D), atol=1e-5, rtol=0)
    q, k = torch.randn(T, D), torch.randn(T, D)
    enc = lambda x, p: lie(x[None, None], x[None, None], p)[0][0, 0]  # noqa: E731
    assert relativity_defect(enc, q, k, pos, torch.tensor([3.0, -2.0])) < 2e-5
    G = lie.generators()  # P is float32-orthogonal, so the commutator is ~1e-7, not 0
    torch.testing.assert_close(G[0] @ G[1], G[1] @ G[0], atol=1e-5, rtol=0)


def test_liere_rotation_is_orthogonal_and_batched_positions_match() -> None:
    gens = torch.randn(2, 6, 6, dtype=torch.float64)
    R = liere_rotation(gens, torch.randn(3, 2, dtype=torch.float64))  # [3, 6, 6]
    torch.testing.assert_close(R @ R.transpose(-1, -2), torch.eye(6, dtype=torch.float64).expand(3, 6, 6))
    module = LieREEmbedding(8, generator=torch.Generator().manual_seed(0))
    q, k, pos = torch.randn(2, 2, 5, 8), torch.randn(2, 2, 5, 8), torch.rand(2, 5, 2) * 3
    qb, kb = module(q, k, pos)  # per-sample positions [B, T, A]
    for b in range(2):
        qs, ks = module(q[b : b + 1], k[b : b + 1], pos[b])
        torch.testing.assert_close(qb[b : b + 1], qs)
        torch.testing.assert_close(kb[b : b + 1], ks)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_precision_is_one_rounding_of_float32(dtype: torch.dtype) -> None:
    """bf16/fp16 inputs are widened once: the result is the float32 result rounded once (within 1 ulp)."""
    D = 16
    for name, enc in _encoders(2, D).items():
        x = torch.randn(3, 7, D).to(dtype)
        p = torch.rand(7, 2) * 10
        out, ref = enc(x, p), enc(x.float(), p)
        assert out.dtype == dtype, name
        ulp = torch.finfo(dtype).eps * ref.abs().clamp_min(torch.finfo(dtype).tiny)
        assert ((out.float() - ref).abs() <= ulp).all(), name


def test_lie_errors_name_the_problem() -> None:
    x = torch.randn(5, 8)
    with pytest.raises(ValueError, match="head_dim 8"):
        apply_liere(x, torch.zeros(2, 6, 6), torch.zeros(5, 2))
    with pytest.raises(ValueError, match="3 axes but there are 2 generators"):
        apply_liere(x, torch.zeros(2, 8, 8), torch.zeros(5, 3))
    with pytest.raises(ValueError, match="head_dim 12"):
        LieREEmbedding(8)(torch.randn(1, 1, 5, 12), torch.randn(1, 1, 5, 12), torch.zeros(5, 2))
