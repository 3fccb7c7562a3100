"""pe kind ``"cope"`` (Golovneva et al. 2024) in the models: KV-cache decoding, the NoPE identity at zero
embeddings, gradients, a hand-written count, bad options, non-causal refusal, checkpoints, position independence."""

from __future__ import annotations

import math
import pathlib

import pytest
import torch

from ropekit.models import ModelConfig, build_model, load_model, save_model
from ropekit.models.cope_pe import CoPE
from ropekit.models.positions import Dims, build_position_encoding


def _cfg(pe: dict, **kw: object) -> ModelConfig:
    base: dict = {"task": "lm", "vocab_size": 40, "d_model": 32, "n_heads": 4, "n_layers": 2, "max_len": 32}
    return ModelConfig(**{**base, **kw, "pe": pe})  # type: ignore[arg-type]


def _cope_model(n_kv_heads: int | None = None, **pe: object) -> torch.nn.Module:
    torch.manual_seed(0)
    return build_model(_cfg({"kind": "cope", "init_std": 0.5, **pe}, n_kv_heads=n_kv_heads)).eval()


@pytest.mark.parametrize("n_kv_heads", [None, 2])
def test_kv_cache_decoding_equals_the_full_forward(n_kv_heads: int | None) -> None:
    model = _cope_model(n_kv_heads)
    ids = torch.randint(0, 40, (2, 13), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        want = model(ids)
        cache = model.new_cache()
        steps = [model(ids[:, :6], cache=cache)] + [model(ids[:, t : t + 1], cache=cache) for t in range(6, 13)]
    torch.testing.assert_close(torch.cat(steps, dim=1), want, rtol=1e-5, atol=1e-5)


def test_zero_position_embeddings_give_nope() -> None:
    torch.manual_seed(0)
    cope = build_model(_cfg({"kind": "cope"})).double().eval()  # the paper's init: zeros
    nope = build_model(_cfg({"kind": "none"})).double().eval()
    state = {k: v for k, v in cope.state_dict().items() if not k.endswith("pe.pos_emb")}
    nope.load_state_dict(state)
    assert torch.equal(cope.decoder.pe.pos_emb, torch.zeros_like(cope.decoder.pe.pos_emb))
    ids = torch.randint(0, 40, (3, 17), generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        # the hook's softmax runs in float32 (models/attention.py), NoPE's in SDPA at float64: equal to ~1e-8
        torch.testing.assert_close(cope(ids), nope(ids), rtol=0, atol=1e-6)
    # the scores themselves: the positional term is exactly 0, so the logits are q.k / sqrt(D) bit for bit
    q, k = torch.randn(2, 4, 5, 8, dtype=torch.float64), torch.randn(2, 4, 7, 8, dtype=torch.float64)
    pe = CoPE(Dims(32, 4, 8, 16))
    vis = torch.ones(1, 1, 5, 7, dtype=torch.bool).tril(2)
    with torch.no_grad():
        got = pe.scores(q, k, torch.zeros(2, 5), torch.zeros(2, 7), vis)
    assert torch.equal(got, q @ k.transpose(-1, -2) * (1.0 / math.sqrt(8)))


def test_gradients_reach_the_gates_and_the_embeddings() -> None:
    torch.manual_seed(3)
    pe = CoPE(Dims(32, 2, 8, 16), init_std=0.5)
    q = torch.randn(1, 2, 6, 8, requires_grad=True)
    k = torch.randn(1, 2, 6, 8, requires_grad=True)
    vis = torch.ones(6, 6, dtype=torch.bool).tril()[None, None]
    scores = pe.scores(q, k, torch.zeros(1, 6), torch.zeros(1, 6), vis)
    positional = scores - q @ k.transpose(-1, -2) / math.sqrt(8)  # depends on k only through the gates
    positional.masked_fill(~vis, 0.0).pow(2).sum().backward()
    assert k.grad is not None and k.grad.abs().sum() > 0  # through the gates (and the fractional weights)
    assert pe.pos_emb.grad is not None and pe.pos_emb.grad.abs().sum() > 0
    model = _cope_model().train()
    model(torch.randint(0, 40, (2, 9))).sum().backward()
    assert model.decoder.pe.pos_emb.grad.abs().sum() > 0


def _loop_scores(
    q: torch.Tensor, k: torch.Tensor, vis: torch.Tensor, emb: torch.Tensor, scale_positions: bool
) -> torch.Tensor:
    """The paper's section 3 written out: ``p_ij = sum_{t=j..i, visible} g_it``, clipped, interpolated."""
    B, H, Tq, D = q.shape
    Tk, P = k.shape[-2], emb.shape[1]
    out = torch.empty(B, H, Tq, Tk, dtype=q.dtype)
    for b in range(B):
        for h in range(H):
            for i in range(Tq):
                for j in range(Tk):
                    p = 0.0
                    for t in range(j, Tk):
                        if vis[b, 0, i, t]:
                            p += float(torch.sigmoid(q[b, h, i] @ k[b, h, t] / math.sqrt(D)))
                    p = min(p, P - 1)
                    lo, hi = math.floor(p), math.ceil(p)
                    e = emb[:, lo] * (1 - (p - lo)) + emb[:, hi] * (p - lo)
                    qk, qe = float(q[b, h, i] @ k[b, h, j]), float(q[b, h, i] @ e)
                    out[b, h, i, j] = (qk + qe) / math.sqrt(D) if scale_positions else qk / math.sqrt(D) + qe
    return out


@pytest.mark.parametrize("scale_positions", [False, True])
@pytest.mark.parametrize("npos_max", [3, 16])
def test_scores_match_a_hand_written_count(scale_positions: bool, npos_max: int) -> None:
    g = torch.Generator().manual_seed(4)
    B, H, Tq, Tk, D = 2, 2, 3, 5, 4  # 2 cached keys, then 3 queries; row 1 has its key 0 padded out
    q = torch.randn(B, H, Tq, D, generator=g, dtype=torch.float64)
    k = torch.randn(B, H, Tk, D, generator=g, dtype=torch.float64)
    vis = (torch.arange(Tk) <= (2 + torch.arange(Tq))[:, None]).expand(B, 1, Tq, Tk).clone()
    vis[1, :, :, 0] = False
    pe = CoPE(Dims(D * H, H, D, 8), npos_max=npos_max, scale_positions=scale_positions).double()
    with torch.no_grad():
        pe.pos_emb.normal_(generator=g)
        got = pe.scores(q, k, torch.zeros(B, Tq), torch.zeros(B, Tk), vis)
    want = _loop_scores(q, k, vis, pe.pos_emb.detach(), scale_positions)
    torch.testing.assert_close(got.masked_fill(~vis, 0.0), want.masked_fill(~vis, 0.0))


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"npos_max": 1}, "npos_max must be an int >= 2"),
        ({"npos_max": 4.0}, "npos_max must be an int >= 2"),
        ({"npos_max": True}, "npos_max must be an int >= 2"),
        ({"scale_positions": "no"}, "scale_positions must be True or False"),
        ({"init_std": -0.1}, "init_std must be >= 0"),
        ({"init_std": float("nan")}, "init_std must be a finite number"),
        ({"sep_key": True}, "unknown option"),
    ],
)
def test_bad_options_raise(options: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        build_position_encoding({"kind": "cope", **options}, Dims(32, 4, 8, 16))


def test_non_causal_attention_is_refused() -> None:
    model = build_model(_cfg({"kind": "cope"}, task="classify", n_classes=2))
    with pytest.raises(ValueError, match="needs causal self-attention"):
        model(torch.randint(1, 40, (2, 6)), torch.tensor([6, 4]))


def test_checkpoint_round_trip(tmp_path: pathlib.Path) -> None:
    model = _cope_model(npos_max=9, scale_positions=True)
    save_model(model, tmp_path / "m")
    loaded = load_model(tmp_path / "m")
    assert isinstance(loaded.decoder.pe, CoPE) and loaded.decoder.pe.npos_max == 9
    assert loaded.decoder.pe.scale_positions is True
    assert torch.equal(loaded.decoder.pe.pos_emb, model.decoder.pe.pos_emb)
    ids = torch.randint(0, 40, (2, 11))
    with torch.no_grad():
        torch.testing.assert_close(loaded(ids), model(ids), rtol=0, atol=0)


def test_explicit_positions_change_nothing() -> None:
    """CoPE's positions are counts of gated keys: an offset or random position tensor is ignored."""
    model = _cope_model()
    ids = torch.randint(0, 40, (2, 10))
    with torch.no_grad():
        want = model(ids)
        torch.testing.assert_close(model(ids, torch.arange(7, 17)), want, rtol=0, atol=0)
        torch.testing.assert_close(model(ids, torch.randperm(30)[:10].sort().values), want, rtol=0, atol=0)


def test_nonzero_embeddings_change_the_model() -> None:
    """The other side of the NoPE identity: trained-like embeddings do move the output (the test can fail)."""
    model = _cope_model()
    ids = torch.randint(0, 40, (2, 10))
    with torch.no_grad():
        a = model(ids)
        model.decoder.pe.pos_emb.zero_()
        assert (model(ids) - a).abs().max() > 1e-3
