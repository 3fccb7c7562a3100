"""The ``self_extend`` and ``rerope`` position encodings in the models: identity settings are the RoPE model, the
KV cache decodes as the full forward, remapping changes only what lies beyond the window, bad specs fail clearly."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from ropekit.models import ModelConfig, build_model, with_position_encoding
from ropekit.models.remap_pe import ReRoPEEncoding, SelfExtendEncoding
from ropekit.remap import ReRoPE, SelfExtend

YARN = {"rope_type": "yarn", "factor": 2.0, "original_max_position_embeddings": 16, "rope_theta": 500.0}


def _rope_model(
    task: str = "lm", n_kv_heads: int | None = None, rope_parameters: Any = None, init_std: float = 0.3
) -> torch.nn.Module:
    """Weights large enough (``init_std``) that attention is far from uniform: positions matter to the outputs."""
    torch.manual_seed(0)
    pe = {"kind": "rope", "rope_parameters": rope_parameters} if rope_parameters else "rope"
    cfg = ModelConfig(
        task=task,
        vocab_size=40,
        d_model=32,
        n_heads=4,
        n_kv_heads=n_kv_heads,
        n_layers=2,
        max_len=16,
        pe=pe,
        init_std=init_std,
    )
    return build_model(cfg).eval()


def _with(model: torch.nn.Module, **pe: Any) -> torch.nn.Module:
    params = model.config.pe.get("rope_parameters") if isinstance(model.config.pe, dict) else None
    return with_position_encoding(model, {**pe, "rope_parameters": params}).eval()


@pytest.mark.parametrize("rope_parameters", [None, YARN])
@pytest.mark.parametrize(
    "pe",
    [
        {"kind": "self_extend", "group": 1, "window": 4},
        {"kind": "self_extend", "group": 3, "window": 24},
        {"kind": "rerope", "window": 24},
        {"kind": "rerope", "window": 3, "leaky": 1.0},
        {"kind": "rerope", "window": 24, "log_scale_length": 24},
    ],
)
def test_identity_settings_are_the_rope_model(pe: dict[str, Any], rope_parameters: Any) -> None:
    rope = _rope_model(rope_parameters=rope_parameters)
    ids = torch.randint(0, 40, (2, 24))  # longer than max_len: RoPE extrapolates, so must the identity settings
    torch.testing.assert_close(_with(rope, **pe)(ids), rope(ids), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("pe", [{"kind": "self_extend", "group": 1, "window": 2}, {"kind": "rerope", "window": 12}])
def test_identity_in_the_bidirectional_classifier_with_padding(pe: dict[str, Any]) -> None:
    rope = _rope_model("classify")
    ids, lengths = torch.randint(1, 40, (3, 12)), torch.tensor([12, 7, 3])
    torch.testing.assert_close(_with(rope, **pe)(ids, lengths), rope(ids, lengths), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("n_kv_heads", [None, 2])
@pytest.mark.parametrize(
    "pe",
    [
        {"kind": "self_extend", "group": 3, "window": 4},
        {"kind": "rerope", "window": 4},
        {"kind": "rerope", "window": 4, "leaky": 3.0, "log_scale_length": 8},
    ],
)
def test_kv_cache_decoding_equals_the_full_forward(pe: dict[str, Any], n_kv_heads: int | None) -> None:
    model = _with(_rope_model(n_kv_heads=n_kv_heads), **pe)
    ids = torch.randint(0, 40, (2, 20))
    want = model(ids)
    cache = model.new_cache()
    steps = [model(ids[:, :9], cache=cache)] + [model(ids[:, t : t + 1], cache=cache) for t in range(9, 20)]
    torch.testing.assert_close(torch.cat(steps, dim=1), want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("pe", [{"kind": "self_extend", "group": 2, "window": 6}, {"kind": "rerope", "window": 6}])
def test_remapping_changes_only_what_lies_beyond_the_window(pe: dict[str, Any]) -> None:
    """A causal LM's first ``window`` tokens see only near keys: RoPE's outputs there, different ones later."""
    rope = _rope_model()
    ids = torch.randint(0, 40, (2, 20))
    got, want = _with(rope, **pe)(ids), rope(ids)
    torch.testing.assert_close(got[:, :6], want[:, :6], rtol=1e-5, atol=1e-5)
    assert (got[:, 6:] - want[:, 6:]).abs().amax() > 1e-2 * want.abs().amax()


def test_defaults_follow_max_len_and_build_the_rules() -> None:
    cfg = ModelConfig(task="lm", vocab_size=40, d_model=32, n_heads=4, n_layers=1, max_len=288, pe="self_extend")
    pe = build_model(cfg).decoder.pe
    assert isinstance(pe, SelfExtendEncoding) and pe.remap == SelfExtend(group=8, window=144)
    pe = build_model(ModelConfig(**{**cfg.to_dict(), "pe": {"kind": "rerope", "leaky": 8}})).decoder.pe
    assert isinstance(pe, ReRoPEEncoding) and pe.remap == ReRoPE(window=144, leaky=8)
    assert pe.computes_scores and "ReRoPE(window=144" in repr(pe)


@pytest.mark.parametrize(
    ("pe", "error", "match"),
    [
        ({"kind": "self_extend", "group": 0}, ValueError, "group must be an integer >= 1"),
        ({"kind": "self_extend", "window": -3}, ValueError, "window must be an integer >= 1"),
        ({"kind": "rerope", "leaky": 0.5}, ValueError, "finite number >= 1"),
        ({"kind": "rerope", "group": 2}, ValueError, "unknown option"),
        ({"kind": "rerope", "interleaved": "no"}, ValueError, "interleaved must be True or False"),
        (
            {"kind": "self_extend", "rope_parameters": {"rope_type": "dynamic", "factor": 2.0}},
            ValueError,
            "give a static rope_type",
        ),
    ],
)
def test_bad_specs(pe: dict[str, Any], error: type[Exception], match: str) -> None:
    cfg = ModelConfig(task="lm", vocab_size=40, d_model=32, n_heads=4, n_layers=1, max_len=16, pe=pe)
    with pytest.raises(error, match=match):
        build_model(cfg)
