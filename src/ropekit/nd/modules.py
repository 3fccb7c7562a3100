"""Module tier of N-D RoPE: ``nn.Module``s holding frequencies / generators and calling the functional tier.

Legend: ``q: [B, Hq, T, D]``, ``k: [B, Hk, T, D]``, ``positions: [T, A]`` shared by the batch or ``[B, T, A]``,
``freqs: [A, r]`` or per head ``[H, A, r]``, ``position_ids: [3, B, T]`` for M-RoPE.
All forward passes return ``(q, k)`` rotated, in the inputs' dtype.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

from ropekit.nd.functional import apply_rotary_nd, axial_frequencies, liere_rotation, mixed_frequencies
from ropekit.nd.mrope import mrope_cos_sin, mrope_pair_axes, split_mrope_parameters
from ropekit.nd.multimodal import LAYOUT_SECTIONS, MULTIMODAL_LAYOUTS, layout_cos_sin, layout_name, layout_pair_axes
from ropekit.nd.reference import apply_token_matrices, cayley
from ropekit.reference import apply_rotary_reference
from ropekit.scaling import rope_frequencies

__all__ = [
    "AxialRotaryEmbedding",
    "CommutingLieEmbedding",
    "LieREEmbedding",
    "MRotaryEmbedding",
    "MixedRotaryEmbedding",
]


def _split_pairs(head_dim: int, n_axes: int) -> list[int]:
    """Equal split of the ``head_dim / 2`` pairs between axes (the first axes get the remainder)."""
    if head_dim % 2 or head_dim < 2 * n_axes:
        raise ValueError(f"head_dim must be even and >= 2 * n_axes = {2 * n_axes} (one pair per axis), got {head_dim}")
    r = head_dim // 2
    return [r // n_axes + (1 if a < r % n_axes else 0) for a in range(n_axes)]


def _batched(positions: torch.Tensor, n_axes: int) -> torch.Tensor:
    """``[T, A]`` -> as is; ``[B, T, A]`` -> ``[B, 1, T, A]`` (broadcast over heads)."""
    if positions.dim() not in (2, 3) or positions.shape[-1] != n_axes:
        raise ValueError(
            f"positions must be [T, {n_axes}] or [B, T, {n_axes}] coordinates, got shape "
            f"{tuple(positions.shape)}; for an H x W patch grid use ropekit.nd.grid_positions(H, W)"
        )
    return positions if positions.dim() == 2 else positions.unsqueeze(1)


class AxialRotaryEmbedding(nn.Module):
    """Axial RoPE: each rotary pair follows one axis (RoPE-ViT "axial", Heo et al. 2024; 3-D for video).

    Args:
        head_dim: ``D``; all ``D/2`` pairs rotate.
        n_axes: ``A`` (2 for images).
        pairs_per_axis: explicit split of the pairs between axes (default: equal).
        base: one base or one per axis (RoPE-ViT used 100 for images).
        layout: ``"chunked"`` (axis 0's pairs first) or ``"interleaved"`` (round-robin).
        interleaved: feature pairing ``(x[2j], x[2j+1])`` instead of ``(x[j], x[j + D/2])``.
    """

    freqs: torch.Tensor

    def __init__(
        self,
        head_dim: int,
        n_axes: int = 2,
        *,
        pairs_per_axis: Sequence[int] | None = None,
        base: float | Sequence[float] = 100.0,
        layout: str = "chunked",
        interleaved: bool = False,
    ) -> None:
        super().__init__()
        split = list(pairs_per_axis) if pairs_per_axis is not None else _split_pairs(head_dim, n_axes)
        if len(split) != n_axes or 2 * sum(split) > head_dim:
            raise ValueError(
                f"pairs_per_axis {split} must have {n_axes} entries summing to <= head_dim/2 = {head_dim // 2}"
            )
        if not isinstance(interleaved, bool):
            raise ValueError(f"interleaved must be True or False, got {interleaved!r}")
        self.n_axes, self.interleaved = n_axes, interleaved
        self.register_buffer("freqs", axial_frequencies(split, base, layout=layout), persistent=False)  # [A, r]

    def forward(self, q: torch.Tensor, k: torch.Tensor, positions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        p = _batched(positions, self.n_axes)
        return (
            apply_rotary_nd(q, self.freqs, p, interleaved=self.interleaved),
            apply_rotary_nd(k, self.freqs, p, interleaved=self.interleaved),
        )


class MixedRotaryEmbedding(nn.Module):
    """RoPE-Mixed (Heo et al. 2024): learnable per-head frequency vectors, pair j turns by ``<f_{h,j}, p>``.

    ``freqs: [H, A, r]`` is an ``nn.Parameter`` initialised by :func:`ropekit.nd.mixed_frequencies` (base 10).
    Still relative: for fixed frequencies the generators are block-diagonal in the same pairs and commute.
    """

    def __init__(
        self,
        head_dim: int,
        n_heads: int,
        n_axes: int = 2,
        *,
        base: float = 10.0,
        interleaved: bool = False,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        if not isinstance(interleaved, bool):
            raise ValueError(f"interleaved must be True or False, got {interleaved!r}")
        self.n_axes, self.interleaved = n_axes, interleaved
        init = mixed_frequencies(n_heads, _split_pairs(head_dim, n_axes), base, generator=generator)
        self.freqs = nn.Parameter(init)  # [H, A, r]

    def forward(self, q: torch.Tensor, k: torch.Tensor, positions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        p = _batched(positions, self.n_axes)
        return (
            apply_rotary_nd(q, self.freqs, p, interleaved=self.interleaved),
            apply_rotary_nd(k, self.freqs, p, interleaved=self.interleaved),
        )


class CommutingLieEmbedding(nn.Module):
    """``R(p) = P B(p) P^T``: commuting generators ``P J_k P^T`` with a learnable orthogonal ``P`` (STRING-style).

    ``P = cayley(S - S^T)`` from a learnable ``S: [D, D]`` (zero at init: ``P = I``, plain axial RoPE), and
    learnable axial frequencies ``freqs: [A, r]`` shared by the heads. Applied as ``P^T``, block rotation, ``P``
    (two ``D x D`` matmuls per token), never as a matrix exponential. Relative for every value of the parameters.
    """

    def __init__(
        self,
        head_dim: int,
        n_axes: int = 2,
        *,
        base: float = 100.0,
        learn_freqs: bool = True,
        interleaved: bool = False,
    ) -> None:
        super().__init__()
        if not isinstance(interleaved, bool):
            raise ValueError(f"interleaved must be True or False, got {interleaved!r}")
        self.n_axes, self.interleaved = n_axes, interleaved
        freqs = axial_frequencies(_split_pairs(head_dim, n_axes), base)  # [A, r]
        self.freqs = nn.Parameter(freqs, requires_grad=learn_freqs)
        self.S = nn.Parameter(torch.zeros(head_dim, head_dim))  # [D, D], only its skew part is used

    def basis(self) -> torch.Tensor:
        """The orthogonal change of basis ``P: [D, D]``."""
        return cayley(self.S - self.S.T)

    def generators(self) -> torch.Tensor:
        """Dense commuting generators ``P J_k P^T: [A, D, D]`` float64 (for tests and inspection)."""
        from ropekit.nd.reference import block_generators

        P = self.basis().detach().double()
        return P @ block_generators(self.freqs, self.S.shape[0], interleaved=self.interleaved) @ P.T

    def forward(self, q: torch.Tensor, k: torch.Tensor, positions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        p, P = _batched(positions, self.n_axes), self.basis()
        return (
            apply_rotary_nd(q, self.freqs, p, P=P, interleaved=self.interleaved),
            apply_rotary_nd(k, self.freqs, p, P=P, interleaved=self.interleaved),
        )


class LieREEmbedding(nn.Module):
    """LieRE (Ostmeier et al. 2024): ``R(p) = exp(sum_k p_k G_k)`` with dense learnable skew generators.

    A baseline: the generators do not commute, so ``<R(p) q, R(p') k>`` depends on ``p`` and ``p'`` separately
    (measured by :func:`ropekit.nd.relativity_defect`). ``generators: [A, D, D]`` (skew part used), initialised
    with i.i.d. normal entries of standard deviation ``init_scale / sqrt(D)``.
    """

    def __init__(
        self, head_dim: int, n_axes: int = 2, *, init_scale: float = 0.5, generator: torch.Generator | None = None
    ) -> None:
        super().__init__()
        self.n_axes = n_axes
        init = torch.randn(n_axes, head_dim, head_dim, generator=generator) * (init_scale / head_dim**0.5)
        self.generators = nn.Parameter(init)  # [A, D, D]

    def forward(self, q: torch.Tensor, k: torch.Tensor, positions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if q.shape[-1] != self.generators.shape[-1]:
            raise ValueError(f"q has head_dim {q.shape[-1]} but the generators are {tuple(self.generators.shape)}")
        R = liere_rotation(self.generators, _batched(positions, self.n_axes))  # [T, D, D] or [B,1,T,D,D]
        return apply_token_matrices(q, R), apply_token_matrices(k, R)


# named layouts whose pair map is one of M-RoPE's two (ropekit.nd.mrope_pair_axes)
_MROPE_LAYOUT_OF = {
    "qwen2_vl": "chunked",
    "qwen2_5_omni": "chunked",
    "qwen3_vl": "interleaved",
    "qwen3_omni": "interleaved",
    "mrope_interleave": "interleaved",
}


class MRotaryEmbedding(nn.Module):
    """M-RoPE of Qwen2-VL (``layout="chunked"``, section [16, 24, 24]) or Qwen3-VL (``"interleaved"``, [24, 20, 20]).

    Args:
        head_dim: ``D``; ``rotary_dim = int(D * partial_rotary_factor)`` must equal ``2 * sum(mrope_section)``.
        rope_parameters: the model's Hugging Face ``rope_parameters`` (``rope_theta``, any scaling type ropekit
            knows), including ``mrope_section`` and optionally ``mrope_interleaved`` (Qwen3-VL hub configs);
            see :func:`ropekit.nd.split_mrope_parameters`.
        layout: overrides the layout read from ``rope_parameters`` (``"chunked"`` unless ``mrope_interleaved``).
        max_position_embeddings: passed to :func:`ropekit.rope_frequencies` (YaRN/LongRoPE fallbacks).

    Half pairing (``rotate_half``) as in Qwen. ``forward(q, k, position_ids [3, B, T])``; build ids with
    :func:`ropekit.nd.mrope_position_ids`. cos and sin are multiplied by the type's attention factor.

    :meth:`from_layout` builds the module of a named layout of :mod:`ropekit.nd.multimodal` (Qwen2-VL, Qwen3-VL,
    Qwen-Omni, ERNIE-4.5-VL, VideoRoPE, HoPE, MRoPE-I): its pair map, pairing and, for HoPE, its NoPE pairs.
    """

    inv_freq: torch.Tensor
    #: set by :meth:`from_layout`: ``[r]`` pair -> axis map (``None``: ``mrope_section`` and ``layout``)
    pair_axes: torch.Tensor | None
    #: set by :meth:`from_layout` for HoPE: ``[r]`` bool, pairs at frequency zero
    nope_pairs: torch.Tensor | None

    def __init__(
        self,
        head_dim: int,
        rope_parameters: Mapping[str, Any],
        *,
        layout: str | None = None,
        max_position_embeddings: int | None = None,
    ) -> None:
        super().__init__()
        core, section, read_layout = split_mrope_parameters(rope_parameters)
        inv_freq, self.attention_factor = rope_frequencies(
            core, head_dim=head_dim, max_position_embeddings=max_position_embeddings
        )
        if inv_freq.numel() != sum(section):
            raise ValueError(
                f"mrope_section {list(section)} counts {sum(section)} rotary pairs but head_dim {head_dim} with "
                f"these rope_parameters gives {inv_freq.numel()}; the sections must sum to rotary_dim / 2"
            )
        self.mrope_section, self.layout = section, layout or read_layout
        mrope_pair_axes(section, layout=self.layout)  # validates the layout and the sections now, not at forward
        self.register_buffer("inv_freq", inv_freq, persistent=False)  # [r]
        self.layout_name: str | None = None
        self.interleaved = False
        self.register_buffer("pair_axes", None, persistent=False)
        self.register_buffer("nope_pairs", None, persistent=False)

    @classmethod
    def from_layout(
        cls,
        layout: str,
        head_dim: int,
        rope_parameters: Mapping[str, Any] | None = None,
        *,
        mrope_section: Sequence[int] | None = None,
        max_position_embeddings: int | None = None,
    ) -> MRotaryEmbedding:
        """The module of a named layout (:data:`ropekit.nd.multimodal.MULTIMODAL_LAYOUTS`, spelled as
        :func:`ropekit.nd.multimodal.layout_name` accepts: ``"qwen2-vl"``, ``"Qwen2.5-Omni"``, ``"hope"``, ...).

        ``rope_parameters``: the text model's (``rope_theta``, scaling; default RoPE at base 10000), with or without
        ``mrope_section``. The section is ``mrope_section``, else the one in ``rope_parameters``, else the released
        models' (:data:`ropekit.nd.multimodal.LAYOUT_SECTIONS`, for 64 rotary pairs); in the layout's own order
        (ERNIE: ``(h, w, t)``). The module rotates as :func:`ropekit.nd.multimodal.layout_cos_sin` with
        :func:`ropekit.nd.multimodal.layout_pair_axes` and the layout's pairing do; position ids ``[3, B, T]`` come
        from the layout's builder (integer or real, e.g. Qwen3-Omni's time-aligned ids).
        """
        name = layout_name(layout)
        params = dict(rope_parameters or {})
        params.pop("mrope_interleaved", None)  # the name decides the layout
        section = mrope_section if mrope_section is not None else params.get("mrope_section", LAYOUT_SECTIONS[name])
        params["mrope_section"] = [int(s) for s in section]
        axes = layout_pair_axes(name, params["mrope_section"])  # validates the section for this layout
        # the Qwen maps are M-RoPE's own layouts (the module's `layout`); the others keep "chunked" there, unused
        module = cls(
            head_dim, params, layout=_MROPE_LAYOUT_OF.get(name), max_position_embeddings=max_position_embeddings
        )
        module.layout_name, module.interleaved = name, MULTIMODAL_LAYOUTS[name]
        module.pair_axes = axes.to(module.inv_freq.device)
        module.nope_pairs = axes == 0 if name == "hope" else None  # HoPE: NoPE on the temporal pairs
        return module

    def forward(
        self, q: torch.Tensor, k: torch.Tensor, position_ids: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        if position_ids.dim() != 3 or position_ids.shape[0] != 3:
            raise ValueError(f"position_ids must be [3, B, T], got shape {tuple(position_ids.shape)}")
        if self.pair_axes is not None:  # a named layout (from_layout)
            cos, sin = layout_cos_sin(
                self.inv_freq,
                position_ids,
                self.pair_axes,
                nope_pairs=self.nope_pairs,
                attention_factor=self.attention_factor,
            )  # [B, T, r] each
            cos, sin = cos.unsqueeze(1), sin.unsqueeze(1)  # [B, 1, T, r]
            return (
                apply_rotary_reference(q, cos, sin, interleaved=self.interleaved),
                apply_rotary_reference(k, cos, sin, interleaved=self.interleaved),
            )
        cos, sin = mrope_cos_sin(
            self.inv_freq, position_ids, self.mrope_section, layout=self.layout, attention_factor=self.attention_factor
        )  # [B, T, r] each
        cos, sin = cos.unsqueeze(1), sin.unsqueeze(1)  # [B, 1, T, r]
        return apply_rotary_reference(q, cos, sin), apply_rotary_reference(k, cos, sin)
