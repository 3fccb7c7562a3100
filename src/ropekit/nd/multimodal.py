"""Named multimodal RoPE layouts on the N-D machinery: ERNIE-4.5-VL, Qwen-Omni, VideoRoPE, HoPE, MRoPE-I, MHRoPE.

Every layout here is "one shared 1-D ladder ``inv_freq: [r]``, a map pair -> axis, a position-id rule": the
table is :func:`ropekit.nd.nd_cos_sin` of :func:`ropekit.nd.frequencies_from_pair_axes` (float64 angles reduced
modulo 2 pi, as in the 1-D core), so text tokens (equal t, h, w ids) get exactly 1-D RoPE's table (HoPE aside: its
NoPE pairs never turn). Axes are always ``0 = t, 1 = h, 2 = w``.

* ERNIE-4.5-VL (read from transformers 5.24, ``models/ernie4_5_vl_moe/modeling_ernie4_5_vl_moe.py``:
  ``Ernie4_5_VLMoeTextRotaryEmbedding``): ``mrope_section = [s_h, s_w, s_t]`` (default ``[22, 22, 20]``). Undoing
  transformers' pre-rotation of ``inv_freq`` and its ``recomposition_frequencies``, pair ``j < s_h + s_w`` follows h
  if ``j`` is even and w if odd, pairs ``j >= s_h + s_w`` follow t, and every pair keeps the plain ladder frequency
  ``inv_freq[j]``. Interleaved pairing ``(x_{2j}, x_{2j+1})`` (``rotate_half_text``): use ``interleaved=True``.
  Position ids (``get_rope_index``, ``get_vision_position_ids``): like Qwen2-VL but a video's t grid is divided by
  ``temporal_merge_size`` (images are not), t ids are ``start + floor(i * time_interval)``, and the next text starts
  at ``start + max(h, w)`` (merged).
* Qwen2.5-Omni (transformers 5.24, ``models/qwen2_5_omni/modeling_qwen2_5_omni.py``, ``get_rope_index``): Qwen2-VL's
  chunked pairs; every segment (text run, image, video, audio) starts at ``max(previous ids) + 1``; a vision block
  has t ids ``floor(i * seconds_per_grid * position_id_per_seconds)`` (images: one second per grid), so ids are
  aligned with time (25 ids per second by default); audio tokens count up like text.
* Qwen3-Omni (transformers 5.24, ``models/qwen3_omni_moe/modeling_qwen3_omni_moe.py``, ``get_rope_index``): Qwen3-VL's
  interleaved pairs; the same time-aligned ids without the floor (real-valued t ids), and with
  ``use_audio_in_video`` the video and audio ids of one clip merged by t id.
* VideoRoPE (Wei et al. 2025, "VideoRoPE: What Makes for Good Video Rotary Position Embedding?"; rules read from
  the authors' code, Wiselnn570/VideoRoPE ``videorope-transformer/modeling_videorope.py``): low-frequency temporal
  allocation (t takes the last, lowest-frequency pairs; h and w alternate over the rest, starting with h: the same
  pair map as ERNIE's), diagonal layout (a frame's spatial ids are centred on its temporal id:
  ``h = t_id + i_h - (H - 1) // 2``, ``w = t_id + i_w - (W - 1) // 2``) and adjustable temporal spacing
  ``t_id = start + delta * i``; the next text starts at ``max t id + 1``.
* HoPE (Li et al. 2025, "HoPE: Hybrid of Position Embedding for Length Generalization in Vision-Language Models"):
  VideoRoPE's allocation and diagonal layout, but the t pairs (the lowest frequencies) get frequency zero (NoPE
  on the temporal axis, text tokens included) and the temporal spacing is a scaling factor ``gamma`` (dynamic
  temporal scaling: sampled in training, chosen at inference). Checked against the re-implementation in
  JJJYmmm/Multimodal-RoPEs (``pos_design/hope.py``, ``freq_allocation/hope.py``), not the HoPE authors' own code.
* MRoPE-I and MHRoPE (Huang et al. 2025, "Revisiting Multimodal Positional Encoding in Vision-Language Models";
  rules read from the authors' code, JJJYmmm/Multimodal-RoPEs): MRoPE-I deals pairs round-robin
  ``t, h, w, t, h, w, ...`` (Qwen3-VL's map, :func:`ropekit.nd.mrope_pair_axes` ``layout="interleaved"``) and its
  position design resets h, w to zero for every image (spatial reset); MHRoPE gives each axis its own heads, each
  head using the full ladder on its axis (spare heads: no rotation).

Legend: ``position_ids: [3, ..., T]`` (t, h, w), ``token_types: [T]`` (0 text, 1 image, 2 video, 3 audio, 4 video
with its audio, Qwen3-Omni),
``cos, sin: [..., T, r]`` (MHRoPE: ``[..., H, T, r]``), ``pair_axes: [r]`` int64 in {0, 1, 2}.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterator, Sequence

import torch

from ropekit.nd.functional import frequencies_from_pair_axes, nd_cos_sin
from ropekit.nd.mrope import mrope_pair_axes, token_type_runs

__all__ = [
    "LAYOUT_SECTIONS",
    "MULTIMODAL_LAYOUTS",
    "ernie_pair_axes",
    "ernie_position_ids",
    "hope_frequencies",
    "hope_position_ids",
    "layout_cos_sin",
    "layout_name",
    "layout_pair_axes",
    "mhrope_cos_sin",
    "mhrope_head_axes",
    "mrope_interleave_pair_axes",
    "mrope_interleave_position_ids",
    "omni_position_ids",
    "videorope_pair_axes",
    "videorope_position_ids",
]

# name -> (pairing of the table, interleaved=True for (x_2j, x_2j+1)), for layout_pair_axes / docs
MULTIMODAL_LAYOUTS: dict[str, bool] = {
    "qwen2_vl": False,
    "qwen3_vl": False,
    "qwen2_5_omni": False,
    "qwen3_omni": False,
    "ernie4_5_vl": True,
    "videorope": False,
    "hope": False,
    "mrope_interleave": False,
}

# name -> the released models' mrope_section (transformers' order: (t, h, w), ERNIE (h, w, t); 64 rotary pairs,
# head_dim 128): the default of MRotaryEmbedding.from_layout. VideoRoPE / HoPE: 16 t pairs of 64 (only the t count
# matters, h and w share the rest).
LAYOUT_SECTIONS: dict[str, tuple[int, int, int]] = {
    "qwen2_vl": (16, 24, 24),
    "qwen3_vl": (24, 20, 20),
    "qwen2_5_omni": (16, 24, 24),
    "qwen3_omni": (24, 20, 20),
    "ernie4_5_vl": (22, 22, 20),
    "videorope": (16, 24, 24),
    "hope": (16, 24, 24),
    "mrope_interleave": (24, 20, 20),
}

Grid = Sequence[int]


def layout_name(name: str) -> str:
    """The key of :data:`MULTIMODAL_LAYOUTS` for ``name``, case and separators ignored (``"Qwen2.5-Omni"`` ->
    ``"qwen2_5_omni"``, ``"qwen2-vl"`` -> ``"qwen2_vl"``); unknown names raise with the known ones."""
    if not isinstance(name, str):
        raise TypeError(f"layout must be a name (str), got {type(name).__name__}")
    key = "".join(c if c.isalnum() else "_" for c in name.strip().lower())
    if key not in MULTIMODAL_LAYOUTS:
        close = difflib.get_close_matches(key, list(MULTIMODAL_LAYOUTS), n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise ValueError(f"unknown multimodal layout {name!r}{hint} (known: {', '.join(MULTIMODAL_LAYOUTS)})")
    return key


def _sections(section: Sequence[int], name: str) -> list[int]:
    sec = [int(s) for s in section]
    if len(sec) != 3 or any(s < 0 for s in sec):
        raise ValueError(f"{name} must be three non-negative pair counts, got {list(section)}")
    return sec


def ernie_pair_axes(mrope_section: Sequence[int] = (22, 22, 20)) -> torch.Tensor:
    """ERNIE-4.5-VL pair -> axis map ``[sum(section)]``: ``section = [s_h, s_w, s_t]`` (transformers' order).

    Pairs ``0 .. s_h + s_w - 1`` alternate h (even) / w (odd); the last ``s_t`` pairs follow t. transformers
    stacks the h and w sections pairwise, so it needs ``s_h == s_w``; so do we.
    """
    s_h, s_w, s_t = _sections(mrope_section, "mrope_section (h, w, t)")
    if s_h != s_w:
        raise ValueError(
            f"ERNIE-4.5-VL alternates h and w pairs, so mrope_section[0] (h) must equal mrope_section[1] (w); got "
            f"{list(mrope_section)} (the released models use [22, 22, 20])"
        )
    j = torch.arange(s_h + s_w)
    return torch.cat([torch.where(j % 2 == 0, 1, 2), torch.zeros(s_t, dtype=torch.int64)])


def videorope_pair_axes(rotary_pairs: int, temporal_pairs: int) -> torch.Tensor:
    """VideoRoPE low-frequency temporal allocation: ``[r]``, h/w alternating, then t on the last ``temporal_pairs``.

    ``r - temporal_pairs`` must be even (h and w get the same number of pairs). With the 1-D ladder decreasing in
    ``j``, t gets the lowest frequencies and every spatial axis gets high and mid frequencies.
    """
    spatial = rotary_pairs - temporal_pairs
    if temporal_pairs < 0 or spatial < 0 or spatial % 2:
        raise ValueError(
            f"VideoRoPE needs 0 <= temporal_pairs <= rotary_pairs with an even remainder for h/w, got "
            f"rotary_pairs={rotary_pairs}, temporal_pairs={temporal_pairs} (e.g. 64 and 16)"
        )
    return ernie_pair_axes((spatial // 2, spatial // 2, temporal_pairs))


def mrope_interleave_pair_axes(mrope_section: Sequence[int]) -> torch.Tensor:
    """MRoPE-I (Huang et al. 2025): pairs dealt round-robin t, h, w (Qwen3-VL's interleaved map), ``[r]``."""
    return mrope_pair_axes(mrope_section, layout="interleaved")


def layout_pair_axes(layout: str, mrope_section: Sequence[int]) -> torch.Tensor:
    """Pair -> axis map ``[r]`` of a named layout (see :data:`MULTIMODAL_LAYOUTS`; spelling as :func:`layout_name`).

    ``mrope_section`` is ``(t, h, w)`` pair counts for the Qwen layouts and MRoPE-I, ``(h, w, t)`` for ERNIE
    (transformers' own orders), ``(t, h, w)`` with ``h == w`` for VideoRoPE and HoPE (only the t count matters).
    """
    layout = layout_name(layout)
    sec = _sections(mrope_section, "mrope_section")
    if layout in ("qwen2_vl", "qwen2_5_omni"):
        return mrope_pair_axes(sec, layout="chunked")
    if layout in ("qwen3_vl", "qwen3_omni", "mrope_interleave"):
        return mrope_interleave_pair_axes(sec)
    if layout == "ernie4_5_vl":
        return ernie_pair_axes(sec)
    return videorope_pair_axes(sum(sec), sec[0])


def _check_ids(position_ids: torch.Tensor) -> None:
    if position_ids.dim() < 2 or position_ids.shape[0] != 3:
        raise ValueError(
            f"position_ids must be [3, ..., T] (t, h, w ids), got shape {tuple(position_ids.shape)}; "
            "for text only use position_ids.expand(3, ...) of the 1-D ids"
        )


def layout_cos_sin(
    inv_freq: torch.Tensor,
    position_ids: torch.Tensor,
    pair_axes: torch.Tensor,
    *,
    nope_pairs: torch.Tensor | None = None,
    attention_factor: float = 1.0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``cos, sin: [..., T, r]`` for ``position_ids: [3, ..., T]``, ``inv_freq: [r]`` and ``pair_axes: [r]``.

    ``nope_pairs: [r]`` bool marks pairs with frequency zero (HoPE). Integer or real ids; pair the table with
    :func:`ropekit.apply_rotary` as the layout says (``MULTIMODAL_LAYOUTS[name]`` is ``interleaved``).
    """
    _check_ids(position_ids)
    freqs = frequencies_from_pair_axes(inv_freq, pair_axes, 3)  # [3, r]
    if nope_pairs is not None:
        if nope_pairs.shape != pair_axes.shape or nope_pairs.dtype != torch.bool:
            raise ValueError(f"nope_pairs must be a bool [r] mask like pair_axes, got {nope_pairs.dtype} "
                             f"{tuple(nope_pairs.shape)}")
        freqs = freqs.masked_fill(nope_pairs, 0.0)
    cos, sin = nd_cos_sin(freqs, position_ids.movedim(0, -1))  # [..., T, r]
    if attention_factor != 1.0:
        cos, sin = cos * attention_factor, sin * attention_factor
    return cos, sin


def hope_frequencies(inv_freq: torch.Tensor, temporal_pairs: int) -> tuple[torch.Tensor, torch.Tensor]:
    """HoPE's ``(pair_axes [r], nope_pairs [r])``: VideoRoPE's allocation with the t pairs at frequency zero."""
    axes = videorope_pair_axes(inv_freq.numel(), temporal_pairs)
    return axes, axes == 0


def mhrope_head_axes(heads_per_axis: Sequence[int], num_heads: int | None = None) -> torch.Tensor:
    """MHRoPE head -> axis map ``[H]``: the first ``heads_per_axis[0]`` heads follow t, then h, then w.

    ``num_heads`` (default ``sum(heads_per_axis)``) pads the map with ``-1``: heads without rotation (NoPE), as
    the authors' code does for unused heads (JJJYmmm/Multimodal-RoPEs, ``freq_allocation/mhrope.py``; there the
    heads are the key/value heads, default ``(2, 3, 3)`` of 8). Under grouped-query attention expand the map to
    the query heads with ``head_axes.repeat_interleave(num_query_heads // num_kv_heads)``.
    """
    counts = _sections(heads_per_axis, "heads_per_axis (t, h, w)")
    total = sum(counts) if num_heads is None else int(num_heads)
    if total < sum(counts) or total == 0:
        raise ValueError(f"num_heads={num_heads} must be >= sum(heads_per_axis)={sum(counts)} and > 0")
    axes = torch.repeat_interleave(torch.arange(3), torch.tensor(counts))
    return torch.cat([axes, torch.full((total - sum(counts),), -1, dtype=torch.int64)])


def mhrope_cos_sin(
    inv_freq: torch.Tensor, position_ids: torch.Tensor, head_axes: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """MHRoPE ``cos, sin: [..., H, T, r]``: head ``h`` rotates every pair by its axis ``head_axes[h]`` id.

    ``position_ids: [3, ..., T]``; ``head_axes: [H]`` in {-1, 0, 1, 2} (-1: no rotation); apply with
    :func:`ropekit.apply_rotary` to ``q: [..., H, T, D]``.
    """
    _check_ids(position_ids)
    if head_axes.dim() != 1 or head_axes.numel() == 0:
        raise ValueError(f"head_axes must be a non-empty [H] map, got shape {tuple(head_axes.shape)}")
    r = inv_freq.numel()
    rows = []
    for a in head_axes.tolist():
        if a == -1:
            rows.append(torch.zeros(3, r, dtype=inv_freq.dtype))
        else:
            rows.append(frequencies_from_pair_axes(inv_freq, torch.full((r,), int(a)), 3))
    freqs = torch.stack(rows)  # [H, 3, r]
    positions = position_ids.movedim(0, -1).unsqueeze(-3)  # [..., 1, T, 3]
    return nd_cos_sin(freqs, positions)  # [..., H, T, r]


# ---- position-id builders --------------------------------------------------------------------------------------


def _check_types(token_types: torch.Tensor, allowed: tuple[int, ...]) -> list[tuple[int, int, int]]:
    if token_types.dim() != 1:
        raise ValueError(f"token_types must be [T] (one sequence), got shape {tuple(token_types.shape)}")
    runs = token_type_runs(token_types.tolist())
    for kind, start, _ in runs:
        if kind not in allowed:
            raise ValueError(f"token type {kind} at position {start}: expected one of {allowed} "
                             "(0 text, 1 image, 2 video, 3 audio)")
    return runs


def _next_grid(grids: Iterator[tuple[int, ...]], name: str, n: int, start: int) -> tuple[int, ...]:
    grid = next(grids, None)
    if grid is None:
        raise ValueError(f"run of {n} tokens at position {start} has no grid left in {name}")
    if len(grid) != 3 or min(grid) <= 0:
        raise ValueError(f"{name} entries must be positive (t, h, w) grids, got {list(grid)}")
    return grid


def _check_count(name: str, grid: Grid, made: int, n: int, start: int) -> None:
    if made != n:
        raise ValueError(
            f"{name} entry {list(grid)} makes {made} tokens after merging but the run at position {start} has {n}; "
            "check the merge sizes, and separate consecutive images/videos with text"
        )


def _block(t_ids: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """Row-major ``[3, len(t_ids) * h * w]`` ids ``(t_ids[i], j, k)`` (no offset)."""
    tt = t_ids.view(-1, 1, 1).expand(-1, h, w)
    hh = torch.arange(h).view(1, -1, 1).expand(t_ids.numel(), -1, w)
    ww = torch.arange(w).view(1, 1, -1).expand(t_ids.numel(), h, -1)
    return torch.stack([tt, hh, ww]).reshape(3, -1)


def _finish(pieces: list[torch.Tensor]) -> tuple[torch.Tensor, int]:
    ids = torch.cat(pieces, dim=1) if pieces else torch.zeros(3, 0, dtype=torch.int64)
    delta = (int(ids.max()) + 1 - ids.shape[1]) if ids.numel() else 0
    return ids, delta


def ernie_position_ids(
    token_types: torch.Tensor,
    image_grids: Sequence[Grid] = (),
    video_grids: Sequence[Grid] = (),
    *,
    spatial_merge_size: int = 2,
    temporal_merge_size: int = 2,
    time_interval: float = 1.0,
) -> tuple[torch.Tensor, int]:
    """ERNIE-4.5-VL ``(t, h, w)`` ids ``[3, T]`` int64 of one sequence, and its rope delta.

    ``image_grids``/``video_grids``: ``(t, h, w)`` patch grids before merging. h and w are divided by
    ``spatial_merge_size``; a video's t by ``temporal_merge_size`` (an image's is not); t ids are
    ``start + floor(i * time_interval)``; the next segment starts at ``start + max(h, w)``.
    """
    runs = _check_types(token_types, (0, 1, 2))
    grids = {1: iter([tuple(int(v) for v in g) for g in image_grids]),
             2: iter([tuple(int(v) for v in g) for g in video_grids])}
    pieces, current = [], 0
    for kind, start, end in runs:
        n = end - start
        if kind == 0:
            pieces.append(torch.arange(current, current + n).expand(3, n))
            current += n
            continue
        name = "image_grids" if kind == 1 else "video_grids"
        grid = _next_grid(grids[kind], name, n, start)
        t = grid[0] // (temporal_merge_size if kind == 2 else 1)
        h, w = grid[1] // spatial_merge_size, grid[2] // spatial_merge_size
        _check_count(name, grid, t * h * w, n, start)
        t_ids = (torch.arange(t) * time_interval).long()
        pieces.append(_block(t_ids, h, w) + current)
        current += max(h, w)
    return _finish(pieces)


def _merge_by_time(video: torch.Tensor, audio: torch.Tensor) -> torch.Tensor:
    """Interleave ``video: [3, Nv]`` and ``audio: [3, Na]`` ids by t id, video first on ties (both sorted by t)."""
    both = torch.cat([video, audio], dim=1)
    order = torch.sort(both[0], stable=True).indices  # stable: video (first) wins ties, each stream keeps its order
    return both[:, order]


def _time_chunks(t_ids: list[int], ids_per_chunk: int, origin: int) -> list[tuple[int, int]]:
    """``[start, end)`` index ranges of consecutive t ids, a new chunk each time ``t - origin`` reaches the next
    multiple of ``ids_per_chunk`` (at most one new chunk per token, as Qwen2.5-Omni's ``get_chunked_index``)."""
    bounds, begin, chunk = [], 0, 1
    for i, t in enumerate(t_ids):
        if t - origin >= chunk * ids_per_chunk:
            bounds.append((begin, i))
            begin, chunk = i, chunk + 1
    bounds.append((begin, len(t_ids)))
    return bounds


def _chunk_interleave(video: torch.Tensor, audio: torch.Tensor, ids_per_chunk: int, origin: int) -> tuple[
    torch.Tensor, int
]:
    """Qwen2.5-Omni audio in video: video chunk j then audio chunk j; returns ``[3, Nv + Na]`` and the next start."""
    if ids_per_chunk <= 0:
        raise ValueError(f"position_id_per_seconds * seconds_per_chunk must be >= 1 id, got {ids_per_chunk}")
    v_chunks = _time_chunks(video[0].tolist(), ids_per_chunk, origin)
    a_chunks = _time_chunks(audio[0].tolist(), ids_per_chunk, origin)
    parts: list[torch.Tensor] = []
    for j in range(max(len(v_chunks), len(a_chunks))):
        if j < len(v_chunks):
            parts.append(video[:, v_chunks[j][0]:v_chunks[j][1]])
        if j < len(a_chunks):
            parts.append(audio[:, a_chunks[j][0]:a_chunks[j][1]])
    return torch.cat(parts, dim=1), int(parts[-1].max()) + 1


def omni_position_ids(
    token_types: torch.Tensor,
    image_grids: Sequence[Grid] = (),
    video_grids: Sequence[Grid] = (),
    *,
    seconds_per_grid: Sequence[float] = (),
    position_id_per_seconds: float = 25.0,
    spatial_merge_size: int = 2,
    version: str = "qwen2_5",
    seconds_per_chunk: float = 2.0,
) -> tuple[torch.Tensor, float]:
    """Qwen-Omni time-aligned ``(t, h, w)`` ids ``[3, T]`` of one sequence, and the rope delta (``max id + 1 - T``).

    Token types 0 text, 1 image, 2 video, 3 audio, 4 a video with its audio track (``use_audio_in_video``). Each run
    starts at ``max(previous ids) + 1`` (the vision/audio start and end markers are text). An image
    or video with grid ``(t, h, w)`` gets t ids ``i * s * position_id_per_seconds`` with ``s = 1`` for images and
    ``seconds_per_grid[k]`` for the k-th video (temporal patch size / fps), h and w divided by ``spatial_merge_size``.
    Audio tokens count up like text (their number is the audio encoder's output length).

    ``version="qwen2_5"`` (Qwen2.5-Omni) floors the t ids to integers: int64 ids. ``version="qwen3"`` (Qwen3-Omni)
    keeps them real (float64 ids, t computed in float32 as transformers does) and supports type 4: a run of
    ``n = video tokens + audio tokens`` whose audio ids ``start + arange(n - video tokens)`` are merged with the video
    ids by t id (video first on ties), which is the order the run's tokens must have; when the audio outlasts the
    video the next run starts after the last audio id (as transformers does, even if a video h/w id is larger).

    Qwen2.5-Omni's type 4 instead cuts both streams into chunks of ``seconds_per_chunk`` seconds of t ids
    (``int(position_id_per_seconds * seconds_per_chunk)`` ids) and alternates video chunk ``j``, audio chunk ``j``;
    the two start markers before the run (``<vision_start><audio_start>``) share one id, so do the two end markers
    after it, and the next run starts after the last chunk's largest id (as transformers 5.24 does).
    """
    if version not in ("qwen2_5", "qwen3"):
        raise ValueError(f"version must be 'qwen2_5' (Qwen2.5-Omni) or 'qwen3' (Qwen3-Omni), got {version!r}")
    real = version == "qwen3"
    runs = _check_types(token_types, (0, 1, 2, 3, 4))
    kinds = [kind for kind, _, _ in runs]
    grids = {1: iter([tuple(int(v) for v in g) for g in image_grids]),
             2: iter([tuple(int(v) for v in g) for g in video_grids])}
    seconds = iter([float(s) for s in seconds_per_grid])
    dtype = torch.float64 if real else torch.int64
    pieces: list[torch.Tensor] = []
    st: float | int = 0  # where the next run starts
    for r, (kind, start, end) in enumerate(runs):
        n = end - start
        if kind == 0 and not real and 4 in kinds[max(r - 1, 0):r + 2]:
            head = 2 if r > 0 and kinds[r - 1] == 4 else 0  # the two end markers of the clip before
            tail = 2 if r + 1 < len(runs) and kinds[r + 1] == 4 else 0  # the two start markers of the clip after
            if n < head + tail:
                raise ValueError(f"text run at position {start} has {n} tokens; next to an audio-in-video run it needs "
                                 "the two start markers <vision_start><audio_start> before it and the two end markers "
                                 "after it")
            paired = [int(st)] * head + list(range(int(st) + (1 if head else 0), int(st) + (1 if head else 0)
                                                   + n - head - tail))
            tail_id = paired[-1] + 1 if paired else int(st)
            paired += [tail_id] * tail
            pieces.append(torch.tensor(paired, dtype=dtype).expand(3, n))
            st = pieces[-1].max().item() + 1
            continue
        if kind in (0, 3):
            pieces.append((torch.arange(n, dtype=dtype) + st).expand(3, n))
            st = pieces[-1].max().item() + 1 if n else st
            continue
        name = "image_grids" if kind == 1 else "video_grids"
        grid = _next_grid(grids[min(kind, 2)], name, n, start)
        h, w = grid[1] // spatial_merge_size, grid[2] // spatial_merge_size
        made = grid[0] * h * w
        if kind == 4 and made >= n:
            raise ValueError(f"audio-in-video run at position {start} has {n} tokens but its video alone makes {made}; "
                             "the run must hold the video tokens and the audio tokens")
        if kind != 4:
            _check_count(name, grid, made, n, start)
        if kind == 1:
            sec = 1.0
        else:
            got = next(seconds, None)
            if got is None:
                raise ValueError(f"video at position {start} has no entry left in seconds_per_grid "
                                 "(one per video: temporal_patch_size / fps, e.g. 2 / 2.0 = 1.0)")
            sec = got
        t_ids = torch.arange(grid[0]) * torch.tensor(sec, dtype=torch.float32) * position_id_per_seconds
        block = _block(t_ids.to(torch.float64) if real else t_ids.long(), h, w) + st
        nxt = block.max().item() + 1
        if kind == 4 and real:
            audio = (torch.arange(n - made, dtype=dtype) + st).expand(3, -1)
            if block[0, -1] <= audio[0, -1]:  # the audio outlasts the video: transformers restarts after the audio
                nxt = audio.max().item() + 1
            block = _merge_by_time(block, audio)
        elif kind == 4:
            audio = (torch.arange(n - made, dtype=dtype) + st).expand(3, -1)
            block, nxt = _chunk_interleave(block, audio, int(position_id_per_seconds * seconds_per_chunk), int(st))
        pieces.append(block)
        st = nxt
    ids = torch.cat(pieces, dim=1) if pieces else torch.zeros(3, 0, dtype=dtype)
    return ids, (float(ids.max()) + 1 - ids.shape[1]) if ids.numel() else 0.0


def videorope_position_ids(
    token_types: torch.Tensor,
    video_grids: Sequence[Grid] = (),
    *,
    delta: float = 2.0,
    spatial_merge_size: int = 1,
) -> tuple[torch.Tensor, float]:
    """VideoRoPE diagonal-layout ids ``[3, T]`` and the rope delta (float: ``max t id + 1 - T``).

    ids are int64 when ``delta`` is an integer, float64 otherwise. Token types 0 text, 1 image or 2 video (every
    non-text run takes the next grid of ``video_grids``; an image is a one-frame video). A visual run starting at
    ``s`` with merged grid ``(F, H, W)``: frame ``i``, row ``j``, column ``k`` gets ``t = s + delta * i``,
    ``h = t + j - (H - 1) // 2``, ``w = t + k - (W - 1) // 2`` (spatial ids centred on the frame's temporal id: the
    diagonal layout). The next text starts at ``max t id + 1 = s + delta * (F - 1) + 1``. Rule read from the
    authors' code (Wiselnn570/VideoRoPE, ``videorope-transformer/modeling_videorope.py``,
    ``get_t_scale_rope_index``, ``scale_factor`` = ``delta``; the paper writes the centring as ``-W/2``, ``-H/2``).
    """
    if not delta > 0:
        raise ValueError(f"delta (temporal spacing) must be > 0, got {delta} (VideoRoPE uses 2)")
    runs = _check_types(token_types, (0, 1, 2))
    grids = iter([tuple(int(v) for v in g) for g in video_grids])
    pieces: list[torch.Tensor] = []
    current = 0.0  # the id the next run starts at: max t id so far + 1
    for kind, start, end in runs:
        n = end - start
        if kind == 0:
            pieces.append((torch.arange(n, dtype=torch.float64) + current).expand(3, n))
            current += n
            continue
        grid = _next_grid(grids, "video_grids", n, start)
        f, h, w = grid[0], grid[1] // spatial_merge_size, grid[2] // spatial_merge_size
        _check_count("video_grids", grid, f * h * w, n, start)
        block = _block(torch.arange(f), h, w).double()  # [3, n] (i, j, k)
        t = current + delta * block[0]
        pieces.append(torch.stack([t, t + block[1] - (h - 1) // 2, t + block[2] - (w - 1) // 2]))
        current = current + delta * (f - 1) + 1
    ids = torch.cat(pieces, dim=1) if pieces else torch.zeros(3, 0, dtype=torch.float64)
    rope_delta = current - ids.shape[1]
    if float(delta).is_integer():
        return ids.round().long(), rope_delta
    return ids, rope_delta


def hope_position_ids(
    token_types: torch.Tensor,
    video_grids: Sequence[Grid] = (),
    *,
    gamma: float = 1.0,
    spatial_merge_size: int = 1,
) -> tuple[torch.Tensor, float]:
    """HoPE ids: VideoRoPE's diagonal layout with temporal stride ``gamma`` (dynamic temporal scaling).

    HoPE draws ``gamma`` per visual item during training from a set of factors (compressing, ``< 1``, and
    stretching, ``> 1``; JJJYmmm/Multimodal-RoPEs ``configs/hope.py`` uses ``0.5, 0.75, 1, 1.25, 1.5``) and fixes one
    at inference; pair the ids with :func:`hope_frequencies` (t pairs at frequency zero). That re-implementation
    zeroes the t ids instead of the t frequencies, which gives the same table.
    """
    if gamma <= 0:
        raise ValueError(f"gamma (temporal scaling) must be > 0, got {gamma}")
    return videorope_position_ids(token_types, video_grids, delta=gamma, spatial_merge_size=spatial_merge_size)


def mrope_interleave_position_ids(
    token_types: torch.Tensor,
    image_grids: Sequence[Grid] = (),
    video_grids: Sequence[Grid] = (),
    *,
    spatial_reset: bool = True,
    temporal_stride: int = 1,
    spatial_merge_size: int = 2,
) -> tuple[torch.Tensor, int]:
    """MRoPE-I position ids ``[3, T]`` int64 of one sequence and the rope delta (``max id + 1 - T``).

    Huang et al. 2025's position design, rule read from the authors' code (JJJYmmm/Multimodal-RoPEs,
    ``pos_design/mrope_i.py``). Token types 0 text, 1 image, 2 video; a visual run starting at ``s`` with merged
    grid ``(F, H, W)`` gets ``t = s + temporal_stride * i``. With ``spatial_reset`` its h, w ids restart at zero
    (``h = j``, ``w = k``: every image has the same spatial frame) and the next token (the vision-end marker)
    gets ``s + max(temporal_stride * (F - 1), H - 1, W - 1) + 1``; without it ``h = s + j``, ``w = s + k`` and the
    next run starts at ``max id + 1`` (Qwen2-VL's rule). As there, Qwen3-VL style inputs pass one ``(1, h, w)``
    grid per video frame (timestamps separate the frames).
    """
    if temporal_stride < 1:
        raise ValueError(f"temporal_stride must be a positive integer, got {temporal_stride}")
    runs = _check_types(token_types, (0, 1, 2))
    grids = {1: iter([tuple(int(v) for v in g) for g in image_grids]),
             2: iter([tuple(int(v) for v in g) for g in video_grids])}
    pieces: list[torch.Tensor] = []
    st = 0
    for kind, start, end in runs:
        n = end - start
        if kind == 0:
            pieces.append(torch.arange(st, st + n).expand(3, n))
            st += n
            continue
        name = "image_grids" if kind == 1 else "video_grids"
        grid = _next_grid(grids[kind], name, n, start)
        f, h, w = grid[0], grid[1] // spatial_merge_size, grid[2] // spatial_merge_size
        _check_count(name, grid, f * h * w, n, start)
        block = _block(torch.arange(f) * temporal_stride, h, w)  # [3, n] (stride * i, j, k)
        if spatial_reset:
            nxt = st + int(block.max()) + 1
            block[0] += st
        else:
            block = block + st
            nxt = int(block.max()) + 1
        pieces.append(block)
        st = nxt
    return _finish(pieces)
