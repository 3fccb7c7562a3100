"""ropekit: rotary position embeddings that are exactly right, fast, and precise at long context.

Tiers: :mod:`ropekit.reference` (the math, the oracle of every test), :mod:`ropekit.functional`
(validated functions on tensors), :mod:`ropekit.modules` (``nn.Module``s holding tables), and
:mod:`ropekit.kernels` (implementations behind the functional tier).
"""

from ropekit.functional import apply_rotary, apply_rotary_qk, rope_angles, rope_cos_sin
from ropekit.hf_config import from_hf_config, load_config_file
from ropekit.layout import convert_qk_layout, layout_permutation
from ropekit.modules import RotaryEmbedding, SinusoidalPositionalEncoding, sinusoidal_table
from ropekit.reference import (
    apply_rotary_complex,
    apply_rotary_matrix,
    apply_rotary_reference,
    rotate_half,
    rotation_matrix,
)
from ropekit.scaling import ROPE_TYPES, RopeSpec, parse_rope_parameters, rope_frequencies, yarn_mscale

__version__ = "0.1.0"

__all__ = [
    "ROPE_TYPES",
    "RopeSpec",
    "RotaryEmbedding",
    "SinusoidalPositionalEncoding",
    "__version__",
    "apply_rotary",
    "apply_rotary_complex",
    "apply_rotary_matrix",
    "apply_rotary_qk",
    "apply_rotary_reference",
    "convert_qk_layout",
    "from_hf_config",
    "layout_permutation",
    "load_config_file",
    "parse_rope_parameters",
    "rope_angles",
    "rope_cos_sin",
    "rope_frequencies",
    "rotate_half",
    "rotation_matrix",
    "sinusoidal_table",
    "yarn_mscale",
]
