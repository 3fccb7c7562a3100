"""``ropekit convert-layout``: rewrite the q/k projection rows of a safetensors checkpoint to the other pairing.

A checkpoint trained with interleaved pairs (Meta's original Llama, GPT-J) runs in a half-pairing
implementation (Hugging Face Llama) only after the rows of ``W_q`` and ``W_k`` (and their biases) are permuted
within each head (:func:`ropekit.convert_qk_layout`); the reverse permutation undoes it. Weights are found by
name: ``*.q_proj.*`` / ``*.k_proj.*`` (Llama, Mistral, Qwen, Gemma), Phi-3's fused ``*.qkv_proj.*``
(``[q; k; v]`` rows) and GPT-NeoX's fused ``*.query_key_value.*`` (rows ``[H, 3, D]``: q, k, v per head).

Safety: files are read with ``safetensors`` (never unpickled) and written atomically: a temporary file in the
target directory, then ``os.replace``, so an interrupted run leaves the old file intact.

Legend: ``W: [rows, in]`` or bias ``[rows]``, ``H`` query heads, ``Hk`` key/value heads, ``D`` head_dim.
"""

from __future__ import annotations

import argparse
import os
import tempfile
from typing import Any

import torch

from ropekit.layout import convert_qk_layout

__all__ = ["convert_state_dict", "register", "run"]


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
    if not isinstance(heads, int):
        raise ValueError("config needs an integer 'num_attention_heads'")
    kv_heads = config.get("num_key_value_heads") or heads
    spec = parse_rope_parameters(info["rope_parameters"])
    return heads, kv_heads, info["head_dim"], rotary_dim_of(spec, info["head_dim"])


def convert_state_dict(
    tensors: dict[str, torch.Tensor], config: dict[str, Any], *, to: str
) -> tuple[dict[str, torch.Tensor], list[str]]:
    """Permute the q/k rows of ``tensors`` (a flat state dict) to pairing ``to``; returns ``(new, changed names)``.

    Raises ``ValueError`` if no q/k weight is recognised (so a wrong checkpoint is never silently copied).
    """
    heads, kv_heads, head_dim, rotary_dim = _geometry(config)

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


def _atomic_save(tensors: dict[str, torch.Tensor], path: str, metadata: dict[str, str] | None) -> None:
    from safetensors.torch import save_file

    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".ropekit-", suffix=".safetensors.tmp", dir=directory)
    os.close(fd)
    try:
        save_file({k: v.contiguous() for k, v in tensors.items()}, tmp, metadata=metadata)
        os.replace(tmp, path)  # atomic on POSIX within one filesystem
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def run(args: argparse.Namespace) -> int:
    from safetensors import safe_open

    from ropekit.hf.config import load_config_file

    config = load_config_file(args.config)
    if not str(args.checkpoint).endswith(".safetensors"):
        raise ValueError(f"checkpoint must be a .safetensors file (never a pickle), got {args.checkpoint!r}")
    try:
        with safe_open(args.checkpoint, framework="pt") as f:
            metadata = f.metadata()
            tensors = {name: f.get_tensor(name) for name in f.keys()}  # noqa: SIM118 (safe_open has no __iter__)
    except FileNotFoundError:
        raise ValueError(f"checkpoint {args.checkpoint!r} does not exist") from None
    new, changed = convert_state_dict(tensors, config, to=args.to)
    output = args.output or args.checkpoint
    _atomic_save(new, output, metadata)
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
    p.add_argument("--to", required=True, choices=("half", "interleaved"), help="target pairing")
    p.add_argument("-o", "--output", help="output file (default: rewrite the input in place, atomically)")
    p.set_defaults(func=run)
