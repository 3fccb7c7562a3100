"""inv_freq and attention factor equal transformers' own functions (relative error <= 2e-6) for every type."""

import pytest

pytest.importorskip("transformers")

from ropekit.hf.parity import PARITY_CASES, max_relative_difference, transformers_frequencies


def _id(case):
    params, head_dim, max_pos, seq_len = case
    extra = "-".join(f"{k}={v}" for k, v in params.items() if k not in ("short_factor", "long_factor", "rope_type"))
    return f"{params.get('rope_type')}-d{head_dim}-L{max_pos}-n{seq_len}-{extra}"


@pytest.mark.parametrize("case", PARITY_CASES, ids=[_id(c) for c in PARITY_CASES])
def test_matches_transformers(case):
    assert max_relative_difference([case]) <= 2e-6


def test_parity_cases_cover_every_transformers_type():
    from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS

    covered = {case[0]["rope_type"] for case in PARITY_CASES}
    assert set(ROPE_INIT_FUNCTIONS) | {"default"} <= covered


def test_parity_detects_a_difference():
    params = {"rope_type": "linear", "factor": 2.0}
    theirs, _ = transformers_frequencies(params, 64, 4096, None)
    off_by_factor = [({"rope_type": "linear", "factor": 2.0 * (1 + 1e-5)}, 64, 4096, None)]
    assert theirs.numel() == 32
    # ours with a slightly different factor vs theirs for factor 2: must be flagged
    from ropekit import rope_frequencies

    ours, _ = rope_frequencies(off_by_factor[0][0], head_dim=64)
    assert ((ours - theirs).abs() / theirs).max() > 2e-6


def test_ntk_alpha_matches_transformers_hunyuan():
    """Hunyuan's {"type": "dynamic", "alpha": 1000} against transformers' own HunYuan rotary init."""
    import torch
    from transformers.models.hunyuan_v1_dense import modeling_hunyuan_v1_dense as hy

    from ropekit import from_hf_config, rope_frequencies

    config = hy.HunYuanDenseV1Config(
        hidden_size=256, num_attention_heads=2, head_dim=128, max_position_embeddings=4096,
        rope_parameters={"rope_type": "dynamic", "alpha": 1000.0, "factor": 1.0, "rope_theta": 10000.0},
    )
    theirs = hy.HunYuanDenseV1RotaryEmbedding(config).inv_freq
    args = from_hf_config(config)
    ours, af = rope_frequencies(args["rope_parameters"], head_dim=args["head_dim"])
    assert af == 1.0 and ((ours - theirs).abs() / theirs).max() < 2e-6
    assert torch.equal(ours, rope_frequencies({"rope_type": "ntk", "factor": 1000.0}, head_dim=128)[0])
