"""Reading the rotary settings of a Hugging Face model config, without importing transformers.

Accepted shapes (REFERENCE.md section 2):

* transformers v5: ``rope_parameters`` (a flat mapping, or nested per layer type as in Gemma; pick one
  with ``layer_type=``);
* transformers v4: ``rope_scaling`` plus top-level ``rope_theta`` and ``partial_rotary_factor``;
  GPT-NeoX's ``rotary_pct`` and ``rotary_emb_base``; ``type`` as an alias of ``rope_type``;
* a top-level ``original_max_position_embeddings`` (Phi-3), which transformers copies into the
  parameters of ``yarn``, ``longrope`` and ``llama3``;
* ``rope_interleave`` (DeepSeek V3) selects the interleaved pairing.

A config is a mapping (``config.json`` loaded as a dict) or any object with attributes (a transformers
``PretrainedConfig``).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from os import PathLike
from typing import Any

from ropekit.scaling import parse_rope_parameters

__all__ = ["from_hf_config", "load_config_file"]

_MISSING = object()


def _getter(config: Any):
    if isinstance(config, Mapping):
        return lambda key: config.get(key, _MISSING)
    return lambda key: getattr(config, key, _MISSING)


def load_config_file(path: str | PathLike[str]) -> dict[str, Any]:
    """Read a ``config.json``; clear errors for a missing file or malformed JSON."""
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except FileNotFoundError:
        raise ValueError(f"config file {str(path)!r} does not exist") from None
    except json.JSONDecodeError as e:
        raise ValueError(f"config file {str(path)!r} is not valid JSON: {e}") from None
    if not isinstance(data, dict):
        raise ValueError(f"config file {str(path)!r} must hold a JSON object, got {type(data).__name__}")
    return data


def _present(value: Any) -> bool:
    return value is not _MISSING and value is not None


def from_hf_config(config: Any, *, layer_type: str | None = None) -> dict[str, Any]:
    """The arguments of :class:`ropekit.RotaryEmbedding` for a Hugging Face config.

    Returns ``{"head_dim", "rope_parameters", "interleaved", "max_position_embeddings"}`` such that
    ``RotaryEmbedding(**from_hf_config(cfg))`` rotates like the model. Raises ``ValueError`` for unknown or
    invalid rope keys (naming the key) and for configs whose scaling cannot be read unambiguously.
    """
    get = _getter(config)
    head_dim = get("head_dim")
    if not _present(head_dim):
        hidden, heads = get("hidden_size"), get("num_attention_heads")
        if not (_present(hidden) and _present(heads)):
            raise ValueError("config needs 'head_dim' or both 'hidden_size' and 'num_attention_heads'")
        if hidden % heads:
            raise ValueError(f"hidden_size {hidden} is not divisible by num_attention_heads {heads}")
        head_dim = hidden // heads

    params_v5, scaling_v4 = get("rope_parameters"), get("rope_scaling")
    if _present(params_v5) and _present(scaling_v4) and dict(params_v5) != dict(scaling_v4):
        raise ValueError("config has both 'rope_parameters' and 'rope_scaling' and they differ; keep one")
    raw = params_v5 if _present(params_v5) else scaling_v4
    params: dict[str, Any] = dict(raw) if _present(raw) else {}

    nested = {k: v for k, v in params.items() if isinstance(v, Mapping)}
    if nested:
        if layer_type is None:
            raise ValueError(
                f"rope parameters are nested per layer type {sorted(nested)}; pass layer_type=... to pick one"
            )
        if layer_type not in nested:
            raise ValueError(f"layer_type {layer_type!r} not in the config's rope parameters {sorted(nested)}")
        params = dict(nested[layer_type])
    elif layer_type is not None:
        raise ValueError(f"layer_type={layer_type!r} given but the rope parameters are not nested per layer type")

    # top-level values fill in what the parameters lack (transformers' setdefault semantics)
    for key, aliases in (
        ("rope_theta", ("rope_theta", "rotary_emb_base")),
        ("partial_rotary_factor", ("partial_rotary_factor", "rotary_pct")),
    ):
        if key in params:
            continue
        for alias in aliases:
            value = get(alias)
            if _present(value):
                params[key] = value
                break
    rope_type = params.get("rope_type", params.get("type", "default"))
    original = get("original_max_position_embeddings")
    if rope_type in ("yarn", "longrope", "llama3") and _present(original):
        inner = params.get("original_max_position_embeddings")
        if inner is not None and inner != original:
            raise ValueError(
                f"original_max_position_embeddings differs between the config ({original}) and its rope "
                f"parameters ({inner}); transformers would use the top-level value: make them agree"
            )
        params["original_max_position_embeddings"] = original

    max_pos = get("max_position_embeddings")
    max_pos = max_pos if _present(max_pos) else None
    interleave = get("rope_interleave")
    spec = parse_rope_parameters(params)  # raise now, naming the key, rather than at first forward
    return {
        "head_dim": int(head_dim),
        "rope_parameters": spec.as_dict(),
        "interleaved": bool(interleave) if _present(interleave) else False,
        "max_position_embeddings": max_pos,
    }
