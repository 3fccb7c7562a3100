"""ropekit: rotary position embeddings that are exactly right, fast, and precise at long context.

Tiers: :mod:`ropekit.reference` (the math, the oracle of every test), :mod:`ropekit.functional`
(validated functions on tensors), :mod:`ropekit.modules` (``nn.Module``s holding tables), and
:mod:`ropekit.kernels` (implementations behind the functional tier). KV-cache helpers are in
:mod:`ropekit.cache`. Subpackages, imported on demand: :mod:`ropekit.hf` (transformers models),
:mod:`ropekit.nd` (2-D/N-D and Lie-algebra RoPE), :mod:`ropekit.models`, :mod:`ropekit.train`,
:mod:`ropekit.data`, :mod:`ropekit.experiments`, :mod:`ropekit.report`.
"""

from ropekit.cache import evict, rerotate, sink_window_keep
from ropekit.functional import apply_rotary, apply_rotary_qk, apply_rotary_qk_tablefree, rope_angles, rope_cos_sin
from ropekit.hf.config import from_hf_config, from_hf_layers, load_config_file
from ropekit.kernels import use_backend
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
    "apply_rotary_qk_tablefree",
    "apply_rotary_reference",
    "convert_qk_layout",
    "evict",
    "from_hf_config",
    "from_hf_layers",
    "layout_permutation",
    "load_config_file",
    "parse_rope_parameters",
    "rerotate",
    "rope_angles",
    "rope_cos_sin",
    "rope_frequencies",
    "rotate_half",
    "rotation_matrix",
    "sink_window_keep",
    "sinusoidal_table",
    "use_backend",
    "yarn_mscale",
]
