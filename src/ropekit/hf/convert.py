"""``ropekit convert-layout``: rewrite the q/k projection rows of a safetensors checkpoint to the other pairing.

A checkpoint trained with interleaved pairs (Meta's original Llama, GPT-J) runs in a half-pairing
implementation (Hugging Face Llama) only after the rows of ``W_q`` and ``W_k`` (and their biases) are permuted
within each head (:func:`ropekit.convert_qk_layout`); the reverse permutation undoes it. Weights are found by
name: ``*.q_proj.*`` / ``*.k_proj.*`` (Llama, Mistral, Qwen, Gemma), Phi-3's fused ``*.qkv_proj.*``
(``[q; k; v]`` rows) and GPT-NeoX's fused ``*.query_key_value.*`` (rows ``[H, 3, D]``: q, k, v per head).

Safety: files are read with ``safetensors`` (never unpickled) and written with :func:`ropekit.fileio.atomic_write`
(temporary file in the target folder, fsync, rename; an in-place rewrite keeps the file's mode), so an interrupted
run leaves the old file intact. The output records its pairing under ``ropekit_qk_layout`` in the safetensors
metadata; a file already in the target pairing is refused, and a file that records none needs ``--from``.

Legend: ``W: [rows, in]`` or bias ``[rows]``, ``H`` query heads, ``Hk`` key/value heads, ``D`` head_dim.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import torch

from ropekit.layout import convert_qk_layout

__all__ = ["LAYOUTS", "LAYOUT_KEY", "convert_state_dict", "register", "run", "source_layout"]

LAYOUTS = ("half", "interleaved")


def _geometry(config: dict[str, Any]) -> tuple[int, int, int, int]:
    """``(H, Hk, D, rotary_dim)`` from a config dict (same reading as :func:`ropekit.from_hf_config`)."""
    from ropekit.hf.config import from_hf_config
    from ropekit.scaling import parse_rope_parameters, rotary_dim_of

    if "qk_rope_head_dim" in config:
        raise ValueError(
            "config uses multi-head latent attention (qk_rope_head_dim): its rotary rows live in q_b_proj / "
            "kv_a_proj_with_mqa next to non-rotary ones; convert-layout does not handle MLA checkpoints"
        )
    layer_type = None
    params = config.get("rope_parameters") or {}
    if any(isinstance(v, dict) for v in params.values()):
        layer_type = next(k for k, v in params.items() if isinstance(v, dict))
    info = from_hf_config(config, layer_type=layer_type)
    heads = config.get("num_attention_heads")
    if not isinstance(heads, int) or isinstance(heads, bool) or heads < 1:
        raise ValueError(f"config needs a positive integer 'num_attention_heads', got {heads!r}")
    kv_heads = config.get("num_key_value_heads") or heads
    if not isinstance(kv_heads, int) or isinstance(kv_heads, bool) or kv_heads < 1 or heads % kv_heads:
        raise ValueError(
            f"config 'num_key_value_heads' must be a positive integer dividing num_attention_heads={heads}, "
            f"got {kv_heads!r}"
        )
    spec = parse_rope_parameters(info["rope_parameters"])
    return heads, kv_heads, info["head_dim"], rotary_dim_of(spec, info["head_dim"])


def convert_state_dict(
    tensors: dict[str, torch.Tensor], config: dict[str, Any], *, to: str
) -> tuple[dict[str, torch.Tensor], list[str]]:
    """Permute the q/k rows of ``tensors`` (a flat state dict) to pairing ``to``; returns ``(new, changed names)``.

    Raises ``ValueError`` if no q/k weight is recognised (so a wrong checkpoint is never silently copied).
    """
    if to not in LAYOUTS:
        raise ValueError(f"to must be one of {LAYOUTS}, got {to!r}")
    heads, kv_heads, head_dim, rotary_dim = _geometry(config)
    rows = {
        ".q_proj.": heads * head_dim,
        ".k_proj.": kv_heads * head_dim,
        ".qkv_proj.": (heads + 2 * kv_heads) * head_dim,
        ".query_key_value.": 3 * heads * head_dim,
    }
    for name, t in tensors.items():
        for part, n in rows.items():
            if part in name and (t.dim() not in (1, 2) or t.shape[0] != n):
                raise ValueError(
                    f"tensor {name!r} has shape {tuple(t.shape)} but the config (num_attention_heads={heads}, "
                    f"num_key_value_heads={kv_heads}, head_dim={head_dim}) needs {n} rows; is --config this "
                    f"checkpoint's config?"
                )

    def conv(t: torch.Tensor, n: int) -> torch.Tensor:
        return convert_qk_layout(t, n, head_dim, to=to, rotary_dim=rotary_dim)  # type: ignore[arg-type]

    out, changed = dict(tensors), []
    for name, t in tensors.items():
        if ".q_proj." in name:
            out[name] = conv(t, heads)
        elif ".k_proj." in name:
            out[name] = conv(t, kv_heads)
        elif ".qkv_proj." in name:  # Phi-3: rows [q (H*D); k (Hk*D); v (Hk*D)]
            q, k, v = t.split([heads * head_dim, kv_heads * head_dim, kv_heads * head_dim], dim=0)
            out[name] = torch.cat((conv(q, heads), conv(k, kv_heads), v), dim=0)
        elif ".query_key_value." in name:  # GPT-NeoX: rows [H, 3, D]
            per_head = t.reshape(heads, 3, head_dim, *t.shape[1:])  # [H, 3, D, ...]
            q = conv(per_head[:, 0].reshape(heads * head_dim, *t.shape[1:]), heads)
            k = conv(per_head[:, 1].reshape(heads * head_dim, *t.shape[1:]), heads)
            qkv = torch.stack((q.reshape(heads, head_dim, *t.shape[1:]), k.reshape(heads, head_dim, *t.shape[1:])), 1)
            out[name] = torch.cat((qkv, per_head[:, 2:]), dim=1).reshape(t.shape)  # [H * 3 * D, ...]
        else:
            continue
        changed.append(name)
    if not changed:
        raise ValueError(
            "no q/k projection found (looked for '.q_proj.', '.k_proj.', '.qkv_proj.', '.query_key_value.' in "
            "tensor names); is this a decoder checkpoint?"
        )
    return out, changed


LAYOUT_KEY = "ropekit_qk_layout"
"""Safetensors metadata key recording the q/k pairing the file's rows are in (written by ``convert-layout``)."""


def _read_checkpoint(path: Path) -> tuple[dict[str, str], dict[str, torch.Tensor]]:
    from safetensors import SafetensorError, safe_open

    if not path.name.endswith(".safetensors"):
        raise ValueError(f"checkpoint must be a .safetensors file (never a pickle), got {str(path)!r}")
    if not path.is_file():
        what = "is a folder" if path.is_dir() else "does not exist"
        raise ValueError(f"checkpoint {str(path)!r} {what}; give a .safetensors file")
    try:
        with safe_open(str(path), framework="pt") as f:
            metadata = dict(f.metadata() or {})
            tensors = {name: f.get_tensor(name) for name in f.keys()}  # noqa: SIM118 (safe_open has no __iter__)
    except (SafetensorError, OSError, RuntimeError, ValueError) as e:
        raise ValueError(
            f"checkpoint {str(path)!r} is not a readable safetensors file ({e}); it may be truncated, or a pickle "
            f"(.bin/.pt) renamed: convert it to safetensors with the tool that wrote it"
        ) from None
    return metadata, tensors


def source_layout(metadata: dict[str, str], stated: str | None, path: str, to: str) -> str:
    """The pairing the file is in: the recorded one, or the one stated with ``--from`` (they must agree)."""
    recorded = metadata.get(LAYOUT_KEY)
    if recorded is not None and recorded not in LAYOUTS:
        raise ValueError(f"{path} records an unknown q/k layout {recorded!r} in its metadata; expected {LAYOUTS}")
    if recorded is not None and stated is not None and recorded != stated:
        raise ValueError(
            f"--from {stated} contradicts {path}, whose metadata records that its rows are in the {recorded} layout"
        )
    source = stated or recorded
    if source is None:
        raise ValueError(
            f"{path} does not record its q/k layout; say which it is in with --from half (Hugging Face Llama, "
            f"GPT-NeoX files) or --from interleaved (Meta's original Llama, GPT-J)"
        )
    if source == to:
        how = "its metadata records it" if recorded else "--from says so"
        raise ValueError(
            f"{path} is already in the {to} layout ({how}); converting it again would permute the rows twice"
        )
    return source


def run(args: argparse.Namespace) -> int:
    from safetensors.torch import save_file

    from ropekit.fileio import atomic_write
    from ropekit.hf.config import load_config_file

    config = load_config_file(args.config)
    path = Path(args.checkpoint)
    output = Path(args.output) if args.output else path
    if output.is_dir():
        raise ValueError(f"-o/--output {str(output)!r} is a folder; give the output .safetensors file path")
    if not output.parent.is_dir():
        raise ValueError(f"-o/--output {str(output)!r}: folder {str(output.parent)!r} does not exist")
    metadata, tensors = _read_checkpoint(path)
    source_layout(metadata, args.from_layout, str(path), args.to)
    new, changed = convert_state_dict(tensors, config, to=args.to)
    flat = {k: v.contiguous() for k, v in new.items()}
    atomic_write(output, lambda tmp: save_file(flat, tmp, metadata={**metadata, LAYOUT_KEY: args.to}))
    print(f"converted {len(changed)} q/k tensors to the {args.to} pairing -> {output}")
    if args.to == "half" and config.get("rope_interleave"):
        print("note: the config says rope_interleave=true; set it to false for the converted weights")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "convert-layout",
        help="rewrite q/k weights of a safetensors checkpoint to the half or interleaved rotary pairing",
        description="Permute the q/k projection rows of a safetensors checkpoint, head by head, to the half "
        "(Hugging Face Llama, GPT-NeoX) or interleaved (Meta Llama, GPT-J) rotary pairing. Reads safetensors only; "
        "writes atomically (temporary file + rename).",
    )
    p.add_argument("checkpoint", help="input .safetensors file")
    p.add_argument("--config", required=True, help="the model's config.json (head counts, head_dim, rotary dim)")
    p.add_argument("--to", required=True, choices=LAYOUTS, help="target pairing")
    p.add_argument(
        "--from",
        dest="from_layout",
        choices=LAYOUTS,
        default=None,
        help="the pairing the file is in (needed when its metadata does not record it: files not written by "
        "convert-layout); a file already in the --to layout is refused",
    )
    p.add_argument("-o", "--output", help="output file (default: rewrite the input in place, atomically)")
    p.set_defaults(func=run)
