"""N-dimensional and multimodal RoPE: axial, RoPE-Mixed, M-RoPE (Qwen2-VL / Qwen3-VL), commuting Lie (STRING), LieRE,
N-D PoPE (:mod:`ropekit.nd.pope`).

Tiers as in the 1-D core: :mod:`ropekit.nd.reference` (the math: ``exp(sum_k p_k G_k)``, Cayley, the toral
fast form), :mod:`ropekit.nd.functional` and :mod:`ropekit.nd.mrope` (frequency builders, validated functions,
position ids), :mod:`ropekit.nd.modules` (``nn.Module``s). :mod:`ropekit.nd.vit` holds the small ViT of the
vision experiment. See ``docs/nd.md``.
"""

from ropekit.nd.functional import (
    apply_liere,
    apply_rotary_nd,
    axial_frequencies,
    frequencies_from_pair_axes,
    grid_positions,
    liere_rotation,
    mixed_frequencies,
    nd_angles,
    nd_cos_sin,
    relativity_defect,
)
from ropekit.nd.modules import (
    AxialRotaryEmbedding,
    CommutingLieEmbedding,
    LieREEmbedding,
    MixedRotaryEmbedding,
    MRotaryEmbedding,
)
from ropekit.nd.mrope import MROPE_LAYOUTS, mrope_cos_sin, mrope_pair_axes, mrope_position_ids, split_mrope_parameters
from ropekit.nd.multimodal import (
    MULTIMODAL_LAYOUTS,
    ernie_pair_axes,
    ernie_position_ids,
    hope_frequencies,
    hope_position_ids,
    layout_cos_sin,
    layout_pair_axes,
    mhrope_cos_sin,
    mhrope_head_axes,
    mrope_interleave_pair_axes,
    mrope_interleave_position_ids,
    omni_position_ids,
    videorope_pair_axes,
    videorope_position_ids,
)
from ropekit.nd.pope import AxialPolarEmbedding, apply_pope_nd, pope_nd_frequencies, split_features
from ropekit.nd.reference import (
    apply_dense_lie,
    apply_token_matrices,
    apply_toral,
    block_generators,
    cayley,
    dense_rotation,
)

__all__ = [
    "MROPE_LAYOUTS",
    "MULTIMODAL_LAYOUTS",
    "AxialPolarEmbedding",
    "AxialRotaryEmbedding",
    "CommutingLieEmbedding",
    "LieREEmbedding",
    "MRotaryEmbedding",
    "MixedRotaryEmbedding",
    "apply_dense_lie",
    "apply_liere",
    "apply_pope_nd",
    "apply_rotary_nd",
    "apply_token_matrices",
    "apply_toral",
    "axial_frequencies",
    "block_generators",
    "cayley",
    "dense_rotation",
    "ernie_pair_axes",
    "ernie_position_ids",
    "frequencies_from_pair_axes",
    "grid_positions",
    "hope_frequencies",
    "hope_position_ids",
    "layout_cos_sin",
    "layout_pair_axes",
    "liere_rotation",
    "mhrope_cos_sin",
    "mhrope_head_axes",
    "mixed_frequencies",
    "mrope_cos_sin",
    "mrope_interleave_pair_axes",
    "mrope_interleave_position_ids",
    "mrope_pair_axes",
    "mrope_position_ids",
    "nd_angles",
    "nd_cos_sin",
    "omni_position_ids",
    "pope_nd_frequencies",
    "relativity_defect",
    "split_features",
    "split_mrope_parameters",
    "videorope_pair_axes",
    "videorope_position_ids",
]
