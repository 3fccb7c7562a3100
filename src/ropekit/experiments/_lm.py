"""Helpers the training experiments share: building and training ``ropekit.models`` models, RoPE scaling specs,
per-item evaluation. No model, encoding or loop lives here: models come from :mod:`ropekit.models`, training is
:func:`ropekit.train.run_steps`.

Legend: ``T`` training length, ``L`` evaluation length, ``stream: [N]`` int64 token ids, ``ids: [B, T]``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ropekit.experiments._common import inner_progress, run_device
from ropekit.models import ModelConfig, build_model, with_position_encoding
from ropekit.train import TrainConfig, run_steps
from ropekit.train.device import model_device, to_device

__all__ = ["SCALINGS", "scaled_pe", "swap_pe", "task_eval", "task_fns", "train_model", "window_losses", "zero_shot_pe"]

SCALINGS = ("none", "PI", "NTK", "dynamic NTK", "YaRN", "Llama 3")
_THETA = 10000.0


def scaled_pe(method: str, factor: float, train_len: int) -> dict[str, Any]:
    """The ``pe`` spec of RoPE scaled by ``method`` at ``factor`` for a model trained at ``train_len``.

    ``factor`` is the static scale ``s`` (PI, NTK, YaRN, Llama 3; ``s <= 1`` is plain RoPE). Dynamic NTK takes the
    factor the model was configured with (1 for a model trained without scaling): the base grows with the current
    length beyond ``train_len`` by itself, so passing ``L / T`` here as well would scale it twice.
    """
    base: dict[str, Any] = {"rope_theta": _THETA}
    pe: dict[str, Any] = {"kind": "rope", "max_position_embeddings": train_len}
    if method == "dynamic NTK":
        return {**pe, "rope_parameters": {**base, "rope_type": "dynamic", "factor": max(1.0, factor)}}
    if method == "none" or factor <= 1.0:
        return {**pe, "rope_parameters": {**base, "rope_type": "default"}}
    if method == "PI":
        return {**pe, "rope_parameters": {**base, "rope_type": "linear", "factor": factor}}
    if method == "NTK":
        return {**pe, "rope_parameters": {**base, "rope_type": "ntk", "factor": factor}}
    extended = round(train_len * factor)
    if method == "YaRN":
        params = {**base, "rope_type": "yarn", "factor": factor, "original_max_position_embeddings": train_len}
        return {**pe, "max_position_embeddings": extended, "rope_parameters": params}
    if method == "Llama 3":
        params = {
            **base,
            "rope_type": "llama3",
            "factor": factor,
            "low_freq_factor": 1.0,
            "high_freq_factor": 4.0,
            "original_max_position_embeddings": train_len,
        }
        return {**pe, "max_position_embeddings": extended, "rope_parameters": params}
    raise ValueError(f"unknown scaling method {method!r}; expected one of {SCALINGS}")


def zero_shot_pe(method: str, length: int, train_len: int) -> dict[str, Any]:
    """The spec to evaluate a model trained without scaling at ``length``: static methods take ``length / train_len``
    (at least 1); dynamic NTK keeps the model's configured factor, 1, and its base grows with the length alone."""
    factor = 1.0 if method == "dynamic NTK" else max(1.0, length / train_len)
    return scaled_pe(method, factor, train_len)


def swap_pe(model: nn.Module, pe: dict[str, Any]) -> nn.Module:
    """``model``'s weights under position encoding ``pe`` (public API: config replace + checked load), eval mode."""
    return with_position_encoding(model, pe, source="experiment model").eval()


def train_model(
    model_cfg: ModelConfig,
    loss_fn: Callable[[nn.Module, Any], torch.Tensor],
    batch_fn: Callable[[int], Any],
    train_cfg: TrainConfig,
    *,
    eval_fn: Callable[[nn.Module], dict[str, float]] | None = None,
    init: nn.Module | None = None,
    desc: str = "",
) -> tuple[nn.Module, list[dict[str, Any]]]:
    """Build ``model_cfg`` (seeded by ``train_cfg.seed``; or start from ``init``'s weights) and train it with
    :func:`ropekit.train.run_steps`. Returns ``(model in eval mode, history)``."""
    torch.manual_seed(train_cfg.seed)
    model = (build_model(model_cfg) if init is None else swap_pe(init, model_cfg.pe)).to(run_device())
    history = run_steps(model, loss_fn, batch_fn, train_cfg, eval_fn=eval_fn, progress=inner_progress(), desc=desc)
    return model, history


def task_fns(task: Any, batch_size: int, seed: int) -> tuple[Callable[..., torch.Tensor], Callable[[int], Any]]:
    """``(loss_fn, batch_fn)`` of a :class:`ropekit.train.Task` for :func:`ropekit.train.run_steps`; batches are a
    pure function of ``(seed, step)``, so every model trained with the same ``seed`` sees the same batches."""
    return (lambda model, b: task.loss(model, b)[0]), (lambda step: task.batch(step, batch_size, seed))


def task_eval(task: Any) -> Callable[[nn.Module], dict[str, float]]:
    """``model -> {metric: value}`` from :meth:`Task.evaluate` (sums over one process)."""

    def evaluate(model: nn.Module) -> dict[str, float]:
        return {k: s / max(n, 1e-12) for k, (s, n) in task.evaluate(model, 0, 1).items()}

    return evaluate


@torch.no_grad()
def window_losses(
    model: nn.Module, stream: torch.Tensor, length: int, n_tokens: int, *, chunk: int | None = None
) -> np.ndarray:
    """Mean nats/token of each of ``n_tokens // length`` non-overlapping windows from the start of ``stream``:
    ``[n]``. With ``chunk``, each window is cut into independent pieces of ``chunk`` tokens (the same tokens
    read with a shorter context: a paired baseline)."""
    model.eval()
    n = max(1, n_tokens // length)
    x = stream[: n * length].view(n, length)  # [n, L]
    y = stream[1 : n * length + 1].view(n, length)
    if chunk is not None:
        x, y = x.reshape(-1, chunk), y.reshape(-1, chunk)  # [n * L / chunk, chunk]
    out = []
    x, y = to_device((x, y), model_device(model))
    for i in range(0, x.shape[0], 8):
        logits = model(x[i : i + 8])  # [b, L, V]
        out.append(F.cross_entropy(logits.transpose(1, 2), y[i : i + 8], reduction="none").mean(-1))
    per = torch.cat(out).cpu()  # [n] or [n * L / chunk]
    return per.view(n, -1).mean(-1).numpy() if chunk is not None else per.numpy()
