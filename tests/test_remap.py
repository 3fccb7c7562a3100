"""Position remapping (ropekit.remap): Self-Extend and ReRoPE / Leaky ReRoPE.

The oracle is a float64 RoPE written here (half pairing, ``theta = 10000``) and the authors' rules re-derived with
loops: Jin et al. 2024 (Self-Extend; the datamllab/LongLM patch's grouped positions and neighbour mask), Su 2023
(ReRoPE and Leaky ReRoPE, kexue.fm/archives/9708; bojone/rerope's patches)."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from ropekit import RotaryEmbedding
from ropekit.remap import ReRoPE, SelfExtend, relative_distance, remapped_scores

D, THETA = 8, 10_000.0
INV_FREQ = torch.tensor([THETA ** (-2 * j / D) for j in range(D // 2)], dtype=torch.float32)


def _rot64(x: torch.Tensor, position: float) -> torch.Tensor:
    """Textbook RoPE of one vector ``x: [D]`` at ``position`` (half pairing), float64."""
    x = x.double()
    out = torch.empty_like(x)
    for j in range(D // 2):
        a = position * float(INV_FREQ[j])
        c, s = math.cos(a), math.sin(a)
        out[j] = x[j] * c - x[j + D // 2] * s
        out[j + D // 2] = x[j] * s + x[j + D // 2] * c
    return out


def _logit64(qv: torch.Tensor, kv: torch.Tensor, a: float, b: float) -> float:
    return float(_rot64(qv, a) @ _rot64(kv, b)) / math.sqrt(D)


def _qk(T: int, Tk: int | None = None, B: int = 1, H: int = 2, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(B, H, T, D, generator=g), torch.randn(B, H, Tk or T, D, generator=g)


def _rope_scores(q: torch.Tensor, k: torch.Tensor, qp: torch.Tensor, kp: torch.Tensor, interleaved: bool = False):  # type: ignore[no-untyped-def]
    rot = RotaryEmbedding(D, interleaved=interleaved)
    qr, _ = rot(q, q, qp)
    _, kr = rot(k, k, kp)
    return qr @ kr.transpose(-1, -2) / math.sqrt(D)


# ------------------------------------------------------------------------------------------------ identities
@pytest.mark.parametrize("interleaved", [False, True])
@pytest.mark.parametrize(
    "remap", [SelfExtend(group=1, window=3), SelfExtend(group=4, window=16), ReRoPE(16), ReRoPE(2, leaky=1.0)]
)
def test_identity_settings_give_rope_logits_exactly(remap: SelfExtend | ReRoPE, interleaved: bool) -> None:
    q, k = _qk(16, B=2)
    pos = torch.arange(16)
    got = remapped_scores(q, k, pos, pos, remap, INV_FREQ, interleaved=interleaved)
    assert torch.equal(got, _rope_scores(q, k, pos, pos, interleaved))


def test_identity_distances() -> None:
    pos = torch.arange(12)
    d = relative_distance(pos, pos)
    assert torch.equal(SelfExtend(1, 5).distance(pos, pos), d)
    assert torch.equal(SelfExtend(3, 12).distance(pos, pos), d)
    assert torch.equal(ReRoPE(12).distance(pos, pos), d.double())
    assert torch.equal(ReRoPE(2, leaky=1).distance(pos, pos), d.double())


# ------------------------------------------------------------------------------- the authors' rules, by hand
def test_self_extend_distances_by_hand() -> None:
    """G = 2, W = 3 (shift 3 - 1 = 2), query 9: d < 3 keeps d; else 9 // 2 - j // 2 + 2 = 6 - j // 2."""
    pos = torch.arange(10)
    row = SelfExtend(group=2, window=3).distance(pos, pos)[9].tolist()
    assert row == [6, 6, 5, 5, 4, 4, 3, 2, 1, 0]
    T, G, W = 13, 3, 4
    got = SelfExtend(group=G, window=W).distance(torch.arange(T), torch.arange(T))
    for i in range(T):
        for j in range(T):
            d = i - j
            if abs(d) < W:
                want = d
            elif d > 0:
                want = i // G - j // G + W - W // G
            else:
                want = -(j // G - i // G + W - W // G)
            assert int(got[i, j]) == want, (i, j)


def test_self_extend_paper_figure_example() -> None:
    """Jin et al. 2024, Figure 3: length 10, pretraining window L = 7, neighbour window 4, group 2. Worked by hand:
    shift 4 - 4 // 2 = 2; query 9 sees keys 6..9 at 3..0 and keys 0..5 at 4 - j // 2 + 2; the largest remapped
    distance, 6 (query 9 or 8, key 0 or 1), stays below L."""
    pos = torch.arange(10)
    dist = SelfExtend(group=2, window=4).distance(pos, pos)
    assert dist[9].tolist() == [6, 6, 5, 5, 4, 4, 3, 2, 1, 0]
    assert dist[4].tolist()[:5] == [4, 3, 2, 1, 0]  # d = 4 -> 2 - 0 + 2; d = 3 keeps 3
    assert int(dist.tril().max()) == 6 < 7


def test_rerope_distances_by_hand() -> None:
    pos = torch.arange(9)
    assert ReRoPE(3).distance(pos, pos)[8].tolist() == [3, 3, 3, 3, 3, 3, 2, 1, 0]
    # Leaky, k = 4: 3 + (d - 3) / 4 for d = 8..3
    assert ReRoPE(3, leaky=4).distance(pos, pos)[8].tolist() == [4.25, 4.0, 3.75, 3.5, 3.25, 3.0, 2, 1, 0]
    assert ReRoPE(3).distance(pos, pos)[0].tolist() == [0, -1, -2, -3, -3, -3, -3, -3, -3]


def test_self_extend_logits_equal_the_authors_merge() -> None:
    """The patch's algorithm, re-derived: neighbour logits at positions (i, j), grouped logits at
    (i // G + W - W // G, j // G), the neighbour mask a causal triangle minus the triangle W below the diagonal."""
    T, G, W = 14, 3, 5
    q, k = _qk(T, H=1, seed=3)
    got = remapped_scores(q, k, torch.arange(T), torch.arange(T), SelfExtend(G, W), INV_FREQ)
    neighbour = [[i >= j for j in range(T)] for i in range(T)]
    for i in range(W, T):
        for j in range(T - W):
            if i - W >= j:
                neighbour[i][j] = False
    for i in range(T):
        for j in range(i + 1):  # causal: the patch adds the causal mask to both
            qv, kv = q[0, 0, i], k[0, 0, j]
            a, b = (i, j) if neighbour[i][j] else (i // G + W - W // G, j // G)
            want = _logit64(qv, kv, a, b)
            assert abs(float(got[0, 0, i, j]) - want) < 1e-5, (i, j)


@pytest.mark.parametrize("leaky", [None, 4.0])
def test_rerope_logits_equal_the_authors_merge(leaky: float | None) -> None:
    """ReRoPE: far logits from the query rotated at W and the key unrotated. Leaky: the query at (i + W (k - 1)) and
    the key at j, both under linear scaling 1 / k; near pairs (|d| < W) keep RoPE's logits."""
    T, W = 12, 4
    q, k = _qk(T, H=1, seed=4)
    got = remapped_scores(q, k, torch.arange(T), torch.arange(T), ReRoPE(W, leaky), INV_FREQ)
    for i in range(T):
        for j in range(i + 1):
            qv, kv = q[0, 0, i], k[0, 0, j]
            if abs(i - j) < W:
                want = _logit64(qv, kv, i, j)
            elif leaky is None:
                want = _logit64(qv, kv, W, 0)
            else:
                want = _logit64(qv, kv, (i + W * (leaky - 1)) / leaky, j / leaky)
            assert abs(float(got[0, 0, i, j]) - want) < 1e-5, (i, j)


# --------------------------------------------------------------------------------------------- relativity
@pytest.mark.parametrize("remap", [SelfExtend(2, 3), SelfExtend(4, 6), ReRoPE(3), ReRoPE(3, leaky=2.5)])
def test_logits_are_rope_logits_at_the_remapped_distance(remap: SelfExtend | ReRoPE) -> None:
    """Every pair, both sides of the diagonal: the logit is RoPE's with the query at d' and the key at 0."""
    T = 11
    q, k = _qk(T, H=1, seed=5)
    pos = torch.arange(T) + 5
    got = remapped_scores(q, k, pos, pos, remap, INV_FREQ)
    dist = remap.distance(pos, pos)
    for i in range(T):
        for j in range(T):
            want = _logit64(q[0, 0, i], k[0, 0, j], float(dist[i, j]), 0.0)
            assert abs(float(got[0, 0, i, j]) - want) < 1e-5, (i, j)


def _closed_form(q: torch.Tensor, k: torch.Tensor, dist: torch.Tensor) -> torch.Tensor:
    """RoPE's logit as a function of the distance alone, float64: ``rot(q, a) . rot(k, b) = sum_j (q1 k1 + q2 k2)
    cos((a - b) w_j) + (q1 k2 - q2 k1) sin((a - b) w_j)`` per pair j; ``q: [H, Tq, D]``, ``dist: [Tq, Tk]``."""
    q, k, h = q.double(), k.double(), D // 2
    q1, q2, k1, k2 = q[..., :h], q[..., h:], k[..., :h], k[..., h:]
    a = torch.einsum("hiw,hjw->hijw", q1, k1) + torch.einsum("hiw,hjw->hijw", q2, k2)
    b = torch.einsum("hiw,hjw->hijw", q1, k2) - torch.einsum("hiw,hjw->hijw", q2, k1)
    angle = dist.double()[..., None] * INV_FREQ.double()  # [Tq, Tk, r]
    return (a * angle.cos() + b * angle.sin()).sum(-1) / math.sqrt(D)


@pytest.mark.parametrize(
    "remap", [SelfExtend(4, 5), SelfExtend(3, 70), ReRoPE(5), ReRoPE(70), ReRoPE(9, leaky=3.0), SelfExtend(1, 64)]
)
@pytest.mark.parametrize("causal", [False, True])
def test_blocked_computation_matches_the_closed_form(remap: SelfExtend | ReRoPE, causal: bool) -> None:
    """Long enough (T = 150) for several query blocks; per-row positions; with and without a causal mask."""
    T = 150
    q, k = _qk(T, B=2, seed=10)
    pos = torch.stack([torch.arange(T), torch.arange(T) + 13])
    visible = torch.ones(T, T, dtype=torch.bool).tril()[None, None] if causal else None
    got = remapped_scores(q, k, pos, pos, remap, INV_FREQ, visible=visible)
    for b in range(2):
        want = _closed_form(q[b], k[b], remap.distance(pos[b], pos[b]))
        if causal:
            want = want * torch.ones(T, T).tril()
        torch.testing.assert_close(got[b].double(), want, rtol=1e-5, atol=2e-5)


def test_shift_invariance() -> None:
    """ReRoPE is relative: any common shift. Self-Extend groups absolute positions: shifts by multiples of G."""
    q, k = _qk(10, seed=6)
    pos = torch.arange(10)
    for remap, shift in ((ReRoPE(3), 7), (ReRoPE(3, leaky=2.0), 7), (SelfExtend(3, 4), 9)):
        a = remapped_scores(q, k, pos, pos, remap, INV_FREQ)
        b = remapped_scores(q, k, pos + shift, pos + shift, remap, INV_FREQ)
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


@settings(max_examples=60, deadline=None)
@given(g=st.integers(1, 8), w=st.integers(1, 40), i=st.integers(0, 400), j=st.integers(0, 400), k=st.floats(1.0, 64.0))
def test_distance_properties(g: int, w: int, i: int, j: int, k: float) -> None:
    """Antisymmetric, d inside the window, the sign of d outside it. ReRoPE never farther than d; Self-Extend's
    grouped distance is W + (d - W) / G up to its floors: floor(i/G) - floor(j/G) is within 1 of d / G and
    W - floor(W/G) within [0, 1) of W - W / G, so the difference lies in (-1, 2)."""
    qi, kj = torch.tensor([i]), torch.tensor([j])
    d = i - j
    for remap in (SelfExtend(g, w), ReRoPE(w), ReRoPE(w, leaky=k)):
        dd = float(remap.distance(qi, kj)[0, 0])
        assert dd == -float(remap.distance(kj, qi)[0, 0])
        if abs(d) < w:
            assert dd == d
        else:
            assert math.copysign(1, dd) == math.copysign(1, d)
            if isinstance(remap, ReRoPE):
                assert w <= abs(dd) <= abs(d) + 1e-9
            else:
                assert -1 < abs(dd) - (w + (abs(d) - w) / g) < 2


# ----------------------------------------------------------------------------------- decoding, batches, masks
@pytest.mark.parametrize("remap", [SelfExtend(2, 4), ReRoPE(4), ReRoPE(4, leaky=3.0)])
def test_one_query_at_a_time_equals_the_full_rows(remap: SelfExtend | ReRoPE) -> None:
    T = 12
    q, k = _qk(T, B=2, seed=7)
    pos = torch.arange(T)
    full = remapped_scores(q, k, pos, pos, remap, INV_FREQ)
    for t in range(T):
        row = remapped_scores(q[:, :, t : t + 1], k[:, :, : t + 1], pos[t : t + 1], pos[: t + 1], remap, INV_FREQ)
        torch.testing.assert_close(row[..., 0, :], full[:, :, t, : t + 1], rtol=1e-6, atol=1e-6)


def test_per_row_positions_and_visible() -> None:
    q, k = _qk(9, B=2, seed=8)
    pos = torch.stack([torch.arange(9), torch.arange(9) + 4])  # [B, T]
    remap = SelfExtend(2, 3)
    got = remapped_scores(q, k, pos, pos, remap, INV_FREQ)
    for b in range(2):
        one = remapped_scores(q[b : b + 1], k[b : b + 1], pos[b], pos[b], remap, INV_FREQ)
        torch.testing.assert_close(got[b : b + 1], one)
    causal = torch.ones(9, 9, dtype=torch.bool).tril()[None, None]
    masked = remapped_scores(q, k, pos, pos, remap, INV_FREQ, visible=causal)
    torch.testing.assert_close(masked[..., causal[0, 0]], got[..., causal[0, 0]])


def test_attention_factor_and_scale() -> None:
    q, k = _qk(8, seed=9)
    pos = torch.arange(8)
    base = remapped_scores(q, k, pos, pos, ReRoPE(3), INV_FREQ)
    torch.testing.assert_close(remapped_scores(q, k, pos, pos, ReRoPE(3), INV_FREQ, attention_factor=2.0), 4 * base)
    torch.testing.assert_close(remapped_scores(q, k, pos, pos, ReRoPE(3), INV_FREQ, scale=1.0), base * math.sqrt(D))


def test_log_scale_length() -> None:
    """Off while log(i + 1) <= log(L); beyond, query i's row is multiplied by log(i + 1) / log(L)."""
    q, k = _qk(10, seed=11)
    pos = torch.arange(10)
    base = remapped_scores(q, k, pos, pos, ReRoPE(3), INV_FREQ)
    assert torch.equal(remapped_scores(q, k, pos, pos, ReRoPE(3), INV_FREQ, log_scale_length=10), base)
    got = remapped_scores(q, k, pos, pos, SelfExtend(2, 3), INV_FREQ, log_scale_length=4)
    plain = remapped_scores(q, k, pos, pos, SelfExtend(2, 3), INV_FREQ)
    for i in range(10):
        factor = max(1.0, math.log(i + 1) / math.log(4))
        torch.testing.assert_close(got[..., i, :], plain[..., i, :] * factor, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="log_scale_length must be an integer >= 2"):
        remapped_scores(q, k, pos, pos, ReRoPE(3), INV_FREQ, log_scale_length=1)


# -------------------------------------------------------------------------------------------------- errors
@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda: SelfExtend(0, 4), "group must be an integer >= 1"),
        (lambda: SelfExtend(2.0, 4), "group must be an integer >= 1"),
        (lambda: SelfExtend(True, 4), "group must be an integer >= 1"),
        (lambda: SelfExtend(2, 0), "window must be an integer >= 1"),
        (lambda: ReRoPE(0), "window must be an integer >= 1"),
        (lambda: ReRoPE(4, leaky=0.5), "finite number >= 1"),
        (lambda: ReRoPE(4, leaky=float("inf")), "leaky=None for plain ReRoPE"),
    ],
)
def test_bad_settings(make, match: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ValueError, match=match):
        make()


def test_bad_inputs() -> None:
    q, k = _qk(5)
    pos = torch.arange(5)
    with pytest.raises(TypeError, match="SelfExtend or ReRoPE"):
        remapped_scores(q, k, pos, pos, (2, 4), INV_FREQ)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"\[B, H, Tq, D\]"):
        remapped_scores(q[0], k, pos, pos, ReRoPE(2), INV_FREQ)
    with pytest.raises(ValueError, match="repeat grouped-query"):
        remapped_scores(q, k[:, :1], pos, pos, ReRoPE(2), INV_FREQ)
    with pytest.raises(ValueError, match=r"k_positions must be \[T=5\]"):
        remapped_scores(q, k, pos, pos[:4], ReRoPE(2), INV_FREQ)
    with pytest.raises(ValueError, match="integer tensor"):
        remapped_scores(q, k, pos.float(), pos, ReRoPE(2), INV_FREQ)
