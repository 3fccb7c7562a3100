"""M-RoPE (multimodal RoPE) as the Qwen2-VL and Qwen3-VL text models apply it.

Every token carries three position ids ``(t, h, w)``; text tokens carry the same id three times, so that
M-RoPE on text is exactly 1-D RoPE. The text model's single ladder ``inv_freq: [r]`` (``r = D/2``, half pairing)
is kept; only which id drives each pair changes (read from transformers 5.23,
``models/qwen2_vl/modeling_qwen2_vl.py`` and ``models/qwen3_vl/modeling_qwen3_vl.py``, ``recomposition_frequencies``):

* Qwen2-VL, ``layout="chunked"``: ``mrope_section = [16, 24, 24]`` (sum r = 64): pairs ``0..15`` follow t,
  ``16..39`` h, ``40..63`` w; t gets the highest frequencies, w the lowest.
* Qwen3-VL, ``layout="interleaved"``: ``mrope_section = [24, 20, 20]``: pair ``j`` follows h if ``j % 3 == 1`` and
  ``j < 3 * s_h``, w if ``j % 3 == 2`` and ``j < 3 * s_w``, else t; every axis sees high and low frequencies.

Position ids for a sequence mixing text and images (``get_rope_index`` in the same files): text runs count up
from the current position; an image/video block with grid ``(t, h, w)`` (after spatial merging) gets ids
``(start + t_i, start + h_i, start + w_i)`` in row-major order, and the next text starts at ``start + max(h, w)``.

Legend: ``position_ids: [3, ..., T]`` (t, h, w), ``token_types: [T]`` (0 text, 1 image, 2 video),
``cos, sin: [..., T, r]``, ``pair_axes: [r]`` int64 in {0, 1, 2}.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch

from ropekit.nd.functional import nd_cos_sin

__all__ = [
    "MROPE_LAYOUTS",
    "mrope_cos_sin",
    "mrope_pair_axes",
    "mrope_position_ids",
    "split_mrope_parameters",
    "token_type_runs",
]

MROPE_LAYOUTS = ("chunked", "interleaved")  # Qwen2-VL / Qwen2.5-VL, Qwen3-VL


def split_mrope_parameters(rope_parameters: Mapping[str, Any]) -> tuple[dict[str, Any], tuple[int, int, int], str]:
    """Split a Qwen-VL ``rope_parameters`` mapping into ``(1-D parameters, mrope_section, layout)``.

    ``mrope_section`` (required) and ``mrope_interleaved`` (Qwen3-VL hub configs: ``True`` -> ``"interleaved"``,
    absent/False -> ``"chunked"``) are removed; the rest is what :func:`ropekit.rope_frequencies` accepts (its
    strict key check then applies, so misspelled keys still raise). Note that transformers' Qwen3-VL module uses
    the interleaved layout whatever the flag says. ``rope_type``/``type`` ``"mrope"`` (transformers v4 Qwen2-VL
    configs) means default frequencies, as transformers reads it.
    """
    params = dict(rope_parameters)
    if "mrope_section" not in params:
        raise ValueError(
            f"rope_parameters has no 'mrope_section' (keys: {sorted(params)}); M-RoPE needs the (t, h, w) pair "
            "counts, e.g. [16, 24, 24] for Qwen2-VL or [24, 20, 20] for Qwen3-VL"
        )
    section = tuple(int(s) for s in params.pop("mrope_section"))
    if len(section) != 3:
        raise ValueError(f"mrope_section must have three entries (t, h, w), got {list(section)}")
    layout = "interleaved" if params.pop("mrope_interleaved", False) else "chunked"
    for key in ("rope_type", "type"):  # Qwen2-VL v4 configs say {"type": "mrope"}: default frequencies
        if params.get(key) == "mrope":
            params[key] = "default"
    return params, (section[0], section[1], section[2]), layout


def mrope_pair_axes(mrope_section: Sequence[int], *, layout: str = "chunked") -> torch.Tensor:
    """Axis (0 = t, 1 = h, 2 = w) driving each rotary pair: ``[sum(mrope_section)]`` int64."""
    if layout not in MROPE_LAYOUTS:
        raise ValueError(f"layout must be 'chunked' (Qwen2-VL) or 'interleaved' (Qwen3-VL), got {layout!r}")
    sec = [int(s) for s in mrope_section]
    if len(sec) != 3 or any(s < 0 for s in sec):
        raise ValueError(f"mrope_section must be three non-negative pair counts (t, h, w), got {list(mrope_section)}")
    r = sum(sec)
    if layout == "chunked":
        return torch.repeat_interleave(torch.arange(3), torch.tensor(sec))
    j = torch.arange(r)
    axes = torch.zeros(r, dtype=torch.int64)
    axes[(j % 3 == 1) & (j < 3 * sec[1])] = 1
    axes[(j % 3 == 2) & (j < 3 * sec[2])] = 2
    counts = [int((axes == a).sum()) for a in range(3)]
    if counts != sec:
        raise ValueError(
            f"interleaved mrope_section {sec} is not realisable: dealing pairs t,h,w,t,h,w,... gives "
            f"{counts} pairs per axis; h and w sections must be <= the t section (e.g. [24, 20, 20])"
        )
    return axes


def mrope_cos_sin(
    inv_freq: torch.Tensor,
    position_ids: torch.Tensor,
    mrope_section: Sequence[int],
    *,
    layout: str = "chunked",
    attention_factor: float = 1.0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """M-RoPE ``cos, sin: [..., T, r]`` for ``position_ids: [3, ..., T]`` (integer) and ``inv_freq: [r]``.

    Use with :func:`ropekit.apply_rotary` (half pairing, ``interleaved=False``, as Qwen does); Hugging Face's
    duplicated ``[..., T, 2r]`` table is ``cat(cos, cos)``. Text tokens (equal t, h, w) get 1-D RoPE's table.
    """
    if position_ids.dim() < 2 or position_ids.shape[0] != 3:
        raise ValueError(
            f"position_ids must be [3, ..., T] (t, h, w ids), got shape {tuple(position_ids.shape)}; "
            "for text only use position_ids.expand(3, ...) of the 1-D ids"
        )
    if position_ids.is_floating_point():
        raise ValueError(f"position_ids must be integers, got {position_ids.dtype}")
    axes = mrope_pair_axes(mrope_section, layout=layout)
    if inv_freq.dim() != 1 or inv_freq.numel() != axes.numel():
        raise ValueError(
            f"inv_freq has shape {tuple(inv_freq.shape)} but sum(mrope_section) = {axes.numel()}; "
            "mrope_section counts rotary pairs and must sum to head_dim * partial_rotary_factor / 2"
        )
    positions = position_ids.movedim(0, -1)  # [..., T, 3]
    freqs = torch.zeros(3, axes.numel(), dtype=inv_freq.dtype)  # [3, r], one non-zero per column
    freqs[axes, torch.arange(axes.numel())] = inv_freq
    cos, sin = nd_cos_sin(freqs, positions)  # [..., T, r]; sums with exact zeros: exactly 1-D RoPE's angles
    if attention_factor != 1.0:
        cos, sin = cos * attention_factor, sin * attention_factor
    return cos, sin


def token_type_runs(token_types: Sequence[int]) -> list[tuple[int, int, int]]:
    """Maximal runs ``(type, start, end)`` (``end`` exclusive) of equal token types, in order: the segments (a text
    run, one image, one video, ...) that every position-id builder of :mod:`ropekit.nd.mrope` and
    :mod:`ropekit.nd.multimodal` walks. ``[0, 0, 1, 1, 1, 0]`` -> ``[(0, 0, 2), (1, 2, 5), (0, 5, 6)]``."""
    runs: list[tuple[int, int, int]] = []
    for i, kind in enumerate(token_types):
        if runs and runs[-1][0] == kind:
            runs[-1] = (kind, runs[-1][1], i + 1)
        else:
            runs.append((kind, i, i + 1))
    return runs


def mrope_position_ids(
    token_types: torch.Tensor,
    image_grids: Sequence[Sequence[int]] = (),
    video_grids: Sequence[Sequence[int]] = (),
    *,
    spatial_merge_size: int = 1,
) -> tuple[torch.Tensor, int]:
    """``(t, h, w)`` position ids of one sequence mixing text and vision tokens, and its rope delta.

    Args:
        token_types: ``[T]`` int, 0 text, 1 image, 2 video (``mm_token_type_ids`` in transformers). Each maximal run
            of 1s (2s) is one image (video) and takes the next grid.
        image_grids, video_grids: ``(t, h, w)`` patch grids before merging, in order of appearance.
        spatial_merge_size: h and w are divided by it (Qwen2-VL merges 2x2 patches into one token).

    Returns:
        ``position_ids: [3, T]`` int64 and ``delta = max id + 1 - T`` (the offset of later decoded tokens).
    """
    if token_types.dim() != 1:
        raise ValueError(f"token_types must be [T] (one sequence), got shape {tuple(token_types.shape)}")
    grids = {
        1: iter([tuple(int(v) for v in g) for g in image_grids]),
        2: iter([tuple(int(v) for v in g) for g in video_grids]),
    }
    pieces, current = [], 0
    for kind, start, end in token_type_runs(token_types.tolist()):
        n = end - start
        if kind == 0:
            pieces.append(torch.arange(current, current + n).expand(3, n))  # [3, n], t = h = w
            current += n
            continue
        if kind not in grids:
            raise ValueError(f"token type {kind} at position {start}: expected 0 (text), 1 (image) or 2 (video)")
        grid = next(grids[kind], None)
        name = "image_grids" if kind == 1 else "video_grids"
        if grid is None:
            raise ValueError(f"run of {n} type-{kind} tokens at position {start} has no grid left in {name}")
        t, h, w = grid[0], grid[1] // spatial_merge_size, grid[2] // spatial_merge_size
        if t * h * w != n:
            raise ValueError(
                f"{name} entry {grid} with spatial_merge_size {spatial_merge_size} makes {t * h * w} "
                f"tokens but the run at position {start} has {n}; separate consecutive images with text"
            )
        tt, hh, ww = torch.meshgrid(torch.arange(t), torch.arange(h), torch.arange(w), indexing="ij")
        pieces.append(torch.stack([tt, hh, ww]).reshape(3, -1) + current)  # [3, t*h*w], row-major
        current += max(h, w)
    ids = torch.cat(pieces, dim=1) if pieces else torch.zeros(3, 0, dtype=torch.int64)  # [3, T]
    delta = (int(ids.max()) + 1 - ids.shape[1]) if ids.numel() else 0
    return ids, delta
