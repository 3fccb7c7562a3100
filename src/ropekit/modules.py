"""Module tier: ``nn.Module``s that hold tables as buffers and call the functional tier.

Legend: ``q: [B, Hq, T, D]``, ``k: [B, Hk, T, D]``, ``positions: [T]`` or ``[B, T]`` integer,
``cos, sin: [T, r]`` or ``[B, 1, T, r]`` with ``r = rotary_dim / 2``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from ropekit.angles import check_positions
from ropekit.functional import apply_rotary_qk, rope_angles, rope_cos_sin
from ropekit.scaling import RopeSpec, parse_rope_parameters, rope_frequencies, rotary_dim_of, scaling_state

__all__ = ["MAX_TABLE_ROWS", "RotaryEmbedding", "SinusoidalPositionalEncoding", "sinusoidal_table"]

_DEFAULT_TABLE_LENGTH = 2048
# Longest table RotaryEmbedding keeps (2**20 rows: 256 MiB of cos + sin at rotary_dim 128). An offset past it gets
# its rows computed from the positions directly, with the same precision, instead of a table of offset + T rows.
MAX_TABLE_ROWS = 1 << 20


class RotaryEmbedding(nn.Module):
    """Rotary position embedding for q and k, with any Hugging Face ``rope_parameters``.

    Args:
        head_dim: features per head ``D``; ``rotary_dim = int(D * partial_rotary_factor)`` of them rotate.
        rope_parameters: Hugging Face ``rope_parameters`` mapping (``None``: default RoPE, base 10000).
        interleaved: pair ``(x[2j], x[2j+1])`` (GPT-J, RoFormer, Meta's Llama checkpoints) instead of
            ``(x[j], x[j+r])`` (Hugging Face Llama/Qwen/Mistral, GPT-NeoX).
        max_position_embeddings: the model's context length (needed by ``dynamic``; fallback length of
            YaRN/LongRoPE/Llama 3 as in transformers) and the initial table length.

    Tables: ``inv_freq: [r]`` and ``cos_table, sin_table: [L, r]`` are non-persistent float32 buffers,
    rebuilt when, and only when, what they depend on changes: a longer sequence than the table holds, a
    new scaling state (dynamic NTK's base, LongRoPE's short/long switch), a new device (e.g. after
    ``to_empty`` from the meta device), or a non-float32 dtype (``module.to(torch.bfloat16)`` would
    otherwise round the tables; they are always rebuilt in float32).

    Length-dependent types: the length that decides dynamic NTK's base and LongRoPE's factor set is
    ``seq_len`` when given, else the last position + 1 (``offset + T``, or ``positions.max() + 1``). It is a
    pure function of that length (transformers keeps a high-water mark instead; both agree while a
    sequence only grows, as in cached decoding). Keys cached under an older state are stale: re-rotate
    them or recompute them.
    """

    inv_freq: torch.Tensor
    cos_table: torch.Tensor
    sin_table: torch.Tensor

    def __init__(
        self,
        head_dim: int,
        rope_parameters: Mapping[str, Any] | RopeSpec | None = None,
        *,
        interleaved: bool = False,
        max_position_embeddings: int | None = None,
    ) -> None:
        super().__init__()
        spec = rope_parameters if isinstance(rope_parameters, RopeSpec) else parse_rope_parameters(rope_parameters)
        self.spec = spec
        self.head_dim = head_dim
        self.rotary_dim = rotary_dim_of(spec, head_dim)
        self.interleaved = bool(interleaved)
        self.max_position_embeddings = max_position_embeddings
        # validates the remaining combinations (e.g. longrope list lengths) at construction time
        inv_freq, attention_factor = rope_frequencies(
            spec, head_dim=head_dim, max_position_embeddings=max_position_embeddings
        )
        self.attention_factor = attention_factor
        self.register_buffer("inv_freq", inv_freq, persistent=False)
        length = max_position_embeddings or _DEFAULT_TABLE_LENGTH
        self.register_buffer("cos_table", torch.empty(0, inv_freq.numel()), persistent=False)
        self.register_buffer("sin_table", torch.empty(0, inv_freq.numel()), persistent=False)
        self._key: tuple[Any, ...] | None = None
        self._build(length, self._state_for(None))

    # ------------------------------------------------------------------ tables
    def _state_for(self, seq_len: int | None) -> int | None:
        """The scaling state of a sequence of length ``seq_len`` (``None`` for static types)."""
        return scaling_state(self.spec, seq_len, self.max_position_embeddings)

    def _build(self, length: int, state: int | None) -> None:
        device = self.inv_freq.device
        inv_freq, attention_factor = rope_frequencies(
            self.spec, head_dim=self.head_dim, max_position_embeddings=self.max_position_embeddings, seq_len=state
        )
        self.attention_factor = attention_factor
        self.inv_freq = inv_freq.to(device)
        positions = torch.arange(length, device=device)
        self.cos_table, self.sin_table = rope_cos_sin(self.inv_freq, positions, attention_factor=attention_factor)
        self._key = (length, state, device)

    def _ensure(self, needed: int, state: int | None) -> None:
        key = self._key
        fresh = (
            key is not None
            and key[1] == state
            and key[2] == self.inv_freq.device
            and self.inv_freq.dtype == torch.float32
            and self.cos_table.dtype == torch.float32
            and self.cos_table.device == self.inv_freq.device
        )
        if key is not None and fresh and needed <= key[0]:
            return
        length = key[0] if key is not None else needed
        if needed > length:
            length = min(max(needed, 2 * length), max(needed, MAX_TABLE_ROWS))  # amortised growth, capped
        self._build(length, state)

    # ------------------------------------------------------------------ public
    def frequencies(self, seq_len: int | None = None) -> tuple[torch.Tensor, float]:
        """``(inv_freq: [r] float32, attention_factor)`` in the scaling state of a sequence of length ``seq_len``.

        Static types ignore ``seq_len``. For dynamic NTK and LongRoPE it picks the state (the base, the
        short/long factor set) exactly as :meth:`cos_sin` does; :func:`ropekit.cache.rerotate` uses it to move
        cached keys from one state to another. Does not touch the module's tables.
        """
        if seq_len is not None and not (isinstance(seq_len, int) and not isinstance(seq_len, bool) and seq_len > 0):
            raise ValueError(f"seq_len must be a positive integer or None, got {seq_len!r}")
        state = self._state_for(seq_len)
        inv_freq, attention_factor = rope_frequencies(
            self.spec, head_dim=self.head_dim, max_position_embeddings=self.max_position_embeddings, seq_len=state
        )
        return inv_freq.to(self.inv_freq.device), attention_factor

    def cos_sin(
        self,
        T: int,
        positions: torch.Tensor | int | None = None,
        *,
        seq_len: int | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Tables for ``T`` tokens: ``[T, r]`` for ``None``/int offset, ``[T, r]`` or ``[B, 1, T, r]`` for
        tensor positions ``[T]`` / ``[B, T]`` (computed directly from positions, no table lookup)."""

        if isinstance(positions, bool):
            raise TypeError(f"positions must be None, an int offset or an integer tensor, got the bool {positions}")
        if positions is None or isinstance(positions, int):
            offset = positions or 0
            if offset < 0:
                raise ValueError(f"position offset must be >= 0, got {offset}")
            if offset + T <= MAX_TABLE_ROWS:
                state = self._state_for(seq_len if seq_len is not None else offset + T)
                self._ensure(offset + T, state)
                return self.cos_table[offset : offset + T], self.sin_table[offset : offset + T]
            # far offsets: no table of offset + T rows (2**45 would be 256 TiB); rows from the positions alone
            positions = torch.arange(offset, offset + T, device=self.inv_freq.device)
        if not isinstance(positions, torch.Tensor):
            raise TypeError(f"positions must be None, an int offset or an integer tensor, got {type(positions)}")
        check_positions(positions, dims=(1, 2), allow_negative=False)
        if positions.shape[-1] != T:
            raise ValueError(f"positions has {positions.shape[-1]} tokens but q/k have T={T}")
        if self.spec.scaling.length_state != "none" and seq_len is None:
            seq_len = int(positions.max()) + 1  # one host sync; pass seq_len=... to avoid it
        state = self._state_for(seq_len)
        self._ensure(1, state)
        cos, sin = rope_cos_sin(self.inv_freq, positions, attention_factor=self.attention_factor)
        if positions.dim() == 2:
            cos, sin = cos.unsqueeze(1), sin.unsqueeze(1)  # [B, 1, T, r]: broadcast over heads
        return cos, sin

    def forward(
        self,
        q: torch.Tensor,
        k: torch.Tensor,
        positions: torch.Tensor | int | None = None,
        *,
        seq_len: int | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Rotate ``q: [B, Hq, T, D]`` and ``k: [B, Hk, T, D]``.

        ``positions``: ``None`` (0..T-1), an int offset (KV cache: offset..offset+T-1) or an integer tensor
        ``[T]``/``[B, T]`` (per-token positions, left padding, packed sequences).
        """
        if q.shape[-1] != self.head_dim or k.shape[-1] != self.head_dim:
            raise ValueError(
                f"RotaryEmbedding(head_dim={self.head_dim}) got q/k with head_dim {q.shape[-1]}/{k.shape[-1]}"
            )
        cos, sin = self.cos_sin(q.shape[-2], positions, seq_len=seq_len)
        return apply_rotary_qk(q, k, cos, sin, interleaved=self.interleaved)

    def extra_repr(self) -> str:
        return (
            f"head_dim={self.head_dim}, rotary_dim={self.rotary_dim}, rope_type={self.spec.rope_type!r}, "
            f"theta={self.spec.rope_theta:g}, interleaved={self.interleaved}"
        )


def sinusoidal_table(positions: torch.Tensor, dim: int, *, base: float = 10_000.0) -> torch.Tensor:
    """Vaswani et al. (2017): ``PE[p, 2i] = sin(p / base^(2i/d))``, ``PE[p, 2i+1] = cos(...)``.

    ``positions: [...]`` integer -> ``[..., dim]`` float32 (angles reduced in float64, see ``rope_angles``).
    """
    if dim < 2 or dim % 2:
        raise ValueError(f"sinusoidal encoding needs an even dim >= 2, got {dim}")
    inv_freq = (1.0 / base ** (torch.arange(0, dim, 2, dtype=torch.float64) / dim)).to(torch.float32)
    angles = rope_angles(inv_freq.to(positions.device), positions)  # [..., dim/2]
    return torch.stack((angles.sin(), angles.cos()), dim=-1).flatten(-2)  # [..., dim], sin/cos interleaved


class SinusoidalPositionalEncoding(nn.Module):
    """Adds the fixed sinusoidal encoding to ``x: [B, T, dim]`` (no parameters, no tables kept)."""

    def __init__(self, dim: int, *, base: float = 10_000.0) -> None:
        super().__init__()
        if dim < 2 or dim % 2:
            raise ValueError(f"sinusoidal encoding needs an even dim >= 2, got {dim}")
        self.dim, self.base = dim, base

    def forward(self, x: torch.Tensor, positions: torch.Tensor | int | None = None) -> torch.Tensor:
        """``x: [B, T, dim]``; positions ``None``, an int offset, or ``[T]``/``[B, T]`` integers."""
        if x.shape[-1] != self.dim:
            raise ValueError(f"SinusoidalPositionalEncoding(dim={self.dim}) got x with last dim {x.shape[-1]}")
        if positions is None or isinstance(positions, int):
            positions = torch.arange(x.shape[-2], device=x.device) + (positions or 0)
        return x + sinusoidal_table(positions, self.dim, base=self.base).to(x.dtype)
