"""Reading the rotary settings of a Hugging Face model config, without importing transformers.

Accepted shapes (transformers 5.x ``modeling_rope_utils`` and the v4 configs before it; docs/hf.md):

* transformers v5: ``rope_parameters`` (a flat mapping, or nested per layer type as in Gemma; pick one
  with ``layer_type=``);
* transformers v4: ``rope_scaling`` plus top-level ``rope_theta`` and ``partial_rotary_factor``;
  GPT-NeoX's ``rotary_pct`` and ``rotary_emb_base``; ``type`` as an alias of ``rope_type``;
* a top-level ``original_max_position_embeddings`` (Phi-3), which transformers copies into the
  parameters of ``yarn``, ``longrope`` and ``llama3``;
* ``rope_interleave`` (DeepSeek V3) selects the interleaved pairing; GPT-J / CodeGen (``model_type``
  ``gptj``/``codegen``) are interleaved and give the rotated width as a top-level ``rotary_dim``;
* vendor aliases: ``deepseek_yarn`` (DeepSeek V2 remote code) is ``yarn`` with ``mscale``/``mscale_all_dim``;
  ``su`` (early Phi-3) is ``longrope``, and so is ``yarn`` in a Phi-3 config (transformers' ``Phi3Config``
  renames both); DeepSeek's MLA rotates ``qk_rope_head_dim`` features, which is returned as ``head_dim``;
* Gemma 3 in the v4 shape: ``rope_local_base_freq`` is the base of ``layer_type="sliding_attention"``
  (unscaled), ``rope_theta`` + ``rope_scaling`` those of ``"full_attention"``.

Strictness: nothing that changes the rotation is dropped. Unknown ``rope_*``/``rotary_*`` top-level keys
(a misspelt ``rope_scalling``), scaling keys without a type, a base given twice with different values and
remote-code switches ropekit cannot reproduce (Qwen-1's ``use_dynamic_ntk``/``use_logn_attn``) raise
``ValueError`` naming the key and the nearest valid one, where transformers would only log a warning.

A config is a mapping (``config.json`` loaded as a dict) or any object with attributes (a transformers
``PretrainedConfig``).
"""

from __future__ import annotations

import difflib
import json
import math
from collections.abc import Mapping
from os import PathLike
from typing import Any

from ropekit.scaling import ROPE_TYPE_ALIASES, ROPE_TYPES, accepts_key, parse_rope_parameters

__all__ = ["from_hf_config", "from_hf_layers", "load_config_file"]

_MISSING = object()

# top-level keys that concern the rotation and are read here (anything else named rope_*/rotary_* raises)
_KNOWN_TOP_LEVEL = (
    "rope_parameters",
    "rope_scaling",
    "rope_theta",
    "rope_interleave",
    "rope_local_base_freq",
    "rotary_pct",
    "rotary_emb_base",
    "rotary_dim",
    "partial_rotary_factor",
    "original_max_position_embeddings",
    "qk_rope_head_dim",
)
_VENDOR_TYPES = ("deepseek_yarn", "su")  # rope_type names of vendor configs (see ROPE_TYPE_ALIASES)
_PHI3_TYPES = ("phi3", "phimoe")  # transformers' Phi3Config maps "yarn" to "longrope" too
_INTERLEAVED_TYPES = ("gptj", "codegen")
_COMPLEX_PAIR_TYPES = ("llama4_text", "llama4")  # Llama 4 rotates (x[2j], x[2j+1]) as complex numbers
_UNSUPPORTED_SWITCHES = {
    "use_dynamic_ntk": "Qwen-1's remote-code dynamic NTK (per-chunk base); ropekit has no equivalent",
    "use_logn_attn": "Qwen-1's log-n attention scaling of queries; ropekit has no equivalent",
}


def _getter(config: Any):
    if isinstance(config, Mapping):
        return lambda key: config.get(key, _MISSING)
    return lambda key: getattr(config, key, _MISSING)


def load_config_file(path: str | PathLike[str]) -> dict[str, Any]:
    """Read a ``config.json``; clear errors for a missing file, a folder, or malformed JSON."""
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except FileNotFoundError:
        raise ValueError(f"--config file {str(path)!r} does not exist") from None
    except IsADirectoryError:
        raise ValueError(f"--config {str(path)!r} is a folder; give the model's config.json file") from None
    except PermissionError:
        raise ValueError(f"--config file {str(path)!r} cannot be read (permission denied)") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"--config file {str(path)!r} is not valid JSON: {e}") from None
    if not isinstance(data, dict):
        raise ValueError(f"--config file {str(path)!r} must hold a JSON object, got {type(data).__name__}")
    return data


def _int_value(key: str, value: Any) -> int:
    """A count from a config: an int (or an integral float such as ``64.0``), positive; else ``ValueError``."""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f"config {key!r} must be a positive integer, got {value!r}")
    return value


def _bool_value(key: str, value: Any) -> bool:
    """A switch from a config: a JSON boolean only (``bool("false")`` is True, so strings are refused)."""
    if not isinstance(value, bool):
        raise ValueError(f"config {key!r} must be true or false (a JSON boolean), got {value!r}")
    return value


def _one_value(get, key: str, aliases: tuple[str, ...]) -> Any:
    """The value given under ``key`` or its aliases; ``ValueError`` when two names give different values."""
    given = [(alias, get(alias)) for alias in aliases if _present(get(alias))]
    for alias, value in given[1:]:
        if value != given[0][1]:
            raise ValueError(
                f"config gives {key} twice with different values: {given[0][0]}={given[0][1]!r} and "
                f"{alias}={value!r}; transformers reads only one of them: keep one, or make them agree"
            )
    return given[0][1] if given else _MISSING


def _present(value: Any) -> bool:
    return value is not _MISSING and value is not None


def _check_top_level(config: Any, get) -> None:
    """Raise for top-level keys whose effect on the rotation would otherwise be silently dropped."""
    for key, why in _UNSUPPORTED_SWITCHES.items():
        if get(key) is True:
            raise ValueError(f"config sets {key}=true: {why}; set it to false or use rope_scaling instead")
    if not isinstance(config, Mapping):
        return  # attribute objects (PretrainedConfig) carry many unrelated attributes: keys are checked by name
    for key in config:
        if not isinstance(key, str):
            raise ValueError(f"config keys must be strings, got {key!r} ({type(key).__name__})")
        if key.startswith(("rope", "rotary")) and key not in _KNOWN_TOP_LEVEL:
            match = difflib.get_close_matches(key, _KNOWN_TOP_LEVEL, n=1, cutoff=0.6)
            hint = f"; did you mean {match[0]!r}?" if match else ""
            raise ValueError(
                f"unknown rotary config key {key!r}{hint} ropekit reads {list(_KNOWN_TOP_LEVEL)}; a misspelt key "
                "would silently drop the scaling, so rename or remove it"
            )


def _normalise_type(params: dict[str, Any], model_type: Any) -> None:
    """Resolve ``type``/``rope_type`` vendor aliases in place."""
    for key in ("rope_type", "type"):
        value = params.get(key)
        if value in _VENDOR_TYPES:
            params[key] = ROPE_TYPE_ALIASES[value]
        elif value == "yarn" and model_type in _PHI3_TYPES:
            params[key] = "longrope"
    has_type = "rope_type" in params or "type" in params
    scaling = sorted(set(params) - {"rope_theta", "partial_rotary_factor"})
    if scaling and not has_type:
        raise ValueError(
            f"rope parameters have scaling keys {scaling} but no 'rope_type' (or 'type'); transformers would fall "
            "back to default RoPE and drop them: add e.g. 'rope_type': 'linear'"
        )


def from_hf_config(config: Any, *, layer_type: str | None = None) -> dict[str, Any]:
    """The arguments of :class:`ropekit.RotaryEmbedding` for a Hugging Face config.

    Returns ``{"head_dim", "rope_parameters", "interleaved", "max_position_embeddings"}`` such that
    ``RotaryEmbedding(**from_hf_config(cfg))`` rotates like the model. Raises ``ValueError`` for unknown or
    invalid rope keys (naming the key) and for configs whose scaling cannot be read unambiguously.
    """
    if not isinstance(config, Mapping) and isinstance(config, (str, bytes, int, float, list, tuple)):
        raise ValueError(f"config must be a mapping or a config object, got {type(config).__name__}")
    get = _getter(config)
    head_dim = get("head_dim")
    if _present(head_dim):
        head_dim = _int_value("head_dim", head_dim)
    else:
        hidden, heads = get("hidden_size"), get("num_attention_heads")
        if not (_present(hidden) and _present(heads)):
            raise ValueError("config needs 'head_dim' or both 'hidden_size' and 'num_attention_heads'")
        hidden, heads = _int_value("hidden_size", hidden), _int_value("num_attention_heads", heads)
        if hidden % heads:
            raise ValueError(f"hidden_size {hidden} is not divisible by num_attention_heads {heads}")
        head_dim = hidden // heads

    _check_top_level(config, get)
    model_type = get("model_type")
    rope_head_dim = get("qk_rope_head_dim")  # DeepSeek MLA: only this many features per head rotate
    if _present(rope_head_dim):
        head_dim = _int_value("qk_rope_head_dim", rope_head_dim)

    params_v5, scaling_v4 = get("rope_parameters"), get("rope_scaling")
    for key, value in (("rope_parameters", params_v5), ("rope_scaling", scaling_v4)):
        if _present(value) and not isinstance(value, Mapping):
            raise ValueError(
                f'config {key!r} must be an object like {{"rope_type": "linear", "factor": 2.0}}, '
                f"got {type(value).__name__} {value!r}"
            )
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
    elif _present(get("rope_local_base_freq")):  # Gemma 3, v4 shape: a separate unscaled base for local layers
        if layer_type not in ("sliding_attention", "full_attention"):
            raise ValueError(
                "config has 'rope_local_base_freq' (Gemma 3: sliding layers use another base); pass "
                "layer_type='sliding_attention' or layer_type='full_attention'"
            )
        if layer_type == "sliding_attention":
            params = {"rope_type": "default", "rope_theta": get("rope_local_base_freq")}
            nested = {"local": params}  # the top-level rope_theta is the global layers' base: no conflict check
    elif layer_type is not None:
        raise ValueError(f"layer_type={layer_type!r} given but the rope parameters are not nested per layer type")
    _normalise_type(params, model_type)

    # top-level values fill in what the parameters lack (transformers' setdefault semantics)
    for key, aliases in (
        ("rope_theta", ("rope_theta", "rotary_emb_base")),
        ("partial_rotary_factor", ("partial_rotary_factor", "rotary_pct")),
    ):
        if key in params:
            for alias in aliases:
                value = get(alias)
                if _present(value) and value != params[key] and not nested:
                    raise ValueError(
                        f"config gives {key}={params[key]} in its rope parameters and {alias}={value} at the top "
                        "level; transformers keeps the first one: make them agree"
                    )
            continue
        if key == "partial_rotary_factor" and model_type in _INTERLEAVED_TYPES and _present(get("rotary_dim")):
            params[key] = _int_value("rotary_dim", get("rotary_dim")) / head_dim  # GPT-J: 64 of head_dim=256
            continue
        value = _one_value(get, key, aliases)
        if value is not _MISSING:
            params[key] = value
    rope_type = params.get("rope_type", params.get("type", "default"))
    original = get("original_max_position_embeddings")
    if rope_type in ROPE_TYPES and accepts_key(rope_type, "original_max_position_embeddings") and _present(original):
        inner = params.get("original_max_position_embeddings")
        if inner is not None and inner != original:
            raise ValueError(
                f"original_max_position_embeddings differs between the config ({original}) and its rope "
                f"parameters ({inner}); transformers would use the top-level value: make them agree"
            )
        params["original_max_position_embeddings"] = original

    max_pos = get("max_position_embeddings")
    max_pos = _int_value("max_position_embeddings", max_pos) if _present(max_pos) else None
    inner_original = params.get("original_max_position_embeddings")
    if (
        rope_type in ("yarn", "longrope")
        and params.get("factor") is None
        and max_pos is not None
        and isinstance(inner_original, (int, float))
        and not isinstance(inner_original, bool)
        and inner_original > max_pos
    ):
        raise ValueError(
            f"rope_type {rope_type!r} without 'factor' derives it as max_position_embeddings / "
            f"original_max_position_embeddings = {max_pos} / {inner_original} < 1, the same factor that is refused "
            f"when given explicitly; give 'factor' >= 1 or fix the two lengths"
        )
    interleave = get("rope_interleave")
    if _present(interleave):
        interleave = _bool_value("rope_interleave", interleave)
    elif model_type in _INTERLEAVED_TYPES or model_type in _COMPLEX_PAIR_TYPES:
        interleave = True
    spec = parse_rope_parameters(params)  # raise now, naming the key, rather than at first forward
    return {
        "head_dim": int(head_dim),
        "rope_parameters": spec.as_dict(),
        "interleaved": interleave if _present(interleave) else False,
        "max_position_embeddings": max_pos,
    }


# Per-layer schemes (Llama 4 iRoPE, SmolLM3 NoPE layers, Gemma 3 local/global layers). Defaults follow
# transformers' Llama4TextConfig, SmolLM3Config and Gemma3TextConfig (transformers 5.x configuration_*.py).
_NOPE_DEFAULT_INTERVAL = {"llama4_text": 4, "smollm3": 4}
_TEMPERATURE_TYPES = ("llama4_text",)  # attn_temperature_tuning (default True) acts on the NoPE layers
_SLIDING_DEFAULT_PATTERN = {"gemma3_text": 6}
_TEXT_OF = {"llama4": "llama4_text", "gemma3": "gemma3_text"}


def _text_config(config: Any) -> Any:
    """The text part of a multimodal config (``text_config`` of ``llama4`` / ``gemma3``), else the config."""
    get = _getter(config)
    if get("model_type") in _TEXT_OF and _present(get("text_config")):
        text = get("text_config")
        if isinstance(text, Mapping) and "model_type" not in text:
            text = {**text, "model_type": _TEXT_OF[get("model_type")]}
        return text
    return config


def _use_rope_flags(get, model_type: Any, n_layers: int) -> list[bool]:
    """Per layer, does it rotate? ``no_rope_layers`` holds one flag per layer, 1 = RoPE (the name is
    transformers'); without it, every ``no_rope_layer_interval``-th layer is NoPE (Llama 4, SmolLM3)."""
    flags = get("no_rope_layers")
    if _present(flags) and flags:
        if not isinstance(flags, (list, tuple)) or len(flags) != n_layers or any(f not in (0, 1) for f in flags):
            raise ValueError(
                f"config 'no_rope_layers' must list one 0/1 flag per layer ({n_layers}; 1 = the layer uses RoPE), "
                f"got {flags!r}"
            )
        return [bool(f) for f in flags]
    interval = get("no_rope_layer_interval")
    if not _present(interval):
        interval = _NOPE_DEFAULT_INTERVAL.get(model_type)
    if interval is None:
        return [True] * n_layers
    interval = _int_value("no_rope_layer_interval", interval)
    return [(i + 1) % interval != 0 for i in range(n_layers)]


def _layer_types_of(get, model_type: Any, n_layers: int) -> list[str] | None:
    """``layer_types`` (one ``"sliding_attention"``/``"full_attention"``/... per layer), or Gemma 3's
    ``sliding_window_pattern`` (layer i is sliding iff ``(i + 1) % pattern != 0``), or ``None``."""
    types = get("layer_types")
    if _present(types):
        if not isinstance(types, (list, tuple)) or len(types) != n_layers or not all(isinstance(t, str) for t in types):
            raise ValueError(
                f"config 'layer_types' must list one layer type name per layer ({n_layers}), got {types!r}"
            )
        return list(types)
    pattern = get("sliding_window_pattern")
    if not _present(pattern):
        pattern = _SLIDING_DEFAULT_PATTERN.get(model_type)
    if pattern is None:
        return None
    pattern = _int_value("sliding_window_pattern", pattern)
    return ["sliding_attention" if (i + 1) % pattern else "full_attention" for i in range(n_layers)]


def from_hf_layers(config: Any) -> dict[str, Any]:
    """What each layer of a Hugging Face text model uses for positions, and the same as ropekit model arguments.

    Reads Llama 4 (iRoPE: ``no_rope_layers`` / ``no_rope_layer_interval``, ``attn_temperature_tuning`` with
    ``floor_scale`` and ``attn_scale``, ``attention_chunk_size`` on the RoPE layers), SmolLM3 (``no_rope_layers``)
    and Gemma 3 (``layer_types`` or ``sliding_window_pattern``, ``sliding_window``, the sliding layers' own base:
    ``rope_parameters["sliding_attention"]`` or v4 ``rope_local_base_freq``); a multimodal ``llama4``/``gemma3``
    config is read through its ``text_config``. Any other config gives every layer the same rotation.

    Returns ``{"per_layer", "pe", "layers", "not_in_layers"}``:

    * ``per_layer``: one dict per layer, ``{"layer_type", "rope", "rotary", "sliding_window",
      "attention_chunk_size", "temperature"}``; ``rotary`` is :func:`from_hf_config` for that layer type
      (``RotaryEmbedding(**rotary)`` rotates like the layer) or ``None`` on a NoPE layer; ``temperature`` is
      ``(floor_scale, attn_scale)`` on Llama 4's NoPE layers when tuning is on, else ``None``;
    * ``pe`` and ``layers``: the ``pe`` and ``layers`` arguments of :class:`ropekit.models.ModelConfig`
      (``layers`` is ``None`` when every layer is alike), for a small ropekit model with the same scheme;
    * ``not_in_layers``: what the ropekit models do not reproduce (Llama 4's chunked attention), as sentences.

    Raises ``ValueError`` for malformed per-layer keys and for a scheme the ropekit models cannot hold (sliding
    layers with a scaled RoPE or another rotary width than the full layers).
    """
    config = _text_config(config)
    get = _getter(config)
    model_type = get("model_type")
    n_layers = get("num_hidden_layers")
    if not _present(n_layers):
        raise ValueError("config needs 'num_hidden_layers' to say what each layer uses")
    n_layers = _int_value("num_hidden_layers", n_layers)
    use_rope = _use_rope_flags(get, model_type, n_layers)
    types = _layer_types_of(get, model_type, n_layers)
    params = get("rope_parameters")
    nested = isinstance(params, Mapping) and any(isinstance(v, Mapping) for v in params.values())
    per_type_rope = nested or _present(get("rope_local_base_freq"))  # Gemma 3: one RoPE per layer type
    tuning = get("attn_temperature_tuning")
    tuning = _bool_value("attn_temperature_tuning", tuning) if _present(tuning) else model_type in _TEMPERATURE_TYPES
    temperature = None
    if tuning and not all(use_rope):
        values = []
        for name, default in (("floor_scale", 8192.0), ("attn_scale", 0.1)):  # Llama4TextConfig's defaults
            value = get(name)
            value = default if not _present(value) else value
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise ValueError(f"config {name!r} must be a finite number (Llama 4 query temperature), got {value!r}")
            values.append(float(value))
        if values[0] <= 0:
            raise ValueError(f"config 'floor_scale' must be > 0 (tokens per temperature step), got {values[0]}")
        temperature = (values[0], values[1])
    window, chunk = get("sliding_window"), get("attention_chunk_size")
    if model_type == "llama4_text" and chunk is _MISSING:
        chunk = 8192  # Llama4TextConfig's default
    rotary: dict[str | None, dict[str, Any]] = {}
    per_layer = []
    for i in range(n_layers):
        layer_type = types[i] if types is not None else None
        key = layer_type if per_type_rope else None
        if use_rope[i] and key not in rotary:
            rotary[key] = from_hf_config(config, layer_type=key)
        sliding = layer_type == "sliding_attention"
        if sliding and not _present(window):
            raise ValueError(
                f"layer {i} is a sliding_attention layer but the config has no 'sliding_window' (its width in tokens)"
            )
        chunked = layer_type == "chunked_attention" or (types is None and use_rope[i] and model_type == "llama4_text")
        per_layer.append(
            {
                "layer_type": layer_type,
                "rope": use_rope[i],
                "rotary": rotary[key] if use_rope[i] else None,
                "sliding_window": _int_value("sliding_window", window) if sliding else None,
                "attention_chunk_size": _int_value("attention_chunk_size", chunk)
                if chunked and _present(chunk)
                else None,
                "temperature": None if use_rope[i] else temperature,
            }
        )
    pe, layers = _ropekit_model_args(per_layer, rotary, use_rope, temperature)
    chunked_layers = [i for i, p in enumerate(per_layer) if p["attention_chunk_size"] is not None]
    not_in = []
    if chunked_layers:
        size = per_layer[chunked_layers[0]]["attention_chunk_size"]
        not_in.append(
            f"layers {chunked_layers} use chunked attention (chunks of {size} tokens); ropekit's models attend to "
            "the whole causal prefix there"
        )
    return {"per_layer": per_layer, "pe": pe, "layers": layers, "not_in_layers": not_in}


def _ropekit_model_args(
    per_layer: list[dict[str, Any]],
    rotary: dict[str | None, dict[str, Any]],
    use_rope: list[bool],
    temperature: tuple[float, float] | None,
) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
    """``(pe, layers)`` for ``ropekit.models.ModelConfig`` (see :func:`from_hf_layers`)."""
    full = rotary.get("full_attention", rotary.get(None))
    local = rotary.get("sliding_attention")
    main = full or local
    if main is None:
        return None, {"use_rope": [0] * len(use_rope)}  # no layer rotates
    pe = {
        "kind": "rope",
        "rope_parameters": main["rope_parameters"],
        "interleaved": main["interleaved"],
        "max_position_embeddings": main["max_position_embeddings"],
    }
    layers: dict[str, Any] = {}
    if not all(use_rope):
        layers["use_rope"] = [int(u) for u in use_rope]
    if temperature is not None:
        layers.update(attn_temperature_tuning=True, floor_scale=temperature[0], attn_scale=temperature[1])
    windows = [p["sliding_window"] for p in per_layer]
    if any(w is not None for w in windows):
        layers["layer_types"] = ["sliding_attention" if w is not None else "full_attention" for w in windows]
        layers["sliding_window"] = next(w for w in windows if w is not None)
        if local is not None and full is not None:
            params = local["rope_parameters"]
            if params.get("rope_type", "default") != "default" or params.get("partial_rotary_factor", 1.0) != main[
                "rope_parameters"
            ].get("partial_rotary_factor", 1.0):
                raise ValueError(
                    f"the sliding layers' rope parameters {params} are not plain RoPE of the full layers' rotary "
                    "width; ropekit's models give local layers only their own base (local_rope_theta)"
                )
            layers["local_rope_theta"] = float(params["rope_theta"])
    return pe, layers or None
