"""Three small pre-norm transformers sharing one block: decoder LM, encoder classifier, encoder-decoder.

Legend: ``ids: [B, T]`` int64 tokens, ``x: [B, T, C]`` hidden states (``C = d_model``), ``logits: [B, T, V]``
(``V = vocab_size``) or ``[B, K]`` (``K = n_classes``), ``lengths: [B]`` real tokens per row (right padding),
``positions``: ``None`` (default ``0..T-1``, or ``cache.length..`` when decoding), an int offset, or int64
``[T]``/``[B, T]``.

API::

    cfg = ModelConfig(task="lm", vocab_size=261, d_model=64, n_heads=4, n_layers=2, max_len=256,
                      pe={"kind": "rope", "rope_parameters": {"rope_type": "yarn", "factor": 4.0}})
    model = build_model(cfg)                  # DecoderLM | EncoderClassifier | Seq2Seq
    logits = model(ids)                       # [B, T, V]
    out = model.generate(ids, 32, top_k=1)    # [B, T + 32], KV-cached

``pe`` is the position encoding spec of :mod:`ropekit.models.positions`; ``layers`` an optional per-layer scheme
(:class:`LayerPattern`: NoPE layers, Llama 4 iRoPE, Gemma 3 local/global layers); the config is JSON-friendly
(``to_dict``/``from_dict``), which is what checkpoints store.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ropekit.models.attention import Attention, KVCache, LayerCache
from ropekit.models.positions import Dims, PositionEncoding, build_position_encoding, normalise_position_spec
from ropekit.models.positions import random_positions as _random_positions

__all__ = [
    "TASKS",
    "Block",
    "DecoderLM",
    "EncoderClassifier",
    "LayerPattern",
    "ModelConfig",
    "Seq2Seq",
    "build_model",
]

TASKS = ("lm", "classify", "seq2seq")


_PATTERN_KEYS = (
    "nope_layers",
    "nope_every",
    "use_rope",
    "attn_temperature_tuning",
    "floor_scale",
    "attn_scale",
    "local_layers",
    "sliding_window_pattern",
    "layer_types",
    "sliding_window",
    "local_rope_theta",
)


@dataclass(frozen=True)
class LayerPattern:
    """Which layers rotate and how: the per-layer schemes of recent models, read from a ``layers`` spec dict.

    NoPE layers (no position encoding in their attention): ``nope_layers`` (indices), ``nope_every=k`` (layer i is
    NoPE iff ``(i + 1) % k == 0``: Llama 4 iRoPE, transformers' ``no_rope_layer_interval``) or ``use_rope`` (one
    0/1 flag per layer, 1 = RoPE: the ``no_rope_layers`` lists of Llama 4 and SmolLM3 configs).
    ``attn_temperature_tuning`` (with ``floor_scale``, default 8192, and ``attn_scale``, default 0.1): Llama 4's
    query temperature on the NoPE layers (see :class:`~ropekit.models.attention.Attention`).
    A NoPE layer gets neither the rotation nor the attention bias of ``pe``; an encoding added to the token
    embeddings (learned, sinusoidal) is added once at the input, as before. With ``seq2seq`` the pattern applies to
    the encoder and the decoder alike; local layers only to the (causal) decoder.
    Local layers (causal sliding window of ``sliding_window`` tokens, decoder only): ``local_layers`` (indices),
    ``sliding_window_pattern=k`` (layer i is local iff ``(i + 1) % k != 0``: Gemma 3) or ``layer_types`` (one
    ``"sliding_attention"`` / ``"full_attention"`` per layer); ``local_rope_theta`` gives them their own RoPE base
    (Gemma 3 ``rope_local_base_freq``; needs ``pe`` kind ``rope``). Defaults follow transformers'
    ``Llama4TextConfig`` and ``Gemma3TextConfig``.
    """

    n_layers: int
    nope_layers: tuple[int, ...] = ()
    local_layers: tuple[int, ...] = ()
    sliding_window: int | None = None
    local_rope_theta: float | None = None
    temperature: tuple[float, float] | None = None

    @classmethod
    def from_spec(cls, spec: dict[str, Any] | None, n_layers: int) -> LayerPattern:
        """Parse a ``layers`` spec (see the class doc) for ``n_layers`` layers; unknown keys raise."""
        spec = dict(spec or {})
        unknown = [k for k in spec if k not in _PATTERN_KEYS]
        if unknown:
            close = difflib.get_close_matches(unknown[0], _PATTERN_KEYS, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else f"; valid keys: {list(_PATTERN_KEYS)}"
            raise ValueError(f"unknown layers key(s) {unknown}{hint}")
        nope = _layer_set(spec, n_layers, ("nope_layers", "nope_every", "use_rope"), "nope")
        local = _layer_set(spec, n_layers, ("local_layers", "sliding_window_pattern", "layer_types"), "local")
        window = spec.get("sliding_window")
        if local and (isinstance(window, bool) or not isinstance(window, int) or window < 1):
            raise ValueError(f"local layers need sliding_window, a positive int of tokens, got {window!r}")
        if not local and window is not None:
            raise ValueError("sliding_window is set but no layer is local: add local_layers or sliding_window_pattern")
        theta = spec.get("local_rope_theta")
        if theta is not None and (not isinstance(theta, (int, float)) or not math.isfinite(theta) or theta <= 1):
            raise ValueError(f"local_rope_theta must be a finite number > 1, got {theta!r}")
        if theta is not None and not local:
            raise ValueError(
                "local_rope_theta is set but no layer is local: add local_layers or sliding_window_pattern"
            )
        tuning = spec.get("attn_temperature_tuning")
        if tuning is not None and not isinstance(tuning, bool):
            raise ValueError(f"attn_temperature_tuning must be a bool, got {tuning!r}")
        if not tuning and ("floor_scale" in spec or "attn_scale" in spec):
            raise ValueError("floor_scale / attn_scale only act with attn_temperature_tuning=True: set it or drop them")
        if tuning and not nope:
            raise ValueError(
                "attn_temperature_tuning scales the NoPE layers' queries, but no layer is NoPE: "
                "add nope_layers, nope_every or use_rope"
            )
        temperature = None
        if tuning:
            floor_scale, attn_scale = spec.get("floor_scale", 8192), spec.get("attn_scale", 0.1)
            if isinstance(floor_scale, bool) or not isinstance(floor_scale, (int, float)) or not floor_scale > 0:
                raise ValueError(f"floor_scale must be a positive number, got {floor_scale!r}")
            if not isinstance(attn_scale, (int, float)) or not math.isfinite(attn_scale):
                raise ValueError(f"attn_scale must be a finite number, got {attn_scale!r}")
            temperature = (float(floor_scale), float(attn_scale))
        return cls(n_layers, nope, local, window if local else None, theta, temperature)

    def uses_rope(self, i: int) -> bool:
        return i not in self.nope_layers


def _layer_set(spec: dict[str, Any], n: int, keys: tuple[str, str, str], what: str) -> tuple[int, ...]:
    given = [k for k in keys if spec.get(k) is not None]
    if len(given) > 1:
        raise ValueError(f"give the {what} layers one way, got {given}; keep one of {list(keys)}")
    if not given:
        return ()
    key, value = given[0], spec[given[0]]
    if key == keys[1]:  # every k-th
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{key} must be a positive int, got {value!r}")
        hit = [(i + 1) % value == 0 for i in range(n)] if what == "nope" else [(i + 1) % value != 0 for i in range(n)]
        return tuple(i for i in range(n) if hit[i])
    if not isinstance(value, (list, tuple)):
        raise ValueError(f"{key} must be a list, got {type(value).__name__}")
    if key == keys[2]:  # one flag / type per layer
        if len(value) != n:
            raise ValueError(f"{key} must have one entry per layer ({n}), got {len(value)}")
        allowed = (0, 1) if what == "nope" else ("sliding_attention", "full_attention")
        bad = [v for v in value if v not in allowed]
        if bad:
            raise ValueError(f"{key} entries must be in {allowed}, got {bad[:3]}")
        flag = 0 if what == "nope" else "sliding_attention"
        return tuple(i for i, v in enumerate(value) if v == flag)
    if any(isinstance(i, bool) or not isinstance(i, int) or not 0 <= i < n for i in value) or len(set(value)) != len(
        value
    ):
        raise ValueError(f"{key} must be distinct layer indices in [0, {n}), got {list(value)}")
    return tuple(sorted(value))


@dataclass(frozen=True)
class ModelConfig:
    """Sizes, task and position encoding of a model (JSON-friendly).

    ``task``: ``lm`` (decoder), ``classify`` (encoder + mean pool + linear head), ``seq2seq`` (``n_layers``
    encoder and decoder layers). ``max_len`` sizes learned tables and the initial RoPE table (not a hard limit
    for relative kinds). ``d_ff`` defaults to ``4 * d_model``. ``layers``: per-layer position scheme, a dict read by
    :class:`LayerPattern` (``None`` or ``{}``: every layer uses ``pe``, the model of before, bit for bit), e.g.
    ``{"nope_every": 4, "attn_temperature_tuning": True}`` (Llama 4 iRoPE) or
    ``{"sliding_window_pattern": 6, "sliding_window": 512, "local_rope_theta": 10_000.0}`` (Gemma 3).
    """

    task: str = "lm"
    vocab_size: int = 261
    d_model: int = 64
    n_heads: int = 4
    n_layers: int = 2
    n_kv_heads: int | None = None
    d_ff: int | None = None
    max_len: int = 512
    dropout: float = 0.0
    n_classes: int = 2
    pe: dict[str, Any] = field(default_factory=lambda: {"kind": "rope"})
    init_std: float = 0.02
    layers: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        if self.task not in TASKS:
            raise ValueError(f"task must be one of {TASKS}, got {self.task!r}")
        for name in ("vocab_size", "d_model", "n_heads", "n_layers", "max_len", "n_classes"):
            _check_count(name, getattr(self, name))
        for name in ("n_kv_heads", "d_ff"):
            if getattr(self, name) is not None:
                _check_count(name, getattr(self, name))
        if self.n_classes < 2 and self.task == "classify":
            raise ValueError(f"n_classes must be >= 2 for a classifier, got {self.n_classes}")
        if self.n_kv_heads is not None and self.n_heads % self.n_kv_heads:
            raise ValueError(f"n_kv_heads={self.n_kv_heads} must divide n_heads={self.n_heads}")
        if isinstance(self.dropout, bool) or not isinstance(self.dropout, (int, float)) or not 0 <= self.dropout < 1:
            raise ValueError(f"dropout must be a number in [0, 1), got {self.dropout!r}")
        if self.d_model % self.n_heads:
            raise ValueError(f"d_model={self.d_model} must be divisible by n_heads={self.n_heads}")
        object.__setattr__(self, "pe", normalise_position_spec(self.pe))
        if self.layers is not None:
            if not isinstance(self.layers, dict):
                raise ValueError(
                    f"layers must be a dict such as {{'nope_every': 4}} or None, got {type(self.layers).__name__}"
                )
            # JSON form (tuples as lists), so a config equals itself after to_dict -> JSON -> from_dict
            object.__setattr__(
                self, "layers", {k: list(v) if isinstance(v, tuple) else v for k, v in self.layers.items()}
            )
        pattern = self.layer_pattern()  # validates
        if pattern.local_layers and self.task == "classify":
            raise ValueError("local (sliding-window) layers are causal: use them with task 'lm' or 'seq2seq'")
        if pattern.local_rope_theta is not None and self.pe.get("kind") != "rope":
            raise ValueError(f"local_rope_theta needs pe kind 'rope', got {self.pe.get('kind')!r}")

    def layer_pattern(self) -> LayerPattern:
        """The parsed per-layer scheme (all layers alike when ``layers`` is None)."""
        return LayerPattern.from_spec(self.layers, self.n_layers)

    @property
    def head_dim(self) -> int:
        return self.d_model // self.n_heads

    def dims(self) -> Dims:
        return Dims(self.d_model, self.n_heads, self.head_dim, self.max_len)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelConfig:
        names = [f.name for f in dataclasses.fields(cls)]
        unknown = [k for k in data if k not in names]
        if unknown:
            close = difflib.get_close_matches(unknown[0], names, n=1)
            raise ValueError(
                f"unknown model config key(s) {unknown}"
                + (f"; did you mean {close[0]!r}?" if close else f"; valid keys: {names}")
            )
        return cls(**data)


def _check_count(name: str, value: Any) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")


class Block(nn.Module):
    """Pre-norm block: self-attention, optional cross-attention, GELU MLP, each with a residual."""

    def __init__(
        self,
        cfg: ModelConfig,
        *,
        causal: bool,
        cross: bool = False,
        window: int | None = None,
        temperature: tuple[float, float] | None = None,
    ) -> None:
        super().__init__()
        C = cfg.d_model
        self.norm1 = nn.LayerNorm(C)
        self.attn = Attention(
            C, cfg.n_heads, cfg.n_kv_heads, causal=causal, dropout=cfg.dropout, window=window, temperature=temperature
        )
        self.cross = None
        if cross:
            self.norm_x = nn.LayerNorm(C)
            self.cross = Attention(C, cfg.n_heads, cfg.n_kv_heads, cross=True, dropout=cfg.dropout)
        self.norm2 = nn.LayerNorm(C)
        self.mlp = nn.Sequential(nn.Linear(C, cfg.d_ff or 4 * C), nn.GELU(), nn.Linear(cfg.d_ff or 4 * C, C))
        self.drop = nn.Dropout(cfg.dropout)

    def forward(
        self,
        x: torch.Tensor,
        pe: PositionEncoding | None,
        positions: torch.Tensor | int,
        *,
        key_mask: torch.Tensor | None = None,
        memory: torch.Tensor | None = None,
        memory_mask: torch.Tensor | None = None,
        cache: LayerCache | None = None,
    ) -> torch.Tensor:
        """``x: [B, T, C]`` -> ``[B, T, C]``."""
        x = x + self.drop(self.attn(self.norm1(x), pe, positions, key_mask=key_mask, cache=cache))
        if self.cross is not None:
            x = x + self.drop(self.cross(self.norm_x(x), memory=memory, key_mask=memory_mask, cache=cache))
        return x + self.drop(self.mlp(self.norm2(x)))


def _init_weights(module: nn.Module, n_layers: int, init_std: float = 0.02) -> None:
    """Normal(0, ``init_std``) weights (GPT-2), residual outputs scaled by ``1 / sqrt(2 n_layers)``."""
    for name, p in module.named_parameters():
        if p.dim() == 2 and ("proj" in name or "mlp" in name or "embed" in name or "head" in name):
            std = init_std / math.sqrt(2 * n_layers) if name.endswith(("o_proj.weight", "mlp.2.weight")) else init_std
            nn.init.normal_(p, std=std)
        elif name.endswith("bias") and ("mlp" in name or "head" in name):
            nn.init.zeros_(p)


class _Stack(nn.Module):
    """Position encoding -> blocks -> final norm on token embeddings, shared by all three models."""

    def __init__(self, cfg: ModelConfig, *, causal: bool, cross: bool = False) -> None:
        super().__init__()
        self.pe = build_position_encoding(cfg.pe, cfg.dims())
        pattern = cfg.layer_pattern()
        self.pe_local: PositionEncoding | None = None
        if pattern.local_rope_theta is not None:
            params = {**(cfg.pe.get("rope_parameters") or {}), "rope_type": "default"}
            params = {k: v for k, v in params.items() if k in ("rope_type", "partial_rotary_factor")}
            local = {**cfg.pe, "rope_parameters": {**params, "rope_theta": pattern.local_rope_theta}}
            self.pe_local = build_position_encoding(local, cfg.dims())  # Gemma 3: local layers unscaled
        blocks = []
        self.layer_pe: list[str] = []  # per layer: "global", "local" or "none"
        for i in range(cfg.n_layers):
            local_i = causal and i in pattern.local_layers
            nope = not pattern.uses_rope(i)
            temperature = pattern.temperature if nope else None
            blocks.append(
                Block(
                    cfg,
                    causal=causal,
                    cross=cross,
                    window=pattern.sliding_window if local_i else None,
                    temperature=temperature,
                )
            )
            self.layer_pe.append("none" if nope else "local" if local_i and self.pe_local is not None else "global")
        self.blocks = nn.ModuleList(blocks)
        self.norm = nn.LayerNorm(cfg.d_model)
        self.drop = nn.Dropout(cfg.dropout)

    def layer_encoding(self, i: int) -> PositionEncoding | None:
        """The position encoding layer ``i``'s self-attention uses: the model's, the local layers' own RoPE, or
        ``None`` for a NoPE layer (pass it to ``Attention.logits`` when measuring one layer)."""
        return {"global": self.pe, "local": self.pe_local, "none": None}[self.layer_pe[i]]

    def resolve_positions(
        self, ids: torch.Tensor, positions: torch.Tensor | int | None, offset: int
    ) -> torch.Tensor | int:
        """Explicit positions win; else random ones while training with ``random_max``; else ``offset``."""
        if positions is not None:
            if isinstance(positions, torch.Tensor) and positions.shape[-1] != ids.shape[-1]:
                raise ValueError(f"positions has {positions.shape[-1]} entries but ids has T={ids.shape[-1]} tokens")
            return positions
        if self.training and self.pe.random_max is not None and offset == 0:
            return _random_positions(ids.shape[0], ids.shape[1], self.pe.random_max).to(ids.device)  # [B, T]
        return offset

    def forward(
        self,
        x: torch.Tensor,
        positions: torch.Tensor | int | None = None,
        *,
        key_mask: torch.Tensor | None = None,
        memory: torch.Tensor | None = None,
        memory_mask: torch.Tensor | None = None,
        cache: KVCache | None = None,
    ) -> torch.Tensor:
        """Token embeddings ``x: [B, T, C]`` -> normalised hidden states ``[B, T, C]``."""
        offset = cache.length if cache is not None else 0
        pos = self.resolve_positions(x[..., 0], positions, offset)
        x = self.drop(self.pe.embed(x, pos))  # [B, T, C]
        for i, block in enumerate(self.blocks):
            layer_cache = cache.layers[i] if cache is not None else None
            pe = self.layer_encoding(i)
            x = block(x, pe, pos, key_mask=key_mask, memory=memory, memory_mask=memory_mask, cache=layer_cache)
        if cache is not None:
            cache.length += x.shape[1]
        return self.norm(x)


def _check_ids(ids: torch.Tensor, vocab_size: int) -> None:
    if ids.dim() != 2 or ids.dtype != torch.int64:
        raise ValueError(f"ids must be int64 [B, T], got {ids.dtype} {tuple(ids.shape)}")
    if ids.numel() and (int(ids.min()) < 0 or int(ids.max()) >= vocab_size):
        raise ValueError(f"token ids must be in [0, {vocab_size}), got range [{int(ids.min())}, {int(ids.max())}]")


def _sample(
    logits: torch.Tensor, temperature: float, top_k: int | None, generator: torch.Generator | None
) -> torch.Tensor:
    """``logits: [B, V]`` -> next ids ``[B, 1]``; ``temperature == 0`` or ``top_k == 1`` is greedy."""
    if temperature == 0 or top_k == 1:
        return logits.argmax(-1, keepdim=True)
    logits = logits.float() / temperature
    if top_k is not None:
        kth = logits.topk(top_k, dim=-1).values[:, -1:]  # [B, 1]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    return torch.multinomial(logits.softmax(-1), 1, generator=generator)


class DecoderLM(nn.Module):
    """Decoder-only language model (causal self-attention, tied input/output embedding)."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.config = cfg
        self.embed = nn.Embedding(cfg.vocab_size, cfg.d_model)
        self.decoder = _Stack(cfg, causal=True)
        _init_weights(self, cfg.n_layers, cfg.init_std)

    def new_cache(self) -> KVCache:
        return KVCache.empty(len(self.decoder.blocks))

    def forward(
        self, ids: torch.Tensor, positions: torch.Tensor | int | None = None, *, cache: KVCache | None = None
    ) -> torch.Tensor:
        """``ids: [B, T]`` -> ``logits: [B, T, V]``; with ``cache`` the tokens continue the cached ones."""
        _check_ids(ids, self.config.vocab_size)
        h = self.decoder(self.embed(ids), positions, cache=cache)
        return F.linear(h, self.embed.weight)  # tied head: no duplicated tensor in checkpoints

    @torch.no_grad()
    def generate(
        self,
        ids: torch.Tensor,
        max_new_tokens: int,
        *,
        temperature: float = 1.0,
        top_k: int | None = None,
        eos_id: int | None = None,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """Continue ``ids: [B, T]`` by up to ``max_new_tokens`` tokens -> ``[B, T + n]`` (stops when every row
        has produced ``eos_id``). Uses the KV cache: one prefill pass, then one token per step."""
        cache = self.new_cache()
        logits = self(ids, cache=cache)[:, -1]  # [B, V]
        out, done = [ids], torch.zeros(ids.shape[0], dtype=torch.bool, device=ids.device)
        for _ in range(max_new_tokens):
            nxt = _sample(logits, temperature, top_k, generator)  # [B, 1]
            out.append(nxt)
            if eos_id is not None:
                done |= nxt.squeeze(-1) == eos_id
                if bool(done.all()):
                    break
            logits = self(nxt, cache=cache)[:, -1]
        return torch.cat(out, dim=1)


def lengths_to_mask(lengths: torch.Tensor | None, T: int, device: torch.device) -> torch.Tensor | None:
    """``lengths: [B]`` -> ``[B, T]`` bool, True for real tokens (right padding)."""
    if lengths is None:
        return None
    return torch.arange(T, device=device) < lengths.to(device).unsqueeze(-1)


class EncoderClassifier(nn.Module):
    """Bidirectional encoder, mean-pooled over real tokens, then a linear head to ``n_classes``."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.config = cfg
        self.embed = nn.Embedding(cfg.vocab_size, cfg.d_model)
        self.encoder = _Stack(cfg, causal=False)
        self.head = nn.Linear(cfg.d_model, cfg.n_classes)
        _init_weights(self, cfg.n_layers, cfg.init_std)

    def forward(
        self, ids: torch.Tensor, lengths: torch.Tensor | None = None, positions: torch.Tensor | int | None = None
    ) -> torch.Tensor:
        """``ids: [B, T]``, ``lengths: [B]`` -> ``logits: [B, K]``."""
        _check_ids(ids, self.config.vocab_size)
        mask = lengths_to_mask(lengths, ids.shape[1], ids.device)  # [B, T] or None
        h = self.encoder(self.embed(ids), positions, key_mask=mask)  # [B, T, C]
        if mask is None:
            pooled = h.mean(1)
        else:
            w = mask.unsqueeze(-1).to(h.dtype)  # [B, T, 1]
            pooled = (h * w).sum(1) / w.sum(1).clamp(min=1.0)  # [B, C]
        return self.head(pooled)


class Seq2Seq(nn.Module):
    """Encoder-decoder (the original Transformer layout, pre-norm): shared embedding, tied output head;
    position encoding in both self-attentions, none in cross-attention."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.config = cfg
        self.embed = nn.Embedding(cfg.vocab_size, cfg.d_model)
        self.encoder = _Stack(cfg, causal=False)
        self.decoder = _Stack(cfg, causal=True, cross=True)
        _init_weights(self, cfg.n_layers, cfg.init_std)

    def new_cache(self) -> KVCache:
        return KVCache.empty(len(self.decoder.blocks))

    def encode(self, src: torch.Tensor, src_lengths: torch.Tensor | None = None) -> tuple[torch.Tensor, Any]:
        """``src: [B, S]`` -> ``(memory [B, S, C], memory_mask [B, S] or None)``."""
        _check_ids(src, self.config.vocab_size)
        mask = lengths_to_mask(src_lengths, src.shape[1], src.device)
        return self.encoder(self.embed(src), key_mask=mask), mask

    def forward(
        self,
        src: torch.Tensor,
        tgt: torch.Tensor,
        src_lengths: torch.Tensor | None = None,
        *,
        positions: torch.Tensor | int | None = None,
        cache: KVCache | None = None,
        memory: tuple[torch.Tensor, Any] | None = None,
    ) -> torch.Tensor:
        """``src: [B, S]``, ``tgt: [B, T]`` (decoder input, starting with bos) -> ``logits: [B, T, V]``.
        Pass ``memory=self.encode(...)`` to reuse an encoding (generation does)."""
        _check_ids(tgt, self.config.vocab_size)
        mem, mem_mask = memory if memory is not None else self.encode(src, src_lengths)
        h = self.decoder(self.embed(tgt), positions, memory=mem, memory_mask=mem_mask, cache=cache)
        return F.linear(h, self.embed.weight)

    @torch.no_grad()
    def generate(
        self,
        src: torch.Tensor,
        max_new_tokens: int,
        *,
        bos_id: int,
        eos_id: int | None = None,
        src_lengths: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Greedy decoding -> ``[B, 1 + n]`` starting with ``bos_id`` (KV-cached)."""
        memory = self.encode(src, src_lengths)
        cache = self.new_cache()
        out = torch.full((src.shape[0], 1), bos_id, dtype=torch.int64, device=src.device)
        nxt, done = out, torch.zeros(src.shape[0], dtype=torch.bool, device=src.device)
        for _ in range(max_new_tokens):
            logits = self(src, nxt, cache=cache, memory=memory)[:, -1]  # [B, V]
            nxt = logits.argmax(-1, keepdim=True)
            out = torch.cat((out, nxt), dim=1)
            if eos_id is not None:
                done |= nxt.squeeze(-1) == eos_id
                if bool(done.all()):
                    break
        return out


_MODELS: dict[str, type[nn.Module]] = {"lm": DecoderLM, "classify": EncoderClassifier, "seq2seq": Seq2Seq}


def build_model(cfg: ModelConfig | dict[str, Any]) -> DecoderLM | EncoderClassifier | Seq2Seq:
    """The model for ``cfg.task`` (a :class:`ModelConfig` or its dict)."""
    if isinstance(cfg, dict):
        cfg = ModelConfig.from_dict(cfg)
    return _MODELS[cfg.task](cfg)  # type: ignore[return-value]
