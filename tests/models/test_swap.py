"""with_position_encoding: the public way to evaluate trained weights under another position encoding."""

from __future__ import annotations

import pytest
import torch

from ropekit.models import CheckpointError, ModelConfig, build_model, with_position_encoding


def _model(pe: dict) -> torch.nn.Module:
    torch.manual_seed(0)
    return build_model(
        ModelConfig(task="lm", vocab_size=32, d_model=16, n_heads=2, n_layers=1, max_len=16, pe=pe)
    ).eval()


def test_same_spec_gives_the_same_outputs_and_copies_weights() -> None:
    model = _model({"kind": "rope"})
    swapped = with_position_encoding(model, {"kind": "rope"})
    ids = torch.randint(0, 32, (2, 24))
    torch.testing.assert_close(swapped(ids), model(ids), rtol=0, atol=0)
    next(swapped.parameters()).data.add_(1.0)
    assert not torch.equal(next(swapped.parameters()), next(model.parameters()))
    assert not swapped.training


def test_dynamic_ntk_at_factor_one_changes_nothing_inside_the_training_length_only() -> None:
    """Dynamic NTK configured with factor 1 (a model trained without scaling) scales by the length alone."""
    model = _model({"kind": "rope", "max_position_embeddings": 16})
    with torch.no_grad():  # sharpen attention so that positions visibly matter (init std 0.02 keeps it ~uniform)
        for name, p in model.named_parameters():
            if name.endswith(("q_proj.weight", "k_proj.weight")):
                p.mul_(50.0)
    dyn = with_position_encoding(
        model,
        {"kind": "rope", "max_position_embeddings": 16, "rope_parameters": {"rope_type": "dynamic", "factor": 1.0}},
    )
    short, long = torch.randint(0, 32, (2, 16)), torch.randint(0, 32, (2, 64))
    torch.testing.assert_close(dyn(short), model(short), rtol=0, atol=0)
    assert (dyn(long) - model(long)).abs().max() > 1e-3


def test_weights_that_do_not_fit_raise() -> None:
    with pytest.raises(CheckpointError, match="unexpected"):
        with_position_encoding(_model({"kind": "learned"}), {"kind": "rope"})
    with pytest.raises(ValueError, match="config"):
        with_position_encoding(torch.nn.Linear(2, 2), {"kind": "rope"})


def test_attention_logits_match_the_attention_output() -> None:
    """softmax(logits) @ v reproduces the layer's output (no mask: an encoder layer), for rotary and bias kinds."""
    for pe in ({"kind": "rope"}, {"kind": "alibi"}, {"kind": "none"}):
        torch.manual_seed(0)
        model = build_model(
            ModelConfig(task="classify", vocab_size=32, d_model=16, n_heads=2, n_layers=1, pe=pe)
        ).eval()
        attn, enc = model.encoder.blocks[0].attn, model.encoder.pe
        x = torch.randn(2, 10, 16)
        probs = attn.logits(x, enc, 0).softmax(-1)  # [B, H, T, T]
        v = attn._heads(attn.v_proj(x), attn.n_kv_heads)
        expected = attn.o_proj((probs @ v).transpose(1, 2).reshape(2, 10, -1))
        with torch.no_grad():
            torch.testing.assert_close(expected, attn(x, enc, 0), atol=1e-5, rtol=1e-5)
