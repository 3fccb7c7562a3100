"""The ``computes_scores`` hook: an encoding that computes ``rotate(q) . rotate(k)`` itself equals the rotary path
(full sequence, KV-cache decoding, padding masks, grouped-query heads, ``logits``)."""

from __future__ import annotations

import math

import pytest
import torch

from ropekit.models import ModelConfig, PositionEncoding, build_model
from ropekit.models.positions import RoPE


class ScoresRoPE(PositionEncoding):
    """RoPE through the hook: rotates q and k at the given positions inside :meth:`scores`."""

    kind = "scores-rope"
    computes_scores = True

    def __init__(self, rope: RoPE) -> None:
        super().__init__()
        self.rope = rope
        self.calls = 0

    def scores(self, q, k, q_positions, k_positions, visible):  # type: ignore[no-untyped-def]
        self.calls += 1
        qr = self.rope.rotary(q, q, q_positions)[0]
        kr = self.rope.rotary(k, k, k_positions)[1]
        return qr @ kr.transpose(-1, -2) / math.sqrt(q.shape[-1])


def _pair(task: str, n_kv_heads: int | None = None) -> tuple[torch.nn.Module, torch.nn.Module]:
    torch.manual_seed(0)
    cfg = ModelConfig(task=task, vocab_size=50, d_model=32, n_heads=4, n_kv_heads=n_kv_heads, n_layers=2, max_len=64)
    plain = build_model(cfg).eval()
    hooked = build_model(cfg).eval()
    hooked.load_state_dict(plain.state_dict())
    stack_p, stack_h = _stack(plain), _stack(hooked)
    stack_h.pe = ScoresRoPE(stack_p.pe)
    return plain, hooked


def _stack(model: torch.nn.Module) -> torch.nn.Module:
    return model.decoder if hasattr(model, "decoder") else model.encoder


@pytest.mark.parametrize("n_kv_heads", [None, 2])
def test_scores_hook_equals_rotary_path_and_kv_cache(n_kv_heads: int | None) -> None:
    plain, hooked = _pair("lm", n_kv_heads)
    ids = torch.randint(0, 50, (2, 12))
    want = plain(ids)
    torch.testing.assert_close(hooked(ids), want, rtol=1e-5, atol=1e-5)
    assert _stack(hooked).pe.calls > 0
    cache = hooked.new_cache()
    steps = [hooked(ids[:, :7], cache=cache)] + [hooked(ids[:, t : t + 1], cache=cache) for t in range(7, 12)]
    torch.testing.assert_close(torch.cat(steps, dim=1), want, rtol=1e-5, atol=1e-5)


def test_scores_hook_with_padding_and_logits() -> None:
    plain, hooked = _pair("classify")
    ids = torch.randint(1, 50, (3, 10))
    lengths = torch.tensor([10, 6, 3])
    torch.testing.assert_close(hooked(ids, lengths), plain(ids, lengths), rtol=1e-5, atol=1e-5)
    block = _stack(plain).blocks[0]
    x = torch.randn(2, 9, 32)
    torch.testing.assert_close(
        block.attn.logits(x, _stack(hooked).pe, 0), block.attn.logits(x, _stack(plain).pe, 0), rtol=1e-5, atol=1e-5
    )


def test_base_encoding_refuses_scores() -> None:
    with pytest.raises(NotImplementedError, match="does not compute its own scores"):
        PositionEncoding().scores(*(torch.zeros(1, 1, 1, 2),) * 2, torch.zeros(1, 1), torch.zeros(1, 1), torch.ones(1))
