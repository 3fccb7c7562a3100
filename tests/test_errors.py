"""Bad input gets a clear error naming what was wrong (and, for a misspelt key, the nearest valid one)."""

import pytest
import torch

import ropekit as rk

X = torch.randn(2, 4, 8, 16)
COS, SIN = rk.rope_cos_sin(rk.rope_frequencies(None, head_dim=16)[0], torch.arange(8))
YARN = {"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 2048}


def freqs(params, **kw):
    return lambda: rk.rope_frequencies(params, **{"head_dim": 64, **kw})


BAD_INPUTS = [
    # (id, callable, exception type, regex the message must match)
    ("misspelt key", freqs({"rope_type": "yarn", "factr": 4.0}), ValueError, r"'factr'.*did you mean 'factor'"),
    ("misspelt attn factor", freqs({**YARN, "attn_factor": 1.2}), ValueError, r"did you mean 'attention_factor'"),
    ("unknown type", freqs({"rope_type": "yarm"}), ValueError, r"unknown rope_type 'yarm'.*did you mean 'yarn'"),
    (
        "key of another type",
        freqs({"rope_type": "linear", "factor": 2.0, "beta_fast": 32}),
        ValueError,
        r"'beta_fast' is not used by rope_type 'linear'",
    ),
    ("missing factor", freqs({"rope_type": "linear"}), ValueError, r"missing required parameter.*factor"),
    (
        "M-RoPE section in 1-D",
        freqs({"rope_type": "default", "mrope_section": [16, 24, 24]}),
        ValueError,
        r"M-RoPE.*ropekit\.nd\.MRotaryEmbedding",
    ),
    ("v4 mrope type in 1-D", freqs({"type": "mrope"}), ValueError, r"M-RoPE.*ropekit\.nd\.MRotaryEmbedding"),
    ("factor < 1", freqs({"rope_type": "linear", "factor": 0.5}), ValueError, r"'factor'.*>= 1"),
    ("factor nan", freqs({"rope_type": "ntk", "factor": float("nan")}), ValueError, r"'factor'.*finite"),
    ("factor string", freqs({"rope_type": "linear", "factor": "2"}), ValueError, r"'factor'.*number"),
    (
        "beta_fast < beta_slow",
        freqs({**YARN, "beta_fast": 1.0, "beta_slow": 32.0}),
        ValueError,
        r"beta_fast.*>= beta_slow",
    ),
    ("beta zero", freqs({**YARN, "beta_slow": 0}), ValueError, r"'beta_slow'.*positive"),
    (
        "longrope wrong length",
        freqs(
            {
                "rope_type": "longrope",
                "short_factor": [1.0] * 3,
                "long_factor": [1.0] * 32,
                "original_max_position_embeddings": 4096,
                "factor": 2.0,
            }
        ),
        ValueError,
        r"'short_factor'.*32 entries, got 3",
    ),
    (
        "longrope not a list",
        freqs({"rope_type": "longrope", "short_factor": 1.0, "long_factor": [1.0] * 32}),
        ValueError,
        r"'short_factor'.*list of numbers",
    ),
    (
        "llama3 high <= low",
        freqs(
            {
                "rope_type": "llama3",
                "factor": 8.0,
                "low_freq_factor": 4.0,
                "high_freq_factor": 1.0,
                "original_max_position_embeddings": 8192,
            }
        ),
        ValueError,
        r"high_freq_factor.*>",
    ),
    ("odd rotary dim", lambda: rk.rope_frequencies(None, head_dim=63), ValueError, r"even"),
    ("odd partial dim", freqs({"partial_rotary_factor": 0.3}, head_dim=10), ValueError, r"even.*partial_rotary_factor"),
    ("partial > 1", freqs({"partial_rotary_factor": 1.5}), ValueError, r"partial_rotary_factor.*\(0, 1\]"),
    ("theta <= 1", freqs({"rope_theta": 0.5}), ValueError, r"rope_theta"),
    ("dynamic without length", freqs({"rope_type": "dynamic", "factor": 2.0}), ValueError, r"max_position_embeddings"),
    (
        "yarn without lengths",
        freqs({"rope_type": "yarn", "factor": 2.0}),
        ValueError,
        r"original_max_position_embeddings",
    ),
    ("type and rope_type disagree", freqs({"type": "linear", "rope_type": "yarn"}), ValueError, r"keep one"),
    ("params not a mapping", freqs([("rope_type", "linear")]), ValueError, r"mapping"),
    ("negative seq_len", freqs(None, seq_len=-1), ValueError, r"seq_len must be a positive integer"),
    ("float16 positions", lambda: rk.rope_cos_sin(COS[0], torch.arange(4.0).half()), ValueError, r"float32/float64"),
    ("NaN positions", lambda: rk.rope_cos_sin(COS[0], torch.tensor([0.0, float("nan")])), ValueError, r"finite"),
    ("2-D inv_freq", lambda: rk.rope_cos_sin(COS, torch.arange(4)), ValueError, r"1-D"),
    (
        "HF duplicated tables",
        lambda: rk.apply_rotary(X, torch.cat((COS, COS), -1), torch.cat((SIN, SIN), -1)),
        ValueError,
        r"one column per pair.*cos\[\.\.\., :8\]",
    ),
    ("cos/sin shape mismatch", lambda: rk.apply_rotary(X, COS, SIN[:, :4]), ValueError, r"same shape"),
    ("wrong T", lambda: rk.apply_rotary(X, COS[:5], SIN[:5]), ValueError, r"do not broadcast.*T = 8"),
    ("BTHD layout", lambda: rk.apply_rotary(X.transpose(1, 2), COS, SIN), ValueError, r"cos\[:, None, :\]"),
    ("integer x", lambda: rk.apply_rotary(torch.ones(8, 16, dtype=torch.int64), COS, SIN), ValueError, r"floating"),
    ("1-D x", lambda: rk.apply_rotary(torch.ones(16), COS, SIN), ValueError, r"at least 2 dims"),
    (
        "q/k head dims differ",
        lambda: rk.apply_rotary_qk(X, torch.randn(2, 1, 8, 32), COS, SIN),
        ValueError,
        r"same head_dim",
    ),
    (
        "inplace on grad",
        lambda: rk.apply_rotary_qk(X.clone().requires_grad_(), X.clone(), COS, SIN, inplace=True),
        ValueError,
        r"requires grad",
    ),
    ("layout rows", lambda: rk.convert_qk_layout(torch.ones(30, 4), 2, 16, to="half"), ValueError, r"2 \* 16 = 32"),
    (
        "layout target",
        lambda: rk.convert_qk_layout(torch.ones(32, 4), 2, 16, to="neox"),
        ValueError,
        r"'half' or 'interleaved'",
    ),
    (
        "module head_dim",
        lambda: rk.RotaryEmbedding(16)(torch.randn(1, 2, 3, 8), torch.randn(1, 2, 3, 8)),
        ValueError,
        r"head_dim=16",
    ),
    ("module float positions", lambda: rk.RotaryEmbedding(16)(X, X, torch.arange(8.0)), ValueError, r"integer"),
    ("module negative offset", lambda: rk.RotaryEmbedding(16)(X, X, -3), ValueError, r">= 0"),
    ("hf config without dims", lambda: rk.from_hf_config({"rope_theta": 1e4}), ValueError, r"head_dim"),
    (
        "hf config bad key",
        lambda: rk.from_hf_config({"head_dim": 64, "rope_scaling": {"type": "linear", "factr": 2}}),
        ValueError,
        r"did you mean 'factor'",
    ),
    (
        "nested without layer_type",
        lambda: rk.from_hf_config(
            {
                "head_dim": 64,
                "rope_parameters": {
                    "full_attention": {"rope_type": "default"},
                    "sliding_attention": {"rope_type": "default"},
                },
            }
        ),
        ValueError,
        r"layer_type",
    ),
    ("sinusoidal odd dim", lambda: rk.SinusoidalPositionalEncoding(7), ValueError, r"even"),
]


@pytest.mark.parametrize(("make", "exc", "pattern"), [b[1:] for b in BAD_INPUTS], ids=[b[0] for b in BAD_INPUTS])
def test_bad_input_gives_clear_error(make, exc, pattern):
    with pytest.raises(exc, match=pattern):
        make()


def test_table_is_big_enough():
    assert len(BAD_INPUTS) >= 20


def test_config_file_errors(tmp_path):
    with pytest.raises(ValueError, match="does not exist"):
        rk.load_config_file(tmp_path / "missing.json")
    bad = tmp_path / "bad.json"
    bad.write_text('{"rope_theta": 1e4,')  # truncated
    with pytest.raises(ValueError, match="not valid JSON"):
        rk.load_config_file(bad)
    bad.write_text("[1, 2]")
    with pytest.raises(ValueError, match="JSON object"):
        rk.load_config_file(bad)
