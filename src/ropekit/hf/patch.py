"""Per-instance replacement of a transformers model's rotary embedding by a ropekit-backed module.

transformers' text models hold one rotary module (``model.model.rotary_emb``) whose
``forward(x, position_ids[, layer_type])`` returns ``(cos, sin)``, each ``[B, T, 2r]`` with the halves
duplicated (``cat(freqs, freqs)``), multiplied by the attention factor and cast to ``x.dtype``; the attention
layers then call ``apply_rotary_pos_emb``. :func:`patch` swaps that module object, on this model instance only,
for :class:`RopekitRotary`, which returns the same tables computed by ropekit (frequencies in float64,
angles reduced in float64: see :func:`ropekit.rope_cos_sin`); :func:`unpatch` puts the original object back.
No class or module-global function is touched.

Length state: transformers' dynamic NTK keeps a high-water mark of the length seen so far (and resets it
below the original length); ropekit's :class:`~ropekit.RotaryEmbedding` is a pure function of the current
length. ``mode="transformers"`` (default) reproduces transformers' logits; ``mode="current"`` uses the
current length, which together with :func:`ropekit.hf.rerotate_cache_` keeps cached keys fresh.

Legend: ``x: [B, T, hidden]`` (only its dtype and device are read), ``position_ids: [B, T]`` integer,
``cos, sin: [B, T, 2r]``.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any, Literal

import torch
from torch import nn

from ropekit.angles import check_positions
from ropekit.functional import rope_cos_sin
from ropekit.hf.config import from_hf_config
from ropekit.modules import RotaryEmbedding

__all__ = ["RopekitRotary", "find_rotary_modules", "is_patched", "patch", "unpatch"]

Mode = Literal["transformers", "current"]


def _layer_types(module: nn.Module) -> list[str | None]:
    """The layer types a transformers rotary module serves (``[None]`` when it has a single table)."""
    rope_type = getattr(module, "rope_type", None)
    if isinstance(rope_type, Mapping):
        return list(rope_type)
    return [None]


def _override_for(rope_parameters: Mapping[str, Any] | None, layer_type: str | None) -> dict[str, Any] | None:
    """A flat override applies to every layer type; a nested one (``{layer_type: params}``) to those it names."""
    if rope_parameters is None:
        return None
    nested = {k: v for k, v in rope_parameters.items() if isinstance(v, Mapping)}
    if not nested:
        return dict(rope_parameters)
    if len(nested) != len(rope_parameters):
        raise ValueError("rope_parameters override mixes per-layer-type mappings with flat keys; use one form")
    return dict(nested[layer_type]) if layer_type in nested else None


@torch.no_grad()
def _duplicates_halves(module: nn.Module, layer_types: list[str | None]) -> bool:
    """Probe a copy of a transformers rotary module (the original keeps its state): does it return
    ``cat(freqs, freqs)`` (width 2r) or ``freqs`` (width r)?"""
    probe = copy.deepcopy(module)
    x, position_ids = torch.zeros(1, 1), torch.zeros(1, 1, dtype=torch.long)
    device = next((b.device for b in probe.buffers()), None)
    if device is not None:
        x, position_ids = x.to(device), position_ids.to(device)
    layer_type = layer_types[0]
    cos, _ = probe(x, position_ids) if layer_type is None else probe(x, position_ids, layer_type)
    inv_freq = getattr(probe, "inv_freq", None)
    if inv_freq is None:
        inv_freq = getattr(probe, f"{layer_type}_inv_freq")
    return cos.shape[-1] == 2 * inv_freq.numel()


def find_rotary_modules(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """``(qualified name, module)`` of every text rotary embedding in ``model`` (transformers classes named
    ``*RotaryEmbedding`` that carry a ``config`` and a ``rope_type``; vision rotaries are skipped)."""
    found = []
    for name, module in model.named_modules():
        cls = type(module).__name__
        if isinstance(module, RopekitRotary) or "Vision" in cls or not cls.endswith("RotaryEmbedding"):
            continue
        if hasattr(module, "config") and hasattr(module, "rope_type"):
            found.append((name, module))
    return found


class RopekitRotary(nn.Module):
    """Drop-in for a transformers text rotary module: ``forward(x, position_ids, layer_type=None) -> (cos, sin)``.

    Args:
        config: the model's (text) config; read with :func:`ropekit.from_hf_config` (strict: unknown keys and
            scaling that would be dropped raise).
        layer_types: the layer types to serve (``[None]`` for a single table).
        rope_parameters: optional override (e.g. try NTK on a Llama): flat for every layer type, or nested
            ``{layer_type: params}`` for the types it names.
        mode: ``"transformers"`` keeps dynamic NTK's high-water mark like transformers; ``"current"`` uses
            the current length (``max(position_ids) + 1``).
        allow_negative: accept negative positions (rotations by negative angles); default raises.
        allow_fractional: accept floating ``position_ids`` (e.g. interpolated positions); default raises.
        duplicated: return ``cat(freqs, freqs)`` tables ``[B, T, 2r]`` (most families) or ``[B, T, r]``
            (gpt-oss, whose attention splits q in halves itself); :func:`patch` reads it off the original.
    """

    def __init__(
        self,
        config: Any,
        layer_types: list[str | None] | None = None,
        *,
        rope_parameters: Mapping[str, Any] | None = None,
        mode: Mode = "transformers",
        allow_negative: bool = False,
        allow_fractional: bool = False,
        duplicated: bool = True,
    ) -> None:
        super().__init__()
        self.duplicated = duplicated
        if mode not in ("transformers", "current"):
            raise ValueError(f"mode must be 'transformers' or 'current', got {mode!r}")
        self.mode, self.allow_negative, self.allow_fractional = mode, allow_negative, allow_fractional
        self.ropes = nn.ModuleDict()
        self._high_water: dict[str, int] = {}
        for layer_type in layer_types or [None]:
            kwargs = from_hf_config(config, layer_type=layer_type)
            override = _override_for(rope_parameters, layer_type)
            if override is not None:
                kwargs["rope_parameters"] = override
            rope = RotaryEmbedding(**kwargs)
            key = layer_type or "default"
            self.ropes[key] = rope
            self._high_water[key] = rope.max_position_embeddings or 0
        self._original: nn.Module | None = None

    def rope(self, layer_type: str | None = None) -> RotaryEmbedding:
        """The :class:`~ropekit.RotaryEmbedding` used for ``layer_type`` (for :func:`ropekit.cache.rerotate`)."""
        key = layer_type or "default"
        if key not in self.ropes:
            raise KeyError(f"no rotary embedding for layer_type {layer_type!r}; have {sorted(self.ropes)}")
        rope = self.ropes[key]
        assert isinstance(rope, RotaryEmbedding)  # nn.ModuleDict is typed by Module
        return rope

    def state_length(self, seq_len: int, layer_type: str | None = None) -> int:
        """The length whose scaling state is used for a call whose largest position is ``seq_len - 1``."""
        key = layer_type or "default"
        rope = self.rope(layer_type)
        if self.mode == "current" or rope.spec.scaling.length_state != "grows":
            return seq_len
        # transformers' dynamic_rope_update: grow the high-water mark, reset it below the original length
        original = rope.max_position_embeddings or 0
        high = self._high_water[key]
        if seq_len > high:
            self._high_water[key] = seq_len
        elif seq_len < original < high:
            self._high_water[key] = original
        return self._high_water[key]

    def _validate(self, position_ids: torch.Tensor) -> None:
        """The one position check (:func:`ropekit.angles.check_positions`), with this patch's flags and hints."""
        try:
            check_positions(
                position_ids,
                name="position_ids",
                allow_negative=self.allow_negative,
                allow_float=self.allow_fractional,
            )
        except ValueError as e:
            if position_ids.is_floating_point() and not self.allow_fractional:
                hint = "pass allow_fractional=True to ropekit.hf.patch(...) if non-integer positions are intended"
            elif not self.allow_negative:
                hint = (
                    "left padding should give pads position 1 or 0 (transformers' generate uses "
                    "attention_mask.cumsum(-1) - 1, masked to 1), or pass allow_negative=True to ropekit.hf.patch(...)"
                )
            else:
                raise
            raise ValueError(f"{e}; {hint}") from None

    @torch.no_grad()
    def forward(
        self, x: torch.Tensor, position_ids: torch.Tensor, layer_type: str | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(cos, sin)``, each ``[B, T, 2r]`` (halves duplicated; ``[B, T, r]`` if not ``duplicated``) in
        ``x.dtype``, times the attention factor."""
        self._validate(position_ids)
        rope = self.rope(layer_type)
        positions = position_ids.to(x.device)
        seq_len = int(positions.max()) + 1 if positions.numel() else 1
        seq_len = max(seq_len, 1)  # all-negative positions (allowed) still pick the base state
        inv_freq, factor = rope.frequencies(self.state_length(seq_len, layer_type))
        inv_freq = inv_freq.to(x.device)
        cos, sin = rope_cos_sin(inv_freq, positions, attention_factor=factor)  # [B, T, r]; exact for every position
        if self.duplicated:
            cos, sin = torch.cat((cos, cos), dim=-1), torch.cat((sin, sin), dim=-1)  # [B, T, 2r]: halves layout
        return cos.to(x.dtype), sin.to(x.dtype)

    def extra_repr(self) -> str:
        return f"mode={self.mode!r}, layer_types={list(self.ropes)}, duplicated={self.duplicated}"


def patch(
    model: nn.Module,
    *,
    rope_parameters: Mapping[str, Any] | None = None,
    mode: Mode = "transformers",
    allow_negative: bool = False,
    allow_fractional: bool = False,
) -> list[str]:
    """Replace every text rotary embedding of ``model`` (this instance only) with :class:`RopekitRotary`.

    Returns the qualified names replaced. Raises ``ValueError`` if the model has no rotary module, if it is
    already patched, or if its config cannot be read exactly (see :func:`ropekit.from_hf_config`).
    ``rope_parameters`` overrides the config's scaling for every layer type. Undo with :func:`unpatch`.
    """
    if is_patched(model):
        raise ValueError("model is already patched by ropekit; call ropekit.hf.unpatch(model) first")
    found = find_rotary_modules(model)
    if not found:
        raise ValueError(
            f"no rotary embedding module found in {type(model).__name__} (looked for transformers "
            "'*RotaryEmbedding' modules with a config); supported: Llama, Mistral, Qwen2/3, Phi-3, GPT-NeoX, Gemma"
        )
    replacements = []
    for name, module in found:  # build all first: a config error leaves the model untouched
        layer_types = _layer_types(module)
        new = RopekitRotary(
            module.config,
            layer_types,
            rope_parameters=rope_parameters,
            mode=mode,
            allow_negative=allow_negative,
            allow_fractional=allow_fractional,
            duplicated=_duplicates_halves(module, layer_types),
        )
        device = next((b.device for b in module.buffers()), None)
        if device is not None:
            new.to(device)
        object.__setattr__(new, "_original", module)  # plain attribute: not a submodule, not in state_dict
        replacements.append((name, new))
    for name, new in replacements:
        _set_submodule(model, name, new)
    return [name for name, _ in replacements]


def unpatch(model: nn.Module) -> list[str]:
    """Restore the original rotary module objects replaced by :func:`patch`; returns the names restored."""
    restored = []
    for name, module in list(model.named_modules()):
        if isinstance(module, RopekitRotary) and module._original is not None:
            _set_submodule(model, name, module._original)
            restored.append(name)
    if not restored:
        raise ValueError("model is not patched by ropekit (nothing to restore)")
    return restored


def is_patched(model: nn.Module) -> bool:
    """True if some rotary module of ``model`` is a :class:`RopekitRotary`."""
    return any(isinstance(m, RopekitRotary) for m in model.modules())


def _set_submodule(model: nn.Module, name: str, module: nn.Module) -> None:
    parent_name, _, attr = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, attr, module)
