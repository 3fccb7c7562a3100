"""Scaling identities (docs/conventions.md), formulas of each type, and the registry's contract."""

import dataclasses
import math

import pytest
import torch

from ropekit import ROPE_TYPES, parse_rope_parameters, rope_cos_sin, rope_frequencies
from ropekit.scaling import depends_on_length

D, L = 128, 4096
DEFAULT, _ = rope_frequencies(None, head_dim=D)
LONGROPE_ONES = {"short_factor": [1.0] * (D // 2), "long_factor": [1.0] * (D // 2)}

FACTOR_ONE = {
    "linear": {"factor": 1.0},
    "ntk": {"factor": 1.0},
    "dynamic": {"factor": 1.0},
    "yarn": {"factor": 1.0, "original_max_position_embeddings": L},
    "llama3": {"factor": 1.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0, "original_max_position_embeddings": L},
    "longrope": {**LONGROPE_ONES, "original_max_position_embeddings": L, "factor": 1.0},
    "proportional": {"factor": 1.0},
}


def test_every_registered_type_has_a_factor_one_case():
    assert set(FACTOR_ONE) | {"default"} == set(ROPE_TYPES)


# Dynamic NTK with factor 1 still grows its base past L: that case is test_dynamic_factor_one_above_L.
@pytest.mark.parametrize(
    ("rope_type", "seq_len"),
    [(t, n) for t in sorted(FACTOR_ONE) for n in (None, 100, 10 * L) if not (t == "dynamic" and n == 10 * L)],
)
def test_factor_one_equals_default(rope_type, seq_len):
    inv, af = rope_frequencies(
        {"rope_type": rope_type, **FACTOR_ONE[rope_type]}, head_dim=D, max_position_embeddings=L, seq_len=seq_len
    )
    torch.testing.assert_close(inv, DEFAULT, rtol=2e-7, atol=0)
    assert af == 1.0


@pytest.mark.parametrize("seq_len", [None, 1, L - 1, L])
def test_dynamic_below_original_length_is_default(seq_len):
    inv, _ = rope_frequencies(
        {"rope_type": "dynamic", "factor": 8.0}, head_dim=D, max_position_embeddings=L, seq_len=seq_len
    )
    torch.testing.assert_close(inv, DEFAULT, rtol=0, atol=0)


def test_dynamic_factor_one_above_L():
    """One might expect every variant with factor 1 to equal default; transformers' dynamic formula
    base * (factor * l / L - (factor - 1)) ** (d / (d - 2)) gives base * (l / L) ** (d / (d - 2)) for factor 1,
    so that identity holds for dynamic only up to L (the primary source wins; we follow it)."""
    inv, _ = rope_frequencies(
        {"rope_type": "dynamic", "factor": 1.0}, head_dim=D, max_position_embeddings=L, seq_len=2 * L
    )
    assert inv[-1] < DEFAULT[-1]


def test_dynamic_base_grows_with_length():
    lows = [
        rope_frequencies({"rope_type": "dynamic", "factor": 4.0}, head_dim=D, max_position_embeddings=L, seq_len=n)[0][
            -1
        ]
        for n in (L + 1, 2 * L, 8 * L)
    ]
    assert lows[0] > lows[1] > lows[2]
    n = 3 * L  # base' = base * (s n / L - (s - 1)) ** (d / (d - 2))
    base = 10_000 * (4.0 * n / L - 3.0) ** (D / (D - 2))
    expected = 1 / base ** (torch.arange(0, D, 2, dtype=torch.float64) / D)
    got, _ = rope_frequencies({"rope_type": "dynamic", "factor": 4.0}, head_dim=D, max_position_embeddings=L, seq_len=n)
    torch.testing.assert_close(got.double(), expected, rtol=1e-7, atol=0)


def test_pi_by_positions_equals_pi_by_frequencies():
    s = 4
    pi, _ = rope_frequencies({"rope_type": "linear", "factor": float(s)}, head_dim=D)
    m = torch.arange(0, 1 << 16, s)
    for a, b in zip(rope_cos_sin(pi, m), rope_cos_sin(DEFAULT, m // s), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=2e-6)


@pytest.mark.parametrize("factor", [2.0, 8.0, 32.0])
@pytest.mark.parametrize("truncate", [True, False])
def test_yarn_between_interpolation_and_extrapolation(factor, truncate):
    p = {"rope_type": "yarn", "factor": factor, "original_max_position_embeddings": L, "truncate": truncate}
    inv, af = rope_frequencies(p, head_dim=D)
    assert torch.all(inv >= DEFAULT / factor * (1 - 1e-6)) and torch.all(inv <= DEFAULT * (1 + 1e-6))
    assert inv[0] == DEFAULT[0]  # highest frequency untouched
    torch.testing.assert_close(inv[-1], DEFAULT[-1] / factor)  # lowest fully interpolated
    assert af == pytest.approx(0.1 * math.log(factor) + 1)
    assert torch.all(inv[1:] <= inv[:-1])  # still monotone


def test_yarn_mscale_ratio_deepseek_style():
    p = {
        "rope_type": "yarn",
        "factor": 40.0,
        "original_max_position_embeddings": 4096,
        "mscale": 0.707,
        "mscale_all_dim": 1.0,
    }
    _, af = rope_frequencies(p, head_dim=64)
    assert af == pytest.approx((0.1 * 0.707 * math.log(40) + 1) / (0.1 * 1.0 * math.log(40) + 1))
    _, af_equal = rope_frequencies({**p, "mscale": 1.0}, head_dim=64)
    assert af_equal == pytest.approx(1.0)


def test_ntk_formula():
    inv, _ = rope_frequencies({"rope_type": "ntk", "factor": 8.0}, head_dim=D)
    base = 10_000 * 8.0 ** (D / (D - 2))
    torch.testing.assert_close(inv[-1].double(), torch.tensor(1 / base ** ((D - 2) / D), dtype=torch.float64))
    assert inv[0] == 1.0


def test_llama3_bands():
    p = {
        "rope_type": "llama3",
        "factor": 8.0,
        "low_freq_factor": 1.0,
        "high_freq_factor": 4.0,
        "original_max_position_embeddings": 8192,
        "rope_theta": 500_000.0,
    }
    inv, _ = rope_frequencies(p, head_dim=D)
    base, _ = rope_frequencies({"rope_theta": 500_000.0}, head_dim=D)
    wavelen = 2 * math.pi / base
    high, low = wavelen < 8192 / 4, wavelen > 8192 / 1
    torch.testing.assert_close(inv[high], base[high], rtol=0, atol=0)
    torch.testing.assert_close(inv[low], base[low] / 8)
    mid = ~high & ~low
    assert mid.any() and torch.all(inv[mid] < base[mid]) and torch.all(inv[mid] > base[mid] / 8)


def test_longrope_switch_and_attention_factor():
    short = [1.0 + i / 64 for i in range(32)]
    long = [2.0 + i for i in range(32)]
    p = {"rope_type": "longrope", "short_factor": short, "long_factor": long, "original_max_position_embeddings": 4096}
    base, _ = rope_frequencies(None, head_dim=64)
    below, af = rope_frequencies(p, head_dim=64, max_position_embeddings=131_072, seq_len=4096)
    above, _ = rope_frequencies(p, head_dim=64, max_position_embeddings=131_072, seq_len=4097)
    torch.testing.assert_close(below, base / torch.tensor(short))
    torch.testing.assert_close(above, base / torch.tensor(long))
    assert af == pytest.approx(math.sqrt(1 + math.log(32) / math.log(4096)))
    assert depends_on_length("longrope") and depends_on_length("dynamic") and not depends_on_length("yarn")


def test_proportional_rotates_a_fraction_with_full_head_exponents():
    p = {"rope_type": "proportional", "rope_theta": 1e6, "partial_rotary_factor": 0.25, "factor": 2.0}
    inv, _ = rope_frequencies(p, head_dim=64)
    assert inv.shape == (32,)
    expected = 1 / 1e6 ** (torch.arange(0, 16, 2, dtype=torch.float64) / 64) / 2
    torch.testing.assert_close(inv[:8].double(), expected, rtol=1e-7, atol=0)
    assert torch.all(inv[8:] == 0)


@pytest.mark.parametrize("partial", [1.0, 0.5, 0.25])
def test_partial_rotary_length(partial):
    inv, _ = rope_frequencies({"partial_rotary_factor": partial}, head_dim=128)
    assert inv.shape == (int(128 * partial) // 2,) and inv.dtype == torch.float32


def test_spec_round_trip_and_frozen():
    p = {"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 2048, "truncate": False}
    spec = parse_rope_parameters(p)
    assert parse_rope_parameters(spec.as_dict()) == spec
    with pytest.raises(dataclasses.FrozenInstanceError):
        spec.params.factor = 2.0  # type: ignore[misc]
    assert parse_rope_parameters({"type": "linear", "factor": 2.0}).rope_type == "linear"


def test_registry_answers_what_callers_need():
    """Callers ask the registry (length dependence, state, rotary dim, unscaled type), never test names."""
    from ropekit.scaling import ROPE_TYPE_LABELS, canonical_rope_type, rotary_dim_of, scaling_state, unscaled_spec

    dyn = parse_rope_parameters({"rope_type": "dynamic", "factor": 2.0})
    assert scaling_state(dyn, 10, 64) == 64 and scaling_state(dyn, 100, 64) == 100
    assert rope_frequencies(dyn, head_dim=16, max_position_embeddings=64, seq_len=10)[0].equal(
        rope_frequencies(dyn, head_dim=16, max_position_embeddings=64, seq_len=64)[0]
    )
    lr = parse_rope_parameters(
        {"rope_type": "longrope", "short_factor": [1.0] * 4, "long_factor": [2.0] * 4,
         "original_max_position_embeddings": 8}
    )
    assert scaling_state(lr, 8, 32) is None and scaling_state(lr, 9, 32) == scaling_state(lr, 1000, 32) == 9
    yarn = parse_rope_parameters({"rope_type": "yarn", "factor": 4.0})
    assert scaling_state(yarn, 10_000, 64) is None
    prop = parse_rope_parameters({"rope_type": "proportional", "partial_rotary_factor": 0.5})
    assert rotary_dim_of(prop, 16) == 16 and rotary_dim_of(unscaled_spec(dyn), 16) == 16
    assert unscaled_spec(prop).rope_type == "proportional" and unscaled_spec(yarn).rope_type == "default"
    assert canonical_rope_type("pi") == "linear" and canonical_rope_type("su") == "longrope"
    with pytest.raises(ValueError, match="did you mean 'yarn'"):
        canonical_rope_type("yarnn")
    assert set(ROPE_TYPE_LABELS) == set(ROPE_TYPES)


def test_ntk_alpha_is_hunyuans_static_base():
    """{"rope_type": "dynamic", "alpha": a}: base theta * a ** (d / (d - 2)), static (transformers' HunYuan)."""
    d, theta, alpha = 128, 10_000.0, 1000.0
    base = theta * alpha ** (d / (d - 2))
    expected = 1.0 / base ** (torch.arange(0, d, 2, dtype=torch.float64) / d)
    real = {"alpha": alpha, "factor": 1.0, "beta_fast": 32, "beta_slow": 1, "mscale": 1.0, "mscale_all_dim": 1.0,
            "type": "dynamic", "rope_theta": theta}  # Hunyuan-A13B's rope_scaling
    for params in (real, {"rope_type": "dynamic", "alpha": alpha, "rope_theta": theta}):
        spec = parse_rope_parameters(params)
        assert spec.rope_type == "ntk" and not depends_on_length(spec.rope_type)
        inv, af = rope_frequencies(spec, head_dim=d)
        assert af == 1.0 and torch.allclose(inv.double(), expected, rtol=1e-6, atol=0)
    with pytest.raises(ValueError, match=r"'factor'=2\.0 beside 'alpha'"):
        parse_rope_parameters({"rope_type": "dynamic", "alpha": 1000.0, "factor": 2.0})


def test_resonance_rounds_wavelengths_and_composes_with_yarn():
    """Resonance RoPE (Wang et al. 2024): integer wavelengths, so each pair repeats after a whole number of tokens."""
    from ropekit.scaling import resonance_frequencies

    for params in ({"resonance": True}, {"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 64,
                                         "resonance": True}):
        inv, _ = rope_frequencies(params, head_dim=32, max_position_embeddings=256)
        plain, _ = rope_frequencies({k: v for k, v in params.items() if k != "resonance"}, head_dim=32,
                                    max_position_embeddings=256)
        wavelengths = 2 * math.pi / inv.double()
        expected = 2 * math.pi / torch.round(2 * math.pi / plain.double())  # the paper's formula, in float64
        assert torch.allclose(inv.double(), expected, rtol=1e-6, atol=0)
        assert (wavelengths - wavelengths.round()).abs().max() < 1e-3 * wavelengths.max()
        cos, _ = rope_cos_sin(inv, torch.arange(0, 400))
        lam = int(wavelengths[3].round())  # pair 3 repeats after lam tokens
        assert torch.allclose(cos[lam:, 3], cos[:-lam, 3], atol=1e-5)
        assert parse_rope_parameters(params).as_dict()["resonance"] is True
    zero = resonance_frequencies(torch.tensor([1.0, 0.0]))
    assert zero[1] == 0 and abs(float(zero[0]) - 2 * math.pi / 6) < 1e-7
    with pytest.raises(ValueError, match="'resonance'"):
        parse_rope_parameters({"resonance": "yes"})


@pytest.mark.parametrize("rope_type", ["mllama4", "xdrope", "deepseek_llama_scaling", "dual_chunk"])
def test_types_of_other_engines_are_refused_by_name(rope_type):
    with pytest.raises(ValueError, match=f"rope_type '{rope_type}' is"):
        parse_rope_parameters({"rope_type": rope_type})
