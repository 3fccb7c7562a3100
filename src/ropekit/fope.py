"""FoPE: Fourier position embedding (Hua et al. 2025, "Fourier Position Embedding: Enhancing Attention's Periodic
Extension for Length Generalization").

Legend: ``x: [B, H, T, D]`` queries or keys (``H`` heads, ``D`` head dim), ``r = D / 2`` rotary pairs (half layout,
``(x[j], x[j + r])``), ``n <= r`` kept frequencies, ``G`` coefficient groups (one per key/value head),
``positions: [T]`` or ``[B, T]`` integers.

The formula (as the paper states it and vLLM tabulates it): each pair ``j`` does not turn at one frequency but
carries a Fourier series over the kept frequencies ``omega_0 .. omega_{n-1}``:

    cos_j(t) = sum_i C[g, i, j] cos(omega_i t),     sin_j(t) = sum_i S[g, i, j] sin(omega_i t),
    x'[j] = x[j] cos_j - x[j + r] sin_j,            x'[j + r] = x[j + r] cos_j + x[j] sin_j,

with learned coefficient matrices ``C, S: [G, n, n]`` per key/value head group ``g`` (query head ``h`` uses group
``h // (H / G)``). Frequencies "below the floor" (``omega < 2 pi / L`` for the training length ``L``: they do not
complete one period within training) are zeroed: pairs ``j >= n`` keep ``cos = 1, sin = 0`` (no rotation).

Coefficient layout and config keys are those vLLM serves (``vllm/model_executor/layers/rotary_embedding/fope.py``,
``FourierRotaryEmbedding``): parameters ``cos_coef`` and ``sin_coef`` of shape ``[num_key_value_heads, n, n]``
(input frequency, output pair), ``num_inv_freq`` (keep the first ``n`` frequencies; ``None``: keep those with
``omega > 2 pi / max_position_embeddings``), ``fope_sep_head`` (``False``: group 0's matrices serve every head),
``fope_init_factor`` (the init scale; the served checkpoints carry trained values). vLLM pads the floored pairs with
``cos = 1, sin = 0`` (an older copy of that file padded sin with 1, which mixes the unrotated pairs; ropekit
follows the fixed form).

Identity setting: ``C = S = I`` and no frequency floored is plain RoPE. Relativity: only when ``C`` and ``S`` are the
same diagonal matrix (a per-pair scale of a rotation) does ``<f(q, m), f(k, n)>`` depend on ``m - n`` alone; general
coefficients break it (the paper's point: the series spreads each pair over several frequencies). There is no fast
path: the op is written in torch (autograd reaches the coefficients), so it is its own reference.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from ropekit.angles import check_positions, position_angles
from ropekit.reference import rotate_half
from ropekit.scaling import rope_frequencies

__all__ = [
    "FOPE_KEYS",
    "FourierRotaryEmbedding",
    "apply_fope",
    "fope_cos_sin",
    "fope_inv_freq",
]

# Config keys of a FoPE model's rope parameters (vLLM's get_rope passes these through to FourierRotaryEmbedding).
FOPE_KEYS = ("num_inv_freq", "fope_sep_head", "fope_init_factor")


def fope_inv_freq(
    head_dim: int, rope_theta: float, max_position_embeddings: int, num_inv_freq: int | None = None
) -> torch.Tensor:
    """The kept frequencies ``[n]`` (float64, decreasing): RoPE's ladder ``theta^(-2j/D)``, cut at the floor.

    ``num_inv_freq``: keep the first ``n`` (highest) frequencies; ``None``: keep every ``omega > 2 pi / L``
    (``L = max_position_embeddings``, the training length), i.e. those that complete a period within training.
    """
    if not isinstance(head_dim, int) or isinstance(head_dim, bool) or head_dim < 2 or head_dim % 2:
        raise ValueError(f"FoPE needs an even head_dim >= 2, got {head_dim!r}")
    if not isinstance(max_position_embeddings, int) or isinstance(max_position_embeddings, bool):
        raise ValueError(
            f"max_position_embeddings must be an int (the training length), got {max_position_embeddings!r}"
        )
    if max_position_embeddings < 1:
        raise ValueError(f"max_position_embeddings must be >= 1, got {max_position_embeddings}")
    inv_freq, _ = rope_frequencies({"rope_type": "default", "rope_theta": rope_theta}, head_dim=head_dim)
    r = inv_freq.numel()
    if num_inv_freq is not None:
        if not isinstance(num_inv_freq, int) or isinstance(num_inv_freq, bool) or not 1 <= num_inv_freq <= r:
            raise ValueError(
                f"num_inv_freq must be an int in [1, head_dim/2 = {r}] or None (floor), got {num_inv_freq!r}"
            )
        return inv_freq[:num_inv_freq].to(torch.float64)
    kept = inv_freq[inv_freq > 2.0 * math.pi / max_position_embeddings]
    if kept.numel() == 0:
        raise ValueError(
            f"every frequency is below the floor 2 pi / {max_position_embeddings}: no pair completes a period "
            f"within the training length; raise max_position_embeddings or pass num_inv_freq"
        )
    return kept.to(torch.float64)


def _check_coef(cos_coef: torch.Tensor, sin_coef: torch.Tensor, n: int) -> None:
    for name, c in (("cos_coef", cos_coef), ("sin_coef", sin_coef)):
        if not isinstance(c, torch.Tensor) or c.dim() != 3 or c.shape[-2:] != (n, n) or not c.is_floating_point():
            shape = tuple(c.shape) if isinstance(c, torch.Tensor) else type(c).__name__
            raise ValueError(
                f"{name} must be a float [num_key_value_heads, {n}, {n}] tensor (input frequency x output pair, "
                f"vLLM's layout), got {shape}"
            )
    if cos_coef.shape != sin_coef.shape:
        raise ValueError(f"cos_coef {tuple(cos_coef.shape)} and sin_coef {tuple(sin_coef.shape)} must match")


def fope_cos_sin(
    inv_freq: torch.Tensor,
    cos_coef: torch.Tensor,
    sin_coef: torch.Tensor,
    positions: torch.Tensor,
    rotary_pairs: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-group Fourier tables: ``cos, sin`` each ``[G, T, r]`` (positions ``[T]``) or ``[B, G, T, r]``
    (positions ``[B, T]``), float32; pairs ``j >= n`` hold ``cos = 1, sin = 0``.

    ``inv_freq: [n]``, ``cos_coef, sin_coef: [G, n, n]``, ``rotary_pairs = r >= n``. Angles use the exact float64
    reduction of :func:`ropekit.angles.position_angles`; differentiable in the coefficients.
    """
    check_positions(positions, dims=(1, 2))
    n = inv_freq.numel()
    _check_coef(cos_coef, sin_coef, n)
    if rotary_pairs < n:
        raise ValueError(f"rotary_pairs={rotary_pairs} must be >= the {n} kept frequencies")
    angles = position_angles(inv_freq, positions)  # [T, n] or [B, T, n], float32 in [-pi, pi]
    basis_cos, basis_sin = angles.cos().unsqueeze(-3), angles.sin().unsqueeze(-3)  # [.., 1, T, n]
    cos = basis_cos @ cos_coef.float()  # [G, T, n] or [B, G, T, n]
    sin = basis_sin @ sin_coef.float()
    pad = rotary_pairs - n
    if pad:
        cos = torch.cat((cos, cos.new_ones(*cos.shape[:-1], pad)), dim=-1)
        sin = torch.cat((sin, sin.new_zeros(*sin.shape[:-1], pad)), dim=-1)
    return cos, sin


def apply_fope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """``x: [B, H, T, D]`` with tables ``[G, T, r]`` or ``[B, G, T, r]`` (``G`` divides ``H``; ``r = D / 2``, half
    layout) -> ``[B, H, T, D]`` in x's dtype. Query head ``h`` uses group ``h // (H / G)``."""
    if not isinstance(x, torch.Tensor) or x.dim() != 4 or not x.is_floating_point():
        raise ValueError(f"x must be a floating [B, H, T, D] tensor, got {getattr(x, 'shape', type(x).__name__)}")
    _, H, T, D = x.shape
    G, r = cos.shape[-3], cos.shape[-1]
    if 2 * r != D or cos.shape[-2] != T or H % G:
        raise ValueError(
            f"FoPE tables {tuple(cos.shape)} do not fit x {tuple(x.shape)}: need [.., G, T={T}, D/2={D // 2}] with "
            f"G dividing H={H} (G = num_key_value_heads)"
        )
    if H != G:
        cos, sin = cos.repeat_interleave(H // G, dim=-3), sin.repeat_interleave(H // G, dim=-3)  # [.., H, T, r]
    dtype = torch.float32 if x.dtype in (torch.float16, torch.bfloat16) else x.dtype
    cos_f, sin_f = torch.cat((cos, cos), dim=-1).to(dtype), torch.cat((sin, sin), dim=-1).to(dtype)  # [.., H, T, D]
    xf = x.to(dtype)
    return (xf * cos_f + rotate_half(xf) * sin_f).to(x.dtype)


class FourierRotaryEmbedding(nn.Module):
    """FoPE with learned coefficients in vLLM's layout (see the module docstring).

    Args:
        head_dim: ``D`` (even); every pair is in the table, pairs past the kept frequencies do not turn.
        num_key_value_heads: ``G``, coefficient groups (the model's key/value heads).
        max_position_embeddings: the training length ``L`` that sets the floor ``2 pi / L``.
        rope_theta: base of the frequency ladder.
        num_inv_freq: keep the first ``n`` frequencies instead of the floor rule.
        fope_sep_head: one coefficient pair per group (``True``) or group 0's for all (``False``).
        fope_init_factor: ropekit's init: ``C = S = I + fope_init_factor * N(0, 1)`` (0 starts as floored RoPE);
            trained checkpoints are loaded with :meth:`load_coefficients` or ``load_state_dict``.
        generator: for the init noise.
    """

    inv_freq: torch.Tensor

    def __init__(
        self,
        head_dim: int,
        num_key_value_heads: int,
        max_position_embeddings: int,
        *,
        rope_theta: float = 10_000.0,
        num_inv_freq: int | None = None,
        fope_sep_head: bool = True,
        fope_init_factor: float = 0.0,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        if not isinstance(fope_sep_head, bool):
            raise ValueError(f"fope_sep_head must be True or False, got {fope_sep_head!r}")
        if not isinstance(num_key_value_heads, int) or isinstance(num_key_value_heads, bool) or num_key_value_heads < 1:
            raise ValueError(f"num_key_value_heads must be a positive int, got {num_key_value_heads!r}")
        if (
            isinstance(fope_init_factor, bool)
            or not isinstance(fope_init_factor, (int, float))
            or not (math.isfinite(fope_init_factor) and fope_init_factor >= 0)
        ):
            raise ValueError(f"fope_init_factor must be a finite number >= 0, got {fope_init_factor!r}")
        self.head_dim, self.num_key_value_heads, self.fope_sep_head = head_dim, num_key_value_heads, fope_sep_head
        self.max_position_embeddings = max_position_embeddings
        inv_freq = fope_inv_freq(head_dim, rope_theta, max_position_embeddings, num_inv_freq)
        self.register_buffer("inv_freq", inv_freq, persistent=False)
        n = inv_freq.numel()
        eye = torch.eye(n).expand(num_key_value_heads, n, n)
        noise_c = torch.randn(num_key_value_heads, n, n, generator=generator) * fope_init_factor
        noise_s = torch.randn(num_key_value_heads, n, n, generator=generator) * fope_init_factor
        self.cos_coef = nn.Parameter(eye + noise_c)  # [G, n, n] (input frequency, output pair)
        self.sin_coef = nn.Parameter(eye + noise_s)

    @classmethod
    def from_rope_parameters(
        cls, params: Mapping[str, Any], *, head_dim: int, num_key_value_heads: int, max_position_embeddings: int
    ) -> FourierRotaryEmbedding:
        """Build from a config's rope parameters: ``rope_theta`` and the :data:`FOPE_KEYS`; unknown keys raise."""
        allowed = {"rope_type", "rope_theta", "use_fope", *FOPE_KEYS}
        unknown = sorted(set(params) - allowed)
        if unknown:
            raise ValueError(f"unknown FoPE rope parameter(s) {unknown}; FoPE reads {sorted(allowed)}")
        if params.get("rope_type", "default") != "default":
            raise ValueError(
                f"FoPE runs on the default frequency ladder; rope_type={params['rope_type']!r} is not supported with it"
            )
        sep = params.get("fope_sep_head")
        init = params.get("fope_init_factor")
        return cls(
            head_dim,
            num_key_value_heads,
            max_position_embeddings,
            rope_theta=float(params.get("rope_theta", 10_000.0)),
            num_inv_freq=params.get("num_inv_freq"),
            fope_sep_head=True if sep is None else sep,
            fope_init_factor=0.0 if init is None else init,
        )

    @torch.no_grad()
    def load_coefficients(self, cos_coef: torch.Tensor, sin_coef: torch.Tensor) -> None:
        """Copy checkpoint tensors ``[num_key_value_heads, n, n]`` (vLLM's ``cos_coef`` / ``sin_coef``)."""
        _check_coef(cos_coef, sin_coef, self.inv_freq.numel())
        if cos_coef.shape != self.cos_coef.shape:
            raise ValueError(
                f"checkpoint coefficients {tuple(cos_coef.shape)} do not match this module's "
                f"{tuple(self.cos_coef.shape)} (num_key_value_heads, kept frequencies); check num_inv_freq and "
                f"max_position_embeddings"
            )
        self.cos_coef.copy_(cos_coef)
        self.sin_coef.copy_(sin_coef)

    def coefficients(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The matrices in use, ``[G, n, n]`` each (group 0's repeated when ``fope_sep_head`` is False)."""
        if self.fope_sep_head:
            return self.cos_coef, self.sin_coef
        G = self.num_key_value_heads
        return self.cos_coef[:1].expand(G, -1, -1), self.sin_coef[:1].expand(G, -1, -1)

    def cos_sin(self, positions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``[T]`` / ``[B, T]`` -> tables ``[G, T, r]`` / ``[B, G, T, r]``."""
        cos_coef, sin_coef = self.coefficients()
        return fope_cos_sin(self.inv_freq, cos_coef, sin_coef, positions, self.head_dim // 2)

    def forward(self, q: torch.Tensor, k: torch.Tensor, positions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``q: [B, H, T, D]``, ``k: [B, G, T, D]`` (``G = num_key_value_heads``) -> same shapes."""
        if k.dim() != 4 or k.shape[1] != self.num_key_value_heads:
            raise ValueError(
                f"k must be [B, {self.num_key_value_heads}, T, D] (num_key_value_heads coefficient groups), got "
                f"{tuple(k.shape)}; build FoPE with num_key_value_heads = the model's key/value heads"
            )
        cos, sin = self.cos_sin(positions)
        if cos.dim() == 4 and cos.shape[0] != q.shape[0]:
            raise ValueError(f"positions have batch {cos.shape[0]} but q has batch {q.shape[0]}")
        return apply_fope(q, cos, sin), apply_fope(k, cos, sin)
