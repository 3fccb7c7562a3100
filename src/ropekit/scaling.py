"""RoPE frequency scaling: Hugging Face ``rope_parameters`` -> ``(inv_freq, attention_factor)``.

Each scaling type is a small function over a frozen dataclass holding only its own parameters
(transformers' ``ROPE_INIT_FUNCTIONS`` idea, without passing a whole model config around).
Formulas follow transformers 5.x ``modeling_rope_utils`` (see ``docs/conventions.md``); where we
are stricter, it is on purpose: unknown keys, missing keys and invalid values raise ``ValueError``
naming the key (transformers only logs a warning, and a misspelt key is silently ignored there).

Precision: frequencies are computed in float64 and rounded once to float32, so ``inv_freq`` is the
correctly rounded value of the formula; transformers computes in float32 and differs by a few ulp
(relative difference <= 2e-6, checked by ``tests/test_hf_parity.py``).

Legend: ``dim`` is the rotary dimension (``int(head_dim * partial_rotary_factor)``), ``inv_freq: [dim/2]``.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, TypeAlias, get_args

import torch

__all__ = [
    "COMMON_KEYS",
    "ROPE_TYPES",
    "ROPE_TYPE_ALIASES",
    "ROPE_TYPE_LABELS",
    "LengthState",
    "RopeSpec",
    "RopeType",
    "ScalingParams",
    "ScalingType",
    "accepts_key",
    "all_parameter_keys",
    "canonical_rope_type",
    "depends_on_length",
    "parse_rope_parameters",
    "resonance_frequencies",
    "rope_frequencies",
    "rotary_dim_of",
    "scaling_state",
    "unscaled_spec",
    "yarn_mscale",
]

RopeType = Literal["default", "linear", "ntk", "dynamic", "yarn", "longrope", "llama3", "proportional"]

DEFAULT_THETA = 10_000.0
COMMON_KEYS = ("rope_type", "rope_theta", "partial_rotary_factor", "resonance")

# NTK-alpha: Hunyuan configs say {"rope_type": "dynamic", "alpha": a} for a STATIC NTK base
# ``theta * a ** (dim / (dim - 2))`` (transformers' HunYuan models and vLLM's DynamicNTKAlphaRotaryEmbedding both read
# it so): ropekit's ``ntk`` with ``factor=a``. Real checkpoints carry ``factor: 1.0`` and YaRN's keys at no-op values
# beside it (Hunyuan-A13B: beta_fast 32, beta_slow 1, mscale 1, mscale_all_dim 1); those are accepted and dropped
# only at those values, where they cannot change the rotation.
_NTK_ALPHA_NOOPS = {"factor": 1.0, "beta_fast": 32, "beta_slow": 1, "mscale": 1.0, "mscale_all_dim": 1.0}

# rope_type names that vLLM or transformers read from real configs and that ropekit does not implement as 1-D
# scaling types: refused with what they are and where to go instead (from vLLM's ``get_rope``, 2025-26).
_NOT_1D_TYPES = {
    "mllama4": "Llama 4's vision rotary embedding over 2-D patch positions; use ropekit.nd.AxialRotaryEmbedding",
    "xdrope": "Hunyuan's XD-RoPE (NTK-alpha base with per-axis 'xdrope_section' pairs, like M-RoPE); use "
    "ropekit.nd.MRotaryEmbedding for the sections and rope_type 'ntk' with factor=alpha for the base",
    "deepseek_llama_scaling": "a DeepSeek remote-code variant that ropekit does not reproduce; convert the config "
    "to rope_type 'yarn' with mscale/mscale_all_dim only if its formula is YaRN's",
    "dual_chunk": "Qwen's dual-chunk attention changes attention itself, not the rotation; not supported",
}


# ----------------------------------------------------------------------------- shared context
@dataclass(frozen=True)
class _Context:
    """What every scaling function may read besides its own parameters."""

    dim: int  # rotary dimension (even)
    head_dim: int
    theta: float
    max_position_embeddings: int | None
    seq_len: int | None
    partial: float = 1.0  # partial_rotary_factor (read by proportional, whose dim is head_dim)


def _exponents(dim: int) -> torch.Tensor:
    """``2i / dim`` for ``i = 0 .. dim/2 - 1``, float64: [dim/2]."""
    return torch.arange(0, dim, 2, dtype=torch.float64) / dim


def _default_inv_freq(dim: int, theta: float) -> torch.Tensor:
    """``theta ** (-2i / dim)`` in float64: [dim/2]."""
    return 1.0 / (theta ** _exponents(dim))


# ----------------------------------------------------------------------------- validation helpers
def _require(cond: bool, key: str, message: str) -> None:
    if not cond:
        raise ValueError(f"rope parameter {key!r}: {message}")


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _check_factor(value: Any, key: str = "factor") -> None:
    _require(_is_number(value), key, f"must be a finite number, got {value!r}")
    _require(value >= 1.0, key, f"must be >= 1 (a context extension factor), got {value!r}")


def _check_positive_int(value: Any, key: str) -> None:
    ok = isinstance(value, int) and not isinstance(value, bool) and value > 0
    _require(ok, key, f"must be a positive integer, got {value!r}")


# ----------------------------------------------------------------------------- parameter dataclasses
@dataclass(frozen=True)
class DefaultParams:
    """Plain RoPE (RoFormer). ABF ("adjusted base frequency") is this with a larger ``rope_theta``."""


@dataclass(frozen=True)
class LinearParams:
    """Position Interpolation (Chen et al. 2023): every frequency divided by ``factor``."""

    factor: float

    def __post_init__(self) -> None:
        _check_factor(self.factor)


@dataclass(frozen=True)
class NTKParams:
    """Static NTK-aware scaling (bloc97, 2023): ``base' = base * factor ** (dim / (dim - 2))``."""

    factor: float

    def __post_init__(self) -> None:
        _check_factor(self.factor)


@dataclass(frozen=True)
class DynamicParams:
    """Dynamic NTK (emozilla, 2023): the NTK base grows with the current length past the original one."""

    factor: float

    def __post_init__(self) -> None:
        _check_factor(self.factor)


@dataclass(frozen=True)
class YarnParams:
    """YaRN (Peng et al. 2023). ``factor=None`` means ``max_position_embeddings / original``."""

    factor: float | None = None
    original_max_position_embeddings: int | None = None
    beta_fast: float = 32.0
    beta_slow: float = 1.0
    mscale: float | None = None
    mscale_all_dim: float | None = None
    attention_factor: float | None = None
    truncate: bool = True

    def __post_init__(self) -> None:
        if self.factor is not None:
            _check_factor(self.factor)
        if self.original_max_position_embeddings is not None:
            _check_positive_int(self.original_max_position_embeddings, "original_max_position_embeddings")
        for key in ("beta_fast", "beta_slow"):
            value = getattr(self, key)
            _require(_is_number(value) and value > 0, key, f"must be a positive number, got {value!r}")
        _require(
            self.beta_fast >= self.beta_slow,
            "beta_fast",
            f"must be >= beta_slow (got beta_fast={self.beta_fast}, beta_slow={self.beta_slow}); "
            "the published defaults are beta_fast=32, beta_slow=1",
        )
        for key in ("mscale", "mscale_all_dim"):
            value = getattr(self, key)
            if value is not None:
                _require(_is_number(value) and value >= 0, key, f"must be a number >= 0, got {value!r}")
        if self.attention_factor is not None:
            af = self.attention_factor
            _require(_is_number(af) and af > 0, "attention_factor", f"must be a positive number, got {af!r}")
        _require(isinstance(self.truncate, bool), "truncate", f"must be true or false, got {self.truncate!r}")


@dataclass(frozen=True)
class LongRopeParams:
    """LongRoPE / Phi-3 (Ding et al. 2024): per-pair rescale factors, short below the original length."""

    short_factor: tuple[float, ...]
    long_factor: tuple[float, ...]
    original_max_position_embeddings: int | None = None
    factor: float | None = None
    attention_factor: float | None = None

    def __post_init__(self) -> None:
        for key in ("short_factor", "long_factor"):
            values = getattr(self, key)
            ok = isinstance(values, (list, tuple)) and len(values) > 0 and all(_is_number(v) for v in values)
            _require(ok, key, f"must be a non-empty list of numbers, got {values!r}")
            _require(all(v > 0 for v in values), key, "must contain only positive numbers")
            object.__setattr__(self, key, tuple(float(v) for v in values))
        if self.original_max_position_embeddings is not None:
            _check_positive_int(self.original_max_position_embeddings, "original_max_position_embeddings")
        if self.factor is not None:
            _check_factor(self.factor)
        if self.attention_factor is not None:
            af = self.attention_factor
            _require(_is_number(af) and af > 0, "attention_factor", f"must be a positive number, got {af!r}")


@dataclass(frozen=True)
class Llama3Params:
    """Llama 3.1's frequency-band scaling (Meta 2024: factor 8, low 1, high 4, original 8192)."""

    factor: float
    low_freq_factor: float
    high_freq_factor: float
    original_max_position_embeddings: int | None = None

    def __post_init__(self) -> None:
        _check_factor(self.factor)
        for key in ("low_freq_factor", "high_freq_factor"):
            value = getattr(self, key)
            _require(_is_number(value) and value > 0, key, f"must be a positive number, got {value!r}")
        _require(
            self.high_freq_factor > self.low_freq_factor,
            "high_freq_factor",
            f"must be > low_freq_factor (got high={self.high_freq_factor}, low={self.low_freq_factor}); "
            "Llama 3.1 uses low_freq_factor=1, high_freq_factor=4",
        )
        if self.original_max_position_embeddings is not None:
            _check_positive_int(self.original_max_position_embeddings, "original_max_position_embeddings")


@dataclass(frozen=True)
class ProportionalParams:
    """Gemma-style proportional RoPE: the first ``partial_rotary_factor`` of pairs rotate with exponents
    over the full ``head_dim``; the rest get frequency 0 (identity). ``inv_freq`` has ``head_dim/2`` entries."""

    factor: float = 1.0

    def __post_init__(self) -> None:
        _check_factor(self.factor)


# ----------------------------------------------------------------------------- scaling functions
def _original_length(value: int | None, ctx: _Context, rope_type: str) -> int:
    """transformers falls back to ``max_position_embeddings`` when the original length is absent."""
    length = value if value is not None else ctx.max_position_embeddings
    if length is None:
        raise ValueError(
            f"rope_type {rope_type!r} needs 'original_max_position_embeddings' in the rope parameters "
            "(or max_position_embeddings=... as a fallback); add the pre-training context length"
        )
    return length


def _default(p: DefaultParams, ctx: _Context) -> tuple[torch.Tensor, float]:
    return _default_inv_freq(ctx.dim, ctx.theta), 1.0


def _linear(p: LinearParams, ctx: _Context) -> tuple[torch.Tensor, float]:
    return _default_inv_freq(ctx.dim, ctx.theta) / p.factor, 1.0


def _ntk(p: NTKParams, ctx: _Context) -> tuple[torch.Tensor, float]:
    base = ctx.theta * p.factor ** (ctx.dim / (ctx.dim - 2))
    return _default_inv_freq(ctx.dim, base), 1.0


def _dynamic(p: DynamicParams, ctx: _Context) -> tuple[torch.Tensor, float]:
    if ctx.max_position_embeddings is None:
        raise ValueError(
            "rope_type 'dynamic' needs max_position_embeddings=... (the length beyond which the base grows)"
        )
    length = max(ctx.seq_len or 0, ctx.max_position_embeddings)
    ratio = p.factor * length / ctx.max_position_embeddings - (p.factor - 1)
    base = ctx.theta * ratio ** (ctx.dim / (ctx.dim - 2))
    return _default_inv_freq(ctx.dim, base), 1.0


def yarn_mscale(scale: float, mscale: float = 1.0) -> float:
    """YaRN's attention temperature ``0.1 * mscale * ln(scale) + 1`` (1 for ``scale <= 1``)."""
    return 1.0 if scale <= 1 else 0.1 * mscale * math.log(scale) + 1.0


def _yarn(p: YarnParams, ctx: _Context) -> tuple[torch.Tensor, float]:
    original = _original_length(p.original_max_position_embeddings, ctx, "yarn")
    factor = p.factor
    if factor is None:
        if ctx.max_position_embeddings is None:
            raise ValueError("rope_type 'yarn' needs 'factor' (or max_position_embeddings=... to derive it)")
        factor = ctx.max_position_embeddings / original
        _require(
            factor >= 1,
            "factor",
            f"derived as max_position_embeddings / original_max_position_embeddings = "
            f"{ctx.max_position_embeddings} / {original} < 1; give 'factor' explicitly or fix the lengths",
        )
    attention_factor = p.attention_factor
    if attention_factor is None:
        # transformers tests truthiness: a zero mscale counts as absent.
        if p.mscale and p.mscale_all_dim:
            attention_factor = yarn_mscale(factor, p.mscale) / yarn_mscale(factor, p.mscale_all_dim)
        else:
            attention_factor = yarn_mscale(factor)

    def correction_dim(rotations: float) -> float:
        # the pair index whose wavelength fits `rotations` times into the original context
        return ctx.dim * math.log(original / (rotations * 2 * math.pi)) / (2 * math.log(ctx.theta))

    low, high = correction_dim(p.beta_fast), correction_dim(p.beta_slow)
    if p.truncate:  # gpt-oss uses truncate=False
        low, high = math.floor(low), math.ceil(high)
    low, high = max(low, 0), min(high, ctx.dim - 1)
    if low == high:
        high += 0.001  # transformers' guard against a zero-width ramp
    ramp = ((torch.arange(ctx.dim // 2, dtype=torch.float64) - low) / (high - low)).clamp(0, 1)
    extrapolation = 1.0 - ramp  # 1: keep the original frequency, 0: interpolate by `factor`
    inv = _default_inv_freq(ctx.dim, ctx.theta)
    return (inv / factor) * (1 - extrapolation) + inv * extrapolation, float(attention_factor)


def _longrope(p: LongRopeParams, ctx: _Context) -> tuple[torch.Tensor, float]:
    original = _original_length(p.original_max_position_embeddings, ctx, "longrope")
    for key in ("short_factor", "long_factor"):
        n = len(getattr(p, key))
        _require(n == ctx.dim // 2, key, f"must have rotary_dim/2 = {ctx.dim // 2} entries, got {n}")
    attention_factor = p.attention_factor
    if attention_factor is None:
        factor = p.factor
        if factor is None:
            if ctx.max_position_embeddings is None:
                raise ValueError(
                    "rope_type 'longrope' needs 'factor' or 'attention_factor' "
                    "(or max_position_embeddings=... to derive the factor)"
                )
            factor = ctx.max_position_embeddings / original
        attention_factor = 1.0 if factor <= 1 else math.sqrt(1 + math.log(factor) / math.log(original))
    use_long = ctx.seq_len is not None and ctx.seq_len > original
    ext = torch.tensor(p.long_factor if use_long else p.short_factor, dtype=torch.float64)
    return 1.0 / (ext * ctx.theta ** _exponents(ctx.dim)), float(attention_factor)


def _llama3(p: Llama3Params, ctx: _Context) -> tuple[torch.Tensor, float]:
    original = _original_length(p.original_max_position_embeddings, ctx, "llama3")
    inv = _default_inv_freq(ctx.dim, ctx.theta)
    wavelen = 2 * math.pi / inv
    low_wavelen = original / p.low_freq_factor  # longer than this: fully interpolated
    high_wavelen = original / p.high_freq_factor  # shorter than this: untouched
    smooth = (original / wavelen - p.low_freq_factor) / (p.high_freq_factor - p.low_freq_factor)
    blended = (1 - smooth) * inv / p.factor + smooth * inv
    out = torch.where(wavelen > low_wavelen, inv / p.factor, inv)
    medium = (wavelen >= high_wavelen) & (wavelen <= low_wavelen)
    return torch.where(medium, blended, out), 1.0


def _proportional(p: ProportionalParams, ctx: _Context) -> tuple[torch.Tensor, float]:
    # ctx.dim is head_dim here (see _rotary_dim): rotated pairs use exponents over the whole head.
    rotated = int(ctx.partial * ctx.head_dim // 2)
    inv = torch.zeros(ctx.head_dim // 2, dtype=torch.float64)
    inv[:rotated] = 1.0 / (ctx.theta ** (torch.arange(0, 2 * rotated, 2, dtype=torch.float64) / ctx.head_dim))
    return inv / p.factor, 1.0


# ----------------------------------------------------------------------------- registry
ScalingParams: TypeAlias = (
    DefaultParams
    | LinearParams
    | NTKParams
    | DynamicParams
    | YarnParams
    | LongRopeParams
    | Llama3Params
    | ProportionalParams
)

# How the frequencies depend on the current sequence length:
# "none": not at all; "grows": continuously past max_position_embeddings (dynamic NTK's base; transformers keeps
# a high-water mark of the length); "switches": one switch at the original length (LongRoPE's short/long sets).
LengthState = Literal["none", "grows", "switches"]


def _no_length(p: Any, seq_len: int | None, max_position_embeddings: int | None) -> int | None:
    return None


def _dynamic_length(p: DynamicParams, seq_len: int | None, max_position_embeddings: int | None) -> int | None:
    # below max_position_embeddings the base is the original one: every such length is one state
    return max(seq_len or 0, max_position_embeddings or 0)


def _longrope_length(p: LongRopeParams, seq_len: int | None, max_position_embeddings: int | None) -> int | None:
    original = p.original_max_position_embeddings or max_position_embeddings
    if seq_len is None or original is None or seq_len <= original:
        return None  # the short factors
    return original + 1  # any length past the original one: the long factors


@dataclass(frozen=True)
class ScalingType:
    """One registry entry: what a caller needs to know about a scaling type, so no caller tests its name.

    Attributes:
        params: the frozen dataclass of the type's own parameters.
        fn: ``(params, context) -> (inv_freq float64 [r], attention_factor)``.
        required: keys that must be given.
        length_state: how the frequencies depend on the current length (see :data:`LengthState`).
        state_length: ``(params, seq_len, max_position_embeddings) -> length or None``: the one length that stands
            for every length with the same frequencies (the key of a cached table; ``None``: the static state).
        full_head: ``inv_freq`` spans the whole head (``head_dim/2`` entries, zeros past the partial factor)
            instead of ``int(head_dim * partial_rotary_factor)/2`` entries.
        unscaled: the type that gives the same frequencies with the scaling removed (``ropekit freqs``).
        label: the name shown in tables and figures.
    """

    params: type
    fn: Callable[[Any, _Context], tuple[torch.Tensor, float]]
    label: str
    required: tuple[str, ...] = field(default=())
    length_state: LengthState = "none"
    state_length: Callable[[Any, int | None, int | None], int | None] = _no_length
    full_head: bool = False
    unscaled: RopeType = "default"


ROPE_TYPES: dict[RopeType, ScalingType] = {
    "default": ScalingType(DefaultParams, _default, "RoPE"),
    "linear": ScalingType(LinearParams, _linear, "PI", required=("factor",)),
    "ntk": ScalingType(NTKParams, _ntk, "NTK", required=("factor",)),
    "dynamic": ScalingType(
        DynamicParams, _dynamic, "dynamic NTK", required=("factor",), length_state="grows", state_length=_dynamic_length
    ),
    "yarn": ScalingType(YarnParams, _yarn, "YaRN"),
    "longrope": ScalingType(
        LongRopeParams,
        _longrope,
        "LongRoPE",
        required=("short_factor", "long_factor"),
        length_state="switches",
        state_length=_longrope_length,
    ),
    "llama3": ScalingType(Llama3Params, _llama3, "Llama 3", required=("factor", "low_freq_factor", "high_freq_factor")),
    "proportional": ScalingType(ProportionalParams, _proportional, "p-RoPE", full_head=True, unscaled="proportional"),
}
assert set(ROPE_TYPES) == set(get_args(RopeType))

# Every other name a scaling type goes by, mapped to its rope_type: short names (the ``--pe`` flag and
# ``ropekit.models`` kinds, the papers' names) and vendor names found in real configs (DeepSeek V2's remote
# code says ``deepseek_yarn``, early Phi-3 ``su``). ``parse_rope_parameters`` itself accepts only rope_type
# names, as transformers does; ``ropekit.hf.config`` and ``ropekit.models`` resolve aliases first.
ROPE_TYPE_ALIASES: dict[str, RopeType] = {
    "rope": "default",
    "pi": "linear",
    "su": "longrope",
    "deepseek_yarn": "yarn",
}
ROPE_TYPE_LABELS: dict[RopeType, str] = {name: entry.label for name, entry in ROPE_TYPES.items()}


def canonical_rope_type(name: str) -> RopeType:
    """The rope_type a name or alias stands for (``"pi"`` -> ``"linear"``); ``ValueError`` for an unknown name."""
    for rope_type in ROPE_TYPES:
        if name == rope_type:
            return rope_type
    if name in ROPE_TYPE_ALIASES:
        return ROPE_TYPE_ALIASES[name]
    known = [*ROPE_TYPES, *ROPE_TYPE_ALIASES]
    raise ValueError(f"unknown scaling type {name!r}; expected one of {known}" + _nearest(str(name), known))


def accepts_key(rope_type: RopeType, key: str) -> bool:
    """Whether ``rope_type``'s parameters include ``key`` (e.g. ``original_max_position_embeddings``)."""
    return key in {f.name for f in dataclasses.fields(ROPE_TYPES[rope_type].params)}


def all_parameter_keys() -> list[str]:
    """Every key any rope type accepts (for 'did you mean' suggestions)."""
    keys = set(COMMON_KEYS) | {"type"}
    for entry in ROPE_TYPES.values():
        keys |= {f.name for f in dataclasses.fields(entry.params)}
    return sorted(keys)


def depends_on_length(rope_type: RopeType) -> bool:
    """True when the frequencies depend on the current sequence length (dynamic NTK, LongRoPE)."""
    return ROPE_TYPES[rope_type].length_state != "none"


def _nearest(key: str, candidates: list[str]) -> str:
    match = difflib.get_close_matches(key, candidates, n=1, cutoff=0.5)
    return f"; did you mean {match[0]!r}?" if match else ""


@dataclass(frozen=True)
class RopeSpec:
    """A validated rope configuration: type, base, partial factor and the type's own parameters."""

    rope_type: RopeType
    rope_theta: float
    partial_rotary_factor: float
    params: ScalingParams
    resonance: bool = False

    @property
    def scaling(self) -> ScalingType:
        """The registry entry of this spec's type."""
        return ROPE_TYPES[self.rope_type]

    def as_dict(self) -> dict[str, Any]:
        """Back to a ``rope_parameters`` mapping (explicit values only, lists for factor tuples)."""
        out: dict[str, Any] = {"rope_type": self.rope_type, "rope_theta": self.rope_theta}
        if self.partial_rotary_factor != 1.0:
            out["partial_rotary_factor"] = self.partial_rotary_factor
        if self.resonance:
            out["resonance"] = True
        for f in dataclasses.fields(self.params):
            value = getattr(self.params, f.name)
            if value is not None and value != f.default:
                out[f.name] = list(value) if isinstance(value, tuple) else value
        return out


def parse_rope_parameters(params: Mapping[str, Any] | None) -> RopeSpec:
    """Validate a ``rope_parameters`` mapping and return a :class:`RopeSpec`.

    Raises ``ValueError`` naming the key for unknown keys (with the nearest valid key), keys that
    belong to another rope type, missing required keys and invalid values.
    """
    if params is None:
        params = {}
    if not isinstance(params, Mapping):
        raise ValueError(f"rope parameters must be a mapping (a dict of rope_parameters), got {type(params)}")
    params = dict(params)
    if "type" in params:  # transformers v4 alias
        alias = params.pop("type")
        if "rope_type" in params and params["rope_type"] != alias:
            raise ValueError(
                f"rope parameters give both 'type'={alias!r} and 'rope_type'={params['rope_type']!r}; keep one"
            )
        params["rope_type"] = alias
    rope_type = params.pop("rope_type", "default")
    if rope_type == "mrope" or "mrope_section" in params or "mrope_interleaved" in params:
        raise ValueError(
            "these are multimodal RoPE (M-RoPE) parameters (Qwen2-VL / Qwen3-VL 'mrope_section'), which drive "
            "pairs by (t, h, w) positions, not 1-D ones; use ropekit.nd.MRotaryEmbedding(head_dim, rope_parameters) "
            "(it splits off 'mrope_section' and checks the rest here), or ropekit.nd.split_mrope_parameters"
        )
    if rope_type in _NOT_1D_TYPES:
        raise ValueError(f"rope_type {rope_type!r} is {_NOT_1D_TYPES[rope_type]}")
    if rope_type == "dynamic" and "alpha" in params:  # NTK-alpha (see _NTK_ALPHA_NOOPS)
        for key, noop in _NTK_ALPHA_NOOPS.items():
            if key in params and params[key] != noop:
                raise ValueError(
                    f"rope parameter {key!r}={params[key]!r} beside 'alpha': with 'alpha' (NTK-alpha, a static base "
                    f"theta * alpha ** (dim / (dim - 2))) only {key}={noop} is accepted; drop 'alpha' for dynamic NTK"
                )
            params.pop(key, None)
        rope_type, params["factor"] = "ntk", params.pop("alpha")
    if rope_type not in ROPE_TYPES:
        raise ValueError(
            f"unknown rope_type {rope_type!r}; expected one of {sorted(ROPE_TYPES)}"
            + _nearest(str(rope_type), list(ROPE_TYPES))
        )
    theta = params.pop("rope_theta", DEFAULT_THETA)
    _require(_is_number(theta) and theta > 1, "rope_theta", f"must be a finite number > 1, got {theta!r}")
    partial = params.pop("partial_rotary_factor", 1.0)
    _require(
        _is_number(partial) and 0 < partial <= 1,
        "partial_rotary_factor",
        f"must be in (0, 1], got {partial!r}",
    )
    resonance = params.pop("resonance", False)
    _require(isinstance(resonance, bool), "resonance", f"must be true or false, got {resonance!r}")
    entry = ROPE_TYPES[rope_type]
    own = {f.name for f in dataclasses.fields(entry.params)}
    for key in params:
        if key in own:
            continue
        owners = [name for name, e in ROPE_TYPES.items() if key in {f.name for f in dataclasses.fields(e.params)}]
        if owners:
            raise ValueError(
                f"rope parameter {key!r} is not used by rope_type {rope_type!r} (it belongs to {owners}); "
                f"remove it or change rope_type. {rope_type!r} accepts: {sorted(set(COMMON_KEYS) | own)}"
            )
        raise ValueError(
            f"unknown rope parameter {key!r} for rope_type {rope_type!r}"
            + _nearest(key, all_parameter_keys())
            + f" Accepted keys: {sorted(set(COMMON_KEYS) | own)}"
        )
    missing = [k for k in entry.required if params.get(k) is None]
    if missing:
        raise ValueError(f"rope_type {rope_type!r} is missing required parameter(s) {missing}")
    clean = {k: v for k, v in params.items() if v is not None}
    return RopeSpec(rope_type, float(theta), float(partial), entry.params(**clean), resonance)


def rotary_dim_of(spec: RopeSpec, head_dim: int) -> int:
    """The rotary dimension: ``int(head_dim * partial_rotary_factor)`` (``head_dim`` for proportional)."""
    if not isinstance(head_dim, int) or isinstance(head_dim, bool) or head_dim <= 0:
        raise ValueError(f"head_dim must be a positive integer, got {head_dim!r}")
    dim = head_dim if spec.scaling.full_head else int(head_dim * spec.partial_rotary_factor)
    if dim < 2 or dim % 2:
        raise ValueError(
            f"rotary dimension must be even and >= 2, got {dim} (head_dim={head_dim}, "
            f"partial_rotary_factor={spec.partial_rotary_factor}); rotary pairs need an even dimension"
        )
    return dim


def scaling_state(spec: RopeSpec, seq_len: int | None, max_position_embeddings: int | None) -> int | None:
    """The length that stands for every length whose frequencies equal those at ``seq_len`` (``None``: static).

    Pass it as ``seq_len=`` to :func:`rope_frequencies` to get that state's frequencies; two lengths with the
    same state give the same tables (a cache key). Dynamic NTK: ``max(seq_len, max_position_embeddings)``;
    LongRoPE: ``None`` up to the original length, ``original + 1`` past it; other types: ``None``.
    """
    return spec.scaling.state_length(spec.params, seq_len, max_position_embeddings)


def unscaled_spec(spec: RopeSpec) -> RopeSpec:
    """The same base and partial factor with the scaling removed (``default``, or ``proportional`` at factor 1)."""
    rope_type = spec.scaling.unscaled
    return RopeSpec(rope_type, spec.rope_theta, spec.partial_rotary_factor, ROPE_TYPES[rope_type].params())


def rope_frequencies(
    params: Mapping[str, Any] | RopeSpec | None,
    *,
    head_dim: int,
    max_position_embeddings: int | None = None,
    seq_len: int | None = None,
) -> tuple[torch.Tensor, float]:
    """Inverse frequencies and attention factor for a Hugging Face ``rope_parameters`` mapping.

    Args:
        params: ``rope_parameters`` keys (``rope_type``, ``rope_theta``, ``partial_rotary_factor``, ``factor``,
            ...), or a :class:`RopeSpec`. ``None`` means default RoPE with base 10000.
        head_dim: features per attention head; the rotary dimension is ``int(head_dim * partial_rotary_factor)``.
        max_position_embeddings: the model's context length (dynamic NTK's threshold; the fallback for
            ``original_max_position_embeddings`` and for YaRN/LongRoPE's ``factor``, as in transformers).
        seq_len: current sequence length, read only by length-dependent types (``dynamic``, ``longrope``).

    Returns:
        ``inv_freq: [rotary_dim/2]`` float32 and ``attention_factor`` (multiply cos and sin by it).
    """
    spec = params if isinstance(params, RopeSpec) else parse_rope_parameters(params)
    for name, value in (("max_position_embeddings", max_position_embeddings), ("seq_len", seq_len)):
        if value is not None and not (isinstance(value, int) and not isinstance(value, bool) and value > 0):
            raise ValueError(f"argument {name} must be a positive integer or None, got {value!r}")
    dim = rotary_dim_of(spec, head_dim)
    ctx = _Context(dim, head_dim, spec.rope_theta, max_position_embeddings, seq_len, spec.partial_rotary_factor)
    inv_freq, attention_factor = ROPE_TYPES[spec.rope_type].fn(spec.params, ctx)
    if spec.resonance:
        inv_freq = resonance_frequencies(inv_freq)
    return inv_freq.to(torch.float32), float(attention_factor)


def resonance_frequencies(inv_freq: torch.Tensor) -> torch.Tensor:
    """Resonance RoPE (Wang et al. 2024, arXiv:2403.00071): every wavelength ``2 pi / inv_freq`` rounded to the
    nearest integer, so each pair's rotation repeats exactly every whole number of tokens. Applied after any
    scaling type (Resonance YaRN = YaRN's frequencies, then rounded); zero frequencies stay zero. ``[r]``."""
    safe = torch.where(inv_freq > 0, inv_freq, torch.ones_like(inv_freq))
    wavelength = torch.round(2 * math.pi / safe).clamp_min(1.0)
    return torch.where(inv_freq > 0, 2 * math.pi / wavelength, inv_freq)
