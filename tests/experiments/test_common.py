"""Statistics, verdicts, styles and RoPE scaling specs shared by the experiments."""

from __future__ import annotations

import numpy as np
import pytest

from ropekit.experiments._common import Claim, agreement, compare, mean_spread, paired_bootstrap, style
from ropekit.experiments._lm import SCALINGS, scaled_pe, zero_shot_pe


def test_one_seed_has_no_spread() -> None:
    assert mean_spread([0.5]) == "0.500 (n=1)"
    assert mean_spread([0.4, 0.6]) == "0.500 +- 0.141 (n=2)"


def test_paired_bootstrap_covers_the_true_difference_and_separates_clear_ones() -> None:
    rng = np.random.default_rng(0)
    a = rng.normal(0.3, 1.0, size=(3, 400))
    m, lo, hi = paired_bootstrap(a, seed=1)
    assert lo < 0.3 < hi and lo < m < hi
    assert compare(a + 1.0, a)[0] == "agrees"
    assert compare(a, a + 1.0)[0] == "disagrees"
    assert compare(a, a + 1.0, higher_is_better=False)[0] == "agrees"
    assert compare(a, a.copy())[0] == "inconclusive"


def _claim(outcome: str) -> Claim:
    return Claim("x", "src", "pub", "meas", outcome)


def test_verdict_word_is_computed_and_not_generous() -> None:
    assert agreement([], [_claim("agrees"), _claim("agrees")]).startswith("Agrees")
    assert agreement([], [_claim("agrees"), _claim("disagrees")]).startswith("Mixed")
    assert agreement([], [_claim("agrees"), _claim("inconclusive")]).startswith("Mixed")
    assert agreement([], [_claim("disagrees"), _claim("inconclusive")]).startswith("Disagrees")
    assert agreement([], [_claim("inconclusive")]).startswith("Inconclusive")
    assert agreement([], [_claim("not tested")]).startswith("Not tested")
    failed = agreement([("set-up works", False)], [_claim("agrees")])
    assert failed.startswith("Not tested") and "[not tested] x" in failed
    with pytest.raises(ValueError, match="outcome"):
        _claim("partly")


def test_dynamic_ntk_takes_the_configured_factor_not_the_length_ratio() -> None:
    """The length does the scaling of dynamic NTK: the spec must not also carry L / T (scaling it twice)."""
    spec = scaled_pe("dynamic NTK", 8.0 / 1.0, 64)
    assert spec["rope_parameters"]["factor"] == 8.0  # a configured factor passes through unchanged
    assert scaled_pe("dynamic NTK", 1.0, 64)["rope_parameters"] == {
        "rope_theta": 10000.0,
        "rope_type": "dynamic",
        "factor": 1.0,
    }
    assert scaled_pe("PI", 1.0, 64)["rope_parameters"]["rope_type"] == "default"
    assert scaled_pe("YaRN", 4.0, 64)["max_position_embeddings"] == 256
    zero = zero_shot_pe("dynamic NTK", 512, 64)["rope_parameters"]
    assert zero["factor"] == 1.0 and zero["rope_type"] == "dynamic"
    assert zero_shot_pe("PI", 512, 64)["rope_parameters"]["factor"] == 8.0
    assert zero_shot_pe("NTK", 32, 64)["rope_parameters"]["rope_type"] == "default"
    for method in SCALINGS:
        assert style(f"RoPE + {method}")["color"]
    with pytest.raises(ValueError, match="unknown scaling"):
        scaled_pe("rope-magic", 2.0, 64)


def test_every_encoding_keeps_one_style() -> None:
    assert style("p-RoPE (p=0.5)") == style("p-RoPE")
    with pytest.raises(KeyError, match="STYLES"):
        style("a new encoding")
