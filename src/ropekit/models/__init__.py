"""Models for comparing position encodings: decoder LM, encoder classifier, encoder-decoder.

All three share :class:`~ropekit.models.attention.Attention` (``scaled_dot_product_attention``, KV cache,
grouped-query heads) and take the position encoding as one argument, ``ModelConfig.pe``, resolved by
:func:`~ropekit.models.positions.build_position_encoding` from the registry ``POSITION_ENCODINGS``::

    from ropekit.models import ModelConfig, build_model, save_model, load_model
    model = build_model(ModelConfig(task="lm", pe={"kind": "alibi"}))
    model = build_model(ModelConfig(task="classify", pe={"kind": "prope", "p": 0.75}))  # kinds: positions.py

See ``docs/training.md`` for training, checkpoints and the CLI.
"""

from ropekit.models import remap_pe  # noqa: F401  (registers the self_extend and rerope kinds)
from ropekit.models.attention import Attention, KVCache, LayerCache
from ropekit.models.baselines import BagOfTokensClassifier
from ropekit.models.cope_pe import CoPE as CoPE  # registers pe kind "cope"
from ropekit.models.hier_pe import Hierarchical as Hierarchical  # registers pe kind "hierarchical"
from ropekit.models.io import CheckpointError, load_model, save_model
from ropekit.models.positions import (
    POSITION_ENCODINGS,
    ROPE_ALIASES,
    Dims,
    PositionEncoding,
    alibi_slopes,
    build_position_encoding,
    normalise_position_spec,
    random_positions,
    register_position_encoding,
)
from ropekit.models.swap import with_position_encoding
from ropekit.models.transformer import (
    TASKS,
    Block,
    DecoderLM,
    EncoderClassifier,
    ModelConfig,
    Seq2Seq,
    build_model,
    lengths_to_mask,
)

__all__ = [
    "POSITION_ENCODINGS",
    "ROPE_ALIASES",
    "TASKS",
    "Attention",
    "BagOfTokensClassifier",
    "Block",
    "CheckpointError",
    "DecoderLM",
    "Dims",
    "EncoderClassifier",
    "KVCache",
    "LayerCache",
    "ModelConfig",
    "PositionEncoding",
    "Seq2Seq",
    "alibi_slopes",
    "build_model",
    "build_position_encoding",
    "lengths_to_mask",
    "load_model",
    "normalise_position_spec",
    "random_positions",
    "register_position_encoding",
    "save_model",
    "with_position_encoding",
]
