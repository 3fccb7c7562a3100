"""ModelConfig.init_std: the initial weight scale (default 0.02, GPT-2's), recorded in the config."""

from __future__ import annotations

import torch

from ropekit.models import ModelConfig, build_model


def test_init_std_scales_the_initial_weights_and_defaults_to_gpt2() -> None:
    torch.manual_seed(0)
    small = build_model(ModelConfig(d_model=64, n_layers=2))
    torch.manual_seed(0)
    big = build_model(ModelConfig(d_model=64, n_layers=2, init_std=0.08))
    q_small = small.decoder.blocks[0].attn.q_proj.weight.std().item()
    q_big = big.decoder.blocks[0].attn.q_proj.weight.std().item()
    assert abs(q_small - 0.02) < 0.002 and abs(q_big - 0.08) < 0.008
    o = big.decoder.blocks[0].attn.o_proj.weight.std().item()
    assert abs(o - 0.08 / 2.0) < 0.004  # residual outputs: init_std / sqrt(2 n_layers)


def test_configs_without_init_std_still_load() -> None:
    data = ModelConfig().to_dict()
    assert data["init_std"] == 0.02
    del data["init_std"]  # a config written before the field existed
    assert ModelConfig.from_dict(data).init_std == 0.02
