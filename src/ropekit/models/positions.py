"""Position encodings for the models, behind one small protocol and a registry.

Legend: ``x: [B, T, C]`` hidden states (``C = d_model``), ``q: [B, Hq, T, D]``, ``k: [B, Hk, T, D]``,
``positions``: an ``int`` offset (the default positions ``offset .. offset+T-1``) or an integer tensor
``[T]`` / ``[B, T]``, ``bias: [1 or B, H, Tq, Tk]`` added to attention logits, ``r = rotary pairs``.

Protocol (:class:`PositionEncoding`, every method has an identity default):

* ``embed(x, positions) -> x``: absolute kinds add to the token embeddings once, before the first block.
* ``rotate(q, k, positions) -> (q, k)``: rotary kinds, in every self-attention layer, before caching k.
* ``bias(q_positions, k_positions) -> bias | None``: additive attention bias (ALiBi), tensors ``[T]``/``[B, T]``.
* ``scores(q, k, q_positions, k_positions, visible) -> logits`` for kinds with ``computes_scores = True``
  (content-dependent or remapped positions): the whole pre-softmax logits from unrotated heads.

Kinds (``POSITION_ENCODINGS``): ``none`` (NoPE), ``sinusoidal``, ``learned``, ``alibi``, ``rope`` (any Hugging Face
``rope_parameters``: PI = ``linear``, ``ntk``, ``dynamic``, ``yarn``, ``longrope``, ``llama3``, ABF = a larger
``rope_theta``; the aliases ``pi``/``ntk``/``dynamic``/``yarn``/``llama3``/``longrope`` set ``rope_type``), ``xpos``,
``prope``, ``learned_freq``, ``receptive``, ``fope`` (Fourier coefficients, :mod:`ropekit.fope`), ``pope`` (polar,
:mod:`ropekit.pope`); registered from their own modules: ``cope`` (``models/cope_pe.py``), ``self_extend`` and
``rerope`` (``models/remap_pe.py``), ``hierarchical`` (``models/hier_pe.py``). Any kind takes
``random_max=L``: while training, positions are a sorted random subset of ``[0, L)`` per row (Ruoss et al.
2023); evaluation and generation use the default positions.

A spec is a name or a mapping ``{"kind": name, **options}`` (JSON-friendly; options are the constructor's keyword
arguments). Adding a kind is one class decorated with ``@register_position_encoding("name")``.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from ropekit.fope import FourierRotaryEmbedding
from ropekit.functional import apply_rotary_qk, rope_cos_sin
from ropekit.modules import RotaryEmbedding, sinusoidal_table
from ropekit.pope import PolarEmbedding
from ropekit.scaling import ROPE_TYPE_ALIASES, ROPE_TYPES, canonical_rope_type, rope_frequencies

__all__ = [
    "POSITION_ENCODINGS",
    "ROPE_ALIASES",
    "Dims",
    "PositionEncoding",
    "alibi_slopes",
    "build_position_encoding",
    "normalise_position_spec",
    "positions_tensor",
    "random_positions",
    "register_position_encoding",
]

POSITION_ENCODINGS: dict[str, type[PositionEncoding]] = {}
# Kinds that name a RoPE scaling type (``"yarn"``, ``"pi"``, ...): the kind becomes ``rope`` with that
# ``rope_type``. Derived from ropekit.scaling's registry and alias table, the one list of scaling names.
ROPE_ALIASES: dict[str, str] = {
    name: canonical_rope_type(name) for name in (*ROPE_TYPES, *ROPE_TYPE_ALIASES) if name not in ("rope", "default")
}


def _check_flag(name: str, value: Any) -> None:
    """A switch must be a bool: ``interleaved='no'`` would select the interleaved pairing (``bool('no')``)."""
    if not isinstance(value, bool):
        raise ValueError(f"{name} must be True or False, got {value!r} ({type(value).__name__})")


def _check_positive(name: str, value: Any) -> None:
    """A base or scale must be a finite number > 0 (0 gives NaN tables and logits)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}")


@dataclass(frozen=True)
class Dims:
    """Model sizes a position encoding may need."""

    d_model: int
    n_heads: int
    head_dim: int
    max_len: int


def register_position_encoding(name: str) -> Callable[[type[PositionEncoding]], type[PositionEncoding]]:
    """Class decorator adding a kind to :data:`POSITION_ENCODINGS` under ``name``."""

    def add(cls: type[PositionEncoding]) -> type[PositionEncoding]:
        if name in POSITION_ENCODINGS:
            raise ValueError(f"position encoding {name!r} is already registered")
        cls.kind = name
        POSITION_ENCODINGS[name] = cls
        return cls

    return add


def positions_tensor(positions: torch.Tensor | int, T: int, device: torch.device) -> torch.Tensor:
    """``positions`` as an int64 tensor: ``[T]`` for an int offset, unchanged for a tensor."""
    if isinstance(positions, int):
        return torch.arange(positions, positions + T, device=device)
    return positions


def random_positions(
    batch: int, length: int, max_position: int, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Sorted random subsets of ``[0, max_position)`` (Ruoss et al. 2023): int64 ``[batch, length]``."""
    if length > max_position:
        raise ValueError(
            f"random_max={max_position} is smaller than the sequence length {length}; "
            f"random positions need random_max >= T (e.g. 4 * the training length)"
        )
    scores = torch.rand(batch, max_position, generator=generator)
    return scores.topk(length, dim=-1).indices.sort(dim=-1).values  # [B, T] distinct, increasing


class PositionEncoding(nn.Module):
    """Base class: identity for every hook. Subclasses override the hooks their kind uses."""

    kind = "base"
    random_max: int | None = None

    def embed(self, x: torch.Tensor, positions: torch.Tensor | int) -> torch.Tensor:
        """``x: [B, T, C]`` -> ``[B, T, C]`` (absolute kinds add their encoding)."""
        return x

    def rotate(
        self, q: torch.Tensor, k: torch.Tensor, positions: torch.Tensor | int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``q: [B, Hq, T, D]``, ``k: [B, Hk, T, D]`` -> same shapes (rotary kinds rotate)."""
        return q, k

    def bias(self, q_positions: torch.Tensor, k_positions: torch.Tensor) -> torch.Tensor | None:
        """``[Tq]``/``[B, Tq]`` and ``[Tk]``/``[B, Tk]`` -> ``[1 or B, H, Tq, Tk]`` or ``None``."""
        return None

    #: True for kinds whose scores are not ``rotate(q) . rotate(k)`` (content-dependent positions, position
    #: remapping): :meth:`rotate` and :meth:`bias` are then not called, the KV cache holds *unrotated* keys, and
    #: :meth:`scores` computes the pre-softmax logits from the raw heads.
    computes_scores: bool = False

    def scores(
        self,
        q: torch.Tensor,
        k: torch.Tensor,
        q_positions: torch.Tensor,
        k_positions: torch.Tensor,
        visible: torch.Tensor,
    ) -> torch.Tensor:
        """Pre-softmax logits ``[B, H, Tq, Tk]`` (scaled, no mask) for kinds with :attr:`computes_scores`.

        ``q: [B, H, Tq, D]`` and ``k: [B, H, Tk, D]`` unrotated (``k`` already repeated for grouped-query heads),
        ``q_positions: [B, Tq]``, ``k_positions: [B, Tk]``, ``visible: [1 or B, 1, Tq, Tk]`` bool (True: the key
        may be attended; the caller masks the rest to ``-inf`` after this returns)."""
        raise NotImplementedError(f"position encoding {self.kind!r} does not compute its own scores")


@register_position_encoding("none")
class NoPE(PositionEncoding):
    """No position information (NoPE): a causal decoder still infers order from the mask."""

    def __init__(self, dims: Dims) -> None:
        super().__init__()


@register_position_encoding("sinusoidal")
class Sinusoidal(PositionEncoding):
    """Vaswani et al. (2017) fixed table added to the embeddings (``ropekit.sinusoidal_table``), times ``scale``.

    ``scale`` defaults to ``1 / sqrt(C)``: the paper multiplies the embeddings by ``sqrt(C)`` instead (section 3.4);
    scaling the table gives the same token-to-position ratio while leaving the token embeddings exactly as in every
    other kind, so comparisons differ only in the encoding. Unscaled (``scale=1``), table entries of size ~1 swamp
    embeddings initialised with std 0.02: a byte LM trained that way stayed at the unigram loss (docs/training.md).
    """

    def __init__(self, dims: Dims, base: float = 10_000.0, scale: float | None = None) -> None:
        super().__init__()
        _check_positive("sinusoidal base", base)
        if scale is not None:
            _check_positive("sinusoidal scale", scale)
        self.dim, self.base = dims.d_model, base
        self.scale = 1.0 / math.sqrt(dims.d_model) if scale is None else float(scale)

    def embed(self, x: torch.Tensor, positions: torch.Tensor | int) -> torch.Tensor:
        pos = positions_tensor(positions, x.shape[-2], x.device)
        table = sinusoidal_table(pos, self.dim, base=self.base).to(x.dtype)  # [T, C] or [B, T, C]
        return x + self.scale * table


@register_position_encoding("learned")
class LearnedAbsolute(PositionEncoding):
    """A trained table ``[max_len, C]`` added to the embeddings (GPT-2); positions must be < ``max_len``."""

    def __init__(self, dims: Dims, init_std: float = 0.02) -> None:
        super().__init__()
        self.table = nn.Embedding(dims.max_len, dims.d_model)
        nn.init.normal_(self.table.weight, std=init_std)

    def embed(self, x: torch.Tensor, positions: torch.Tensor | int) -> torch.Tensor:
        pos = positions_tensor(positions, x.shape[-2], x.device)
        n = self.table.num_embeddings
        if pos.numel() and int(pos.max()) >= n:
            raise ValueError(
                f"learned positions cover 0..{n - 1} (max_len={n}) but got position {int(pos.max())}; "
                f"build the model with a larger max_len or use a relative encoding"
            )
        return x + self.table(pos)  # [T, C] or [B, T, C] broadcast over B


def alibi_slopes(n_heads: int) -> torch.Tensor:
    """``[H]`` ALiBi slopes (Press et al. 2022): ``2^(-8h/n)`` for the nearest power of two ``n <= H``; for other
    ``H`` the odd-indexed slopes of ``2n`` heads fill the rest (the paper's recipe)."""
    n = 2 ** math.floor(math.log2(n_heads))
    slopes = [2.0 ** (-8.0 * (h + 1) / n) for h in range(n)]
    extra = [2.0 ** (-8.0 * (h + 1) / (2 * n)) for h in range(0, 2 * n, 2)][: n_heads - n]
    return torch.tensor(slopes + extra, dtype=torch.float32)


@register_position_encoding("alibi")
class ALiBi(PositionEncoding):
    """Linear distance bias ``-slope_h * |i - j|`` added to the logits (causal decoders see only ``j <= i``)."""

    slopes: torch.Tensor

    def __init__(self, dims: Dims) -> None:
        super().__init__()
        self.register_buffer("slopes", alibi_slopes(dims.n_heads), persistent=False)

    def bias(self, q_positions: torch.Tensor, k_positions: torch.Tensor) -> torch.Tensor:
        dist = (q_positions.unsqueeze(-1) - k_positions.unsqueeze(-2)).abs().float()  # [Tq, Tk] or [B, Tq, Tk]
        if dist.dim() == 2:
            dist = dist.unsqueeze(0)  # [1, Tq, Tk]
        return -self.slopes.view(1, -1, 1, 1) * dist.unsqueeze(1)  # [1 or B, H, Tq, Tk]


@register_position_encoding("rope")
class RoPE(PositionEncoding):
    """Rotary embedding with any Hugging Face ``rope_parameters`` (``ropekit.RotaryEmbedding``).

    ``interleaved``: pair ``(x[2j], x[2j+1])`` (GPT-J, RoFormer) instead of the half layout (HF Llama, NeoX).
    """

    def __init__(
        self,
        dims: Dims,
        rope_parameters: Mapping[str, Any] | None = None,
        interleaved: bool = False,
        max_position_embeddings: int | None = None,
    ) -> None:
        super().__init__()
        _check_flag("interleaved", interleaved)
        self.rotary = RotaryEmbedding(
            dims.head_dim,
            rope_parameters,
            interleaved=interleaved,
            max_position_embeddings=max_position_embeddings or dims.max_len,
        )

    def rotate(
        self, q: torch.Tensor, k: torch.Tensor, positions: torch.Tensor | int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        return self.rotary(q, k, positions)


def _pair_to_features(t: torch.Tensor, interleaved: bool) -> torch.Tensor:
    """Per-pair values ``[..., r]`` -> per-feature ``[..., 2r]`` in the given layout."""
    return t.repeat_interleave(2, dim=-1) if interleaved else torch.cat((t, t), dim=-1)


class _TableRotary(PositionEncoding):
    """Shared code of rotary kinds that build cos/sin themselves and call ``ropekit.apply_rotary_qk``."""

    interleaved = False

    def angles_cos_sin(self, pos: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError

    def rotate(
        self, q: torch.Tensor, k: torch.Tensor, positions: torch.Tensor | int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        pos = positions_tensor(positions, q.shape[-2], q.device)
        cos, sin = self.angles_cos_sin(pos)  # [T, r] or [B, T, r]
        if cos.dim() == 3:
            cos, sin = cos.unsqueeze(1), sin.unsqueeze(1)  # [B, 1, T, r]: broadcast over heads
        return apply_rotary_qk(q, k, cos, sin, interleaved=self.interleaved)


@register_position_encoding("prope")
class PRoPE(RoPE):
    """p-RoPE (Barbero et al. 2024): only the highest-frequency fraction ``p`` of pairs rotates; the rest get
    frequency 0 (identity). ``p=1`` is RoPE; for ``p=0`` (no rotation at all) use ``pe="none"``.

    This is the ``proportional`` scaling type (Gemma) with ``partial_rotary_factor=p``: pairs
    ``j < floor(p * head_dim / 2)`` keep RoPE's frequency over the whole head, the others are 0.
    """

    def __init__(self, dims: Dims, p: float = 0.75, rope_theta: float = 10_000.0, interleaved: bool = False) -> None:
        if isinstance(p, bool) or not (isinstance(p, (int, float)) and 0.0 < p <= 1.0):
            raise ValueError(
                f"p-RoPE needs 0 < p <= 1 (fraction of pairs that rotate), got p={p!r}; p=0 is pe='none'"
            )
        params = {"rope_type": "proportional", "partial_rotary_factor": float(p), "rope_theta": rope_theta}
        super().__init__(dims, params, interleaved=interleaved)
        self.p = p

    @property
    def inv_freq(self) -> torch.Tensor:
        """``[head_dim/2]``: RoPE's frequencies for the rotating pairs, 0 for the others."""
        return self.rotary.inv_freq


@register_position_encoding("xpos")
class XPos(_TableRotary):
    """xPos (Sun et al. 2022): RoPE with ``q * zeta_j^(n/B)`` and ``k * zeta_j^(-n/B)``,
    ``zeta_j = (2j/d + 0.4) / 1.4`` for pair ``j`` of ``d = head_dim``; logits decay with distance.

    Range: the scales are float32 powers of ``zeta_0 = 0.4/1.4``; ``q * scale`` underflows (and ``k / scale``
    nears overflow) past about ``n = 70 * scale_base`` (36k positions for ``B = 512``), with precision degrading
    before that: raise ``scale_base`` for longer sequences."""

    inv_freq: torch.Tensor
    zeta: torch.Tensor

    def __init__(
        self, dims: Dims, scale_base: float = 512.0, rope_theta: float = 10_000.0, interleaved: bool = False
    ) -> None:
        super().__init__()
        _check_flag("interleaved", interleaved)
        _check_positive("xpos scale_base", scale_base)
        inv_freq, _ = rope_frequencies({"rope_type": "default", "rope_theta": rope_theta}, head_dim=dims.head_dim)
        r = inv_freq.numel()
        zeta = (2.0 * torch.arange(r, dtype=torch.float32) / (2 * r) + 0.4) / 1.4  # [r]
        self.scale_base, self.interleaved = scale_base, interleaved
        self.register_buffer("inv_freq", inv_freq, persistent=False)
        self.register_buffer("zeta", zeta, persistent=False)

    def angles_cos_sin(self, pos: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return rope_cos_sin(self.inv_freq, pos)

    def rotate(
        self, q: torch.Tensor, k: torch.Tensor, positions: torch.Tensor | int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        pos = positions_tensor(positions, q.shape[-2], q.device)
        # scale in float32: zeta^(n/B) for n in the thousands stays well inside the float32 range
        scale = self.zeta ** (pos.float().unsqueeze(-1) / self.scale_base)  # [T, r] or [B, T, r]
        scale = _pair_to_features(scale, self.interleaved)  # [T, D] or [B, T, D]
        if scale.dim() == 3:
            scale = scale.unsqueeze(1)  # [B, 1, T, D]
        q = (q.float() * scale).to(q.dtype)
        k = (k.float() / scale).to(k.dtype)
        return super().rotate(q, k, positions)


@register_position_encoding("learned_freq")
class LearnedFrequencies(_TableRotary):
    """RoPE whose frequencies are trained (one set shared by all heads, stored as ``log inv_freq``)."""

    def __init__(self, dims: Dims, rope_theta: float = 10_000.0, interleaved: bool = False) -> None:
        super().__init__()
        _check_flag("interleaved", interleaved)
        inv_freq, _ = rope_frequencies({"rope_type": "default", "rope_theta": rope_theta}, head_dim=dims.head_dim)
        self.log_inv_freq = nn.Parameter(inv_freq.log())
        self.interleaved = interleaved

    def angles_cos_sin(self, pos: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        # float32 angles so gradients reach the frequencies; fine at training lengths (error ~1e-4 at 4k)
        angles = pos.float().unsqueeze(-1) * self.log_inv_freq.exp()  # [T, r] or [B, T, r]
        return angles.cos(), angles.sin()


@register_position_encoding("receptive")
class ReceptiveField(_TableRotary):
    """Receptive-field RoPE (docs/training.md): ``theta*_j = alpha / 10000^rho + (1 - alpha) * theta_j``.

    ``alpha`` is learned through a sigmoid (stays in (0, 1)); ``rho`` is learned when ``learn_rho``. The extra
    shared frequency ``phi = alpha / 10000^rho`` modulates every pair: large ``phi`` concentrates attention near
    the diagonal, small ``phi`` flattens it.
    """

    inv_freq: torch.Tensor

    def __init__(
        self,
        dims: Dims,
        alpha: float = 0.1,
        rho: float = 0.5,
        learn_rho: bool = True,
        rope_theta: float = 10_000.0,
        interleaved: bool = False,
    ) -> None:
        super().__init__()
        _check_flag("interleaved", interleaved)
        _check_flag("learn_rho", learn_rho)
        if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not 0.0 < alpha < 1.0:
            raise ValueError(f"receptive-field RoPE needs 0 < alpha < 1 (initial mixing weight), got {alpha}")
        inv_freq, _ = rope_frequencies({"rope_type": "default", "rope_theta": rope_theta}, head_dim=dims.head_dim)
        self.register_buffer("inv_freq", inv_freq, persistent=False)
        self.alpha_logit = nn.Parameter(torch.tensor(math.log(alpha / (1.0 - alpha))))
        self.rho = nn.Parameter(torch.tensor(float(rho)), requires_grad=learn_rho)
        self.interleaved = interleaved

    @property
    def alpha(self) -> torch.Tensor:
        return torch.sigmoid(self.alpha_logit)

    def frequencies(self) -> torch.Tensor:
        """``theta*: [r]``, differentiable in ``alpha`` and ``rho``."""
        alpha = self.alpha
        phi = alpha * torch.pow(torch.tensor(10_000.0, device=alpha.device), -self.rho)
        return phi + (1.0 - alpha) * self.inv_freq

    def angles_cos_sin(self, pos: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        angles = pos.float().unsqueeze(-1) * self.frequencies()  # [T, r] or [B, T, r], float32 as above
        return angles.cos(), angles.sin()


@register_position_encoding("fope")
class FoPE(PositionEncoding):
    """FoPE (Hua et al. 2025): :class:`ropekit.fope.FourierRotaryEmbedding`, coefficients trained with the model.

    ``num_key_value_heads`` must equal the model's key/value heads (default ``n_heads``; pass it for a
    grouped-query model); the floor uses ``max_position_embeddings`` (default ``max_len``, the training length).
    ``fope_init_factor`` defaults to 0.1 here (coefficients start near, not at, the identity)."""

    def __init__(
        self,
        dims: Dims,
        rope_theta: float = 10_000.0,
        num_inv_freq: int | None = None,
        fope_sep_head: bool = True,
        fope_init_factor: float = 0.1,
        num_key_value_heads: int | None = None,
        max_position_embeddings: int | None = None,
    ) -> None:
        super().__init__()
        _check_positive("rope_theta", rope_theta)
        self.rotary = FourierRotaryEmbedding(
            dims.head_dim,
            dims.n_heads if num_key_value_heads is None else num_key_value_heads,
            dims.max_len if max_position_embeddings is None else max_position_embeddings,
            rope_theta=rope_theta,
            num_inv_freq=num_inv_freq,
            fope_sep_head=fope_sep_head,
            fope_init_factor=fope_init_factor,
        )

    def rotate(
        self, q: torch.Tensor, k: torch.Tensor, positions: torch.Tensor | int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        return self.rotary(q, k, positions_tensor(positions, q.shape[-2], q.device))


@register_position_encoding("pope")
class PoPE(PositionEncoding):
    """PoPE (Gopalakrishnan et al. 2025, :mod:`ropekit.pope`) through the ``rotate`` hook:
    ``q, k: [B, H, T, D] -> [B, H, T, 2D]`` polar features (values stay ``D``; the KV cache holds the ``2D`` keys).
    ``q`` is multiplied by ``sqrt(2)`` so the attention's ``1/sqrt(2D)`` scale acts as the paper's ``1/sqrt(D)``."""

    def __init__(self, dims: Dims, base: float = 10_000.0, bias_uniform_init: bool = False) -> None:
        super().__init__()
        self.polar = PolarEmbedding(dims.head_dim, dims.n_heads, base=base, bias_uniform_init=bias_uniform_init)

    def rotate(
        self, q: torch.Tensor, k: torch.Tensor, positions: torch.Tensor | int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        qp, kp = self.polar(q, k, positions_tensor(positions, q.shape[-2], q.device))
        return qp * math.sqrt(2.0), kp


def normalise_position_spec(spec: str | Mapping[str, Any] | None) -> dict[str, Any]:
    """A spec as a plain dict ``{"kind": ..., **options}``; resolves the RoPE aliases (``"yarn"`` etc.)."""
    if spec is None:
        spec = "rope"
    out: dict[str, Any] = {"kind": spec} if isinstance(spec, str) else dict(spec)
    if "kind" not in out:
        raise ValueError(f"position spec {dict(out)} has no 'kind'; expected e.g. {{'kind': 'rope'}}")
    kind = out["kind"]
    if kind in ROPE_ALIASES:
        params = dict(out.get("rope_parameters") or {})
        params.setdefault("rope_type", ROPE_ALIASES[kind])  # other keys (factor, ...) are checked by ropekit
        out = {**out, "kind": "rope", "rope_parameters": params}
    elif kind not in POSITION_ENCODINGS:
        close = difflib.get_close_matches(str(kind), [*POSITION_ENCODINGS, *ROPE_ALIASES], n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise ValueError(
            f"unknown position encoding {kind!r}{hint} (known: {', '.join([*POSITION_ENCODINGS, *ROPE_ALIASES])})"
        )
    return out


def _option_names(cls: type[PositionEncoding]) -> list[str]:
    """The keyword options an encoding's constructor takes after ``dims`` (its signature is their one home)."""
    import inspect

    params = list(inspect.signature(cls.__init__).parameters.values())[2:]  # past self, dims
    return [p.name for p in params if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)]


def build_position_encoding(spec: str | Mapping[str, Any] | None, dims: Dims) -> PositionEncoding:
    """Build the encoding named by ``spec`` (see the module docstring) for a model of size ``dims``."""
    options = normalise_position_spec(spec)
    kind = options.pop("kind")
    random_max = options.pop("random_max", None)
    cls = POSITION_ENCODINGS[kind]
    valid = _option_names(cls)
    unknown = sorted(set(options) - set(valid))
    if unknown:
        raise ValueError(
            f"unknown option(s) {unknown} for position encoding {kind!r}; valid options: {[*valid, 'random_max']}"
        )
    pe = cls(dims, **options)
    if random_max is not None:
        if not isinstance(random_max, int) or isinstance(random_max, bool) or random_max < 1:
            raise ValueError(f"random_max must be a positive integer length, got {random_max!r}")
        pe.random_max = random_max
    return pe
