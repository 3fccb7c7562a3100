"""One training loop for all three models: AdamW, warm-up + cosine, clipping, periodic eval, checkpoints, DDP.

Usage::

    from ropekit.models import ModelConfig
    from ropekit.train import LMTask, TrainConfig, train
    task = LMTask.sotu(context_len=128)
    result = train(ModelConfig(d_model=64, n_layers=2, pe={"kind": "alibi"}), task,
                   TrainConfig(steps=300, batch_size=32), out_dir="runs/lm-alibi")
    result.model, result.history, result.final_eval

Determinism: batches are a pure function of ``(seed, step)`` (see :mod:`ropekit.train.tasks`) and
``torch.manual_seed`` is re-seeded from ``(seed, step, rank)`` before each step (dropout, random positions), so
``resume=True`` continues to the same losses as an uninterrupted run, bit for bit on the same machine and threads.

Distributed: under ``torchrun`` (``WORLD_SIZE > 1``) the loop joins a process group (gloo on CPU, nccl on GPU),
wraps the model in ``DistributedDataParallel`` and gives rank ``r`` rows ``r::world`` of every global batch: the
averaged gradient equals the single-process gradient of the same global batch. Rank 0 writes checkpoints.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ropekit.models.io import CheckpointError, atomic_save_tensors, atomic_write_bytes, load_state_checked
from ropekit.models.transformer import ModelConfig, build_model
from ropekit.train.checkpoint import (
    claim_run_folder,
    latest_checkpoint,
    load_checkpoint,
    optimizer_from_tensors,
    save_checkpoint,
)
from ropekit.train.device import model_device, resolve_device, to_device
from ropekit.train.tasks import Task, shard
from ropekit.train.tokenization import write_run_tokenizer

__all__ = ["TrainConfig", "TrainResult", "lr_at", "make_optimizer", "run_steps", "train", "train_step"]


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation settings (JSON-friendly). ``threads``: ``torch.set_num_threads`` (1 is the measured best for
    tiny models on this 2-core machine, see docs/training.md). ``ckpt_every``: 0 = at evaluations and the end."""

    steps: int = 300
    batch_size: int = 32
    lr: float = 3e-3
    weight_decay: float = 0.1
    warmup: int = 30
    min_lr_ratio: float = 0.1
    grad_clip: float = 1.0
    eval_every: int = 100
    ckpt_every: int = 0
    seed: int = 0
    threads: int = 1

    def __post_init__(self) -> None:
        for name, low in (("steps", 1), ("batch_size", 1), ("threads", 1), ("warmup", 0), ("eval_every", 0),
                          ("ckpt_every", 0), ("seed", 0)):  # fmt: skip
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ValueError(f"TrainConfig.{name} must be an integer >= {low}, got {value!r}")
        if self.warmup > self.steps:
            raise ValueError(f"warmup={self.warmup} must be between 0 and steps={self.steps}")
        for name, ok, want in (
            ("lr", lambda v: v > 0, "> 0"),
            ("weight_decay", lambda v: v >= 0, ">= 0"),
            ("min_lr_ratio", lambda v: 0 <= v <= 1, "in [0, 1]"),
            ("grad_clip", lambda v: v >= 0, ">= 0 (0 = no clipping)"),
        ):
            value = getattr(self, name)
            number = not isinstance(value, bool) and isinstance(value, (int, float)) and math.isfinite(value)
            if not number or not ok(value):
                raise ValueError(f"TrainConfig.{name} must be a finite number {want}, got {value!r}")

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        names = {f.name for f in dataclasses.fields(cls)}
        bad = sorted(set(data) - names)
        if bad:
            raise ValueError(f"unknown train config key(s) {bad}; valid keys: {sorted(names)}")
        return cls(**data)


@dataclass
class TrainResult:
    """What :func:`train` returns: the (unwrapped) model, per-step and eval history, the last evaluation."""

    model: nn.Module
    history: list[dict[str, Any]] = field(default_factory=list)
    final_eval: dict[str, float] = field(default_factory=dict)
    step: int = 0
    seconds: float = 0.0


def lr_at(step: int, cfg: TrainConfig) -> float:
    """Learning rate for optimizer step ``step`` (1-based): linear warm-up, then cosine to ``min_lr_ratio * lr``."""
    if cfg.warmup and step <= cfg.warmup:
        return cfg.lr * step / cfg.warmup
    progress = (step - cfg.warmup) / max(1, cfg.steps - cfg.warmup)
    return cfg.lr * (cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * min(1.0, progress))))


def _dist_info() -> tuple[int, int]:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    return (int(os.environ.get("RANK", "0")), world) if world > 1 else (0, 1)


def _init_distributed(world: int, device: torch.device) -> bool:
    """Join the torchrun process group once (NCCL for CUDA, gloo for the CPU); True when this call created it."""
    import torch.distributed as dist

    if world == 1 or dist.is_initialized():
        return False
    dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return True


def _all_reduce_sums(values: list[float], world: int, device: torch.device) -> list[float]:
    if world == 1:
        return values
    import torch.distributed as dist

    t = torch.tensor(values, dtype=torch.float64, device=device)  # NCCL reduces CUDA tensors only
    dist.all_reduce(t)
    return t.tolist()


def _evaluate(model: nn.Module, task: Task, rank: int, world: int) -> dict[str, float]:
    was = model.training
    model.eval()
    sums = task.evaluate(model, rank, world)
    model.train(was)
    names = sorted(sums)
    flat = _all_reduce_sums([v for n in names for v in sums[n]], world, model_device(model))
    return {n: flat[2 * i] / max(flat[2 * i + 1], 1e-12) for i, n in enumerate(names)}


def make_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.AdamW:
    """AdamW; no weight decay on norms, biases and position-encoding scalars (``p.dim() < 2``)."""
    decay = [p for p in model.parameters() if p.requires_grad and p.dim() >= 2]
    rest = [p for p in model.parameters() if p.requires_grad and p.dim() < 2]
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": rest, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=(0.9, 0.95))


def _check_resume(state: dict[str, Any], model_cfg: ModelConfig, cfg: TrainConfig, task: Task, where: Path) -> None:
    saved = {"model": state.get("model"), "train": state.get("train"), "task": state.get("task")}
    now = {"model": model_cfg.to_dict(), "train": dataclasses.asdict(cfg), "task": task.spec()}
    diffs = []
    for part in saved:
        a, b = saved[part] or {}, now[part]
        for k in sorted(set(a) | set(b)):
            if part == "train" and k in ("steps", "eval_every", "ckpt_every", "threads"):
                continue  # may change when resuming (e.g. train longer); threads do not change results
            if json.dumps(a.get(k), sort_keys=True) != json.dumps(b.get(k), sort_keys=True):
                diffs.append(f"{part}.{k}: checkpoint {a.get(k)!r} vs now {b.get(k)!r}")
    if diffs:
        raise CheckpointError(
            f"cannot resume from {where}: the run's settings differ: {'; '.join(diffs[:6])}; "
            f"resume with the original options or use a new --out directory"
        )


def _check_resume_tokenizer(state: dict[str, Any], record: dict[str, Any] | None, where: Path) -> None:
    """The task's tokenizer must be the one the run was trained with (same file hash), not merely the same spec."""
    saved = state.get("tokenizer")
    if record is None or saved is None or saved.get("sha256") == record.get("sha256"):
        return
    raise CheckpointError(
        f"cannot resume from {where}: the task's tokenizer (sha256 {str(record.get('sha256'))[:12]}...) is not the "
        f"run's tokenizer.json (sha256 {str(saved.get('sha256'))[:12]}...); build the task with the run's "
        f"tokenizer (load_run_tokenizer(out_dir); the CLI does this for --resume) or use a new out_dir"
    )


LossFn = Callable[[nn.Module, Any], torch.Tensor]


def step_seed(cfg: TrainConfig, step: int, rank: int = 0) -> int:
    """The ``torch.manual_seed`` of optimizer step ``step`` (dropout, random positions): a function of
    ``(seed, step, rank)`` only, so a resumed or repeated run draws the same."""
    return (cfg.seed * 1_000_003 + step) * 31 + rank


def train_step(
    model: nn.Module,
    opt: torch.optim.Optimizer,
    loss_fn: LossFn,
    batch: Any,
    step: int,
    cfg: TrainConfig,
    *,
    clip_params: nn.Module | None = None,
) -> tuple[torch.Tensor, float]:
    """One optimizer step ``step`` (1-based): set the learning rate (:func:`lr_at`), ``loss_fn(model, batch)``,
    backward, clip the gradient norm of ``clip_params`` (default ``model``) at ``cfg.grad_clip``, AdamW step.

    The batch is moved to the model's device first (:mod:`ropekit.train.device`: inputs follow the model).
    Returns ``(loss detached, lr)``. The one step of :func:`train`, :func:`run_steps` and the report."""
    lr = lr_at(step, cfg)
    for g in opt.param_groups:
        g["lr"] = lr
    loss = loss_fn(model, to_device(batch, model_device(model)))
    opt.zero_grad(set_to_none=True)
    loss.backward()
    if cfg.grad_clip > 0:
        nn.utils.clip_grad_norm_((clip_params or model).parameters(), cfg.grad_clip)
    opt.step()
    return loss.detach(), lr


def run_steps(
    model: nn.Module,
    loss_fn: LossFn,
    batch_fn: Callable[[int], Any],
    cfg: TrainConfig,
    *,
    eval_fn: Callable[[nn.Module], dict[str, float]] | None = None,
    progress: bool = False,
    desc: str | None = None,
) -> list[dict[str, Any]]:
    """Train ``model`` in this process for ``cfg.steps`` steps of :func:`train_step`, without checkpoints.

    ``batch_fn(step)`` gives the batch of step ``step`` (1-based; make it a pure function of the step, like
    :meth:`Task.batch`, and two models trained with the same ``batch_fn`` see the same batches). ``eval_fn(model)``
    runs (in eval mode, no grad) every ``cfg.eval_every`` steps and at the last step. The model is left in eval mode.
    It trains where ``model`` is (move it first, e.g. ``model.to("cuda")``); batches follow it.

    Returns the history in :func:`train`'s format: ``{"step", "loss", "lr"}`` and ``{"step", "eval": {...}}``.
    """
    opt = make_optimizer(model, cfg)
    history: list[dict[str, Any]] = []
    bar = _progress(range(1, cfg.steps + 1), 0, cfg.steps, enabled=progress, desc=desc)
    model.train()
    for step in bar:
        torch.manual_seed(step_seed(cfg, step))
        loss, lr = train_step(model, opt, loss_fn, batch_fn(step), step, cfg)
        history.append({"step": step, "loss": float(loss), "lr": lr})
        if eval_fn is not None and cfg.eval_every > 0 and (step % cfg.eval_every == 0 or step == cfg.steps):
            model.eval()
            with torch.no_grad():
                history.append({"step": step, "eval": dict(eval_fn(model))})
            model.train()
    model.eval()
    return history


def train(
    model_cfg: ModelConfig | dict[str, Any],
    task: Task,
    cfg: TrainConfig | None = None,
    *,
    out_dir: str | os.PathLike[str] | None = None,
    resume: bool = False,
    progress: bool = True,
    stop_after: int | None = None,
    log_evals: bool = True,
    overwrite: bool = False,
    device: str | torch.device | None = None,
) -> TrainResult:
    """Train a model built from ``model_cfg`` (task fields filled in from ``task.model_overrides()``).

    Args:
        out_dir: where checkpoints, ``config.json``, ``model.safetensors`` (final weights) and ``metrics.json`` go;
            ``None`` = keep nothing on disk (and no resume).
        resume: continue from ``out_dir``'s latest checkpoint (same settings required; ``steps`` may grow).
        stop_after: stop after this global step (the run can be resumed later), e.g. to split a job.
        log_evals: without a progress bar, print each evaluation to stderr (rank 0).
        overwrite: start afresh in an ``out_dir`` that already holds a run (otherwise that is an error).
        device: where the model trains (``"cpu"``, the default, or ``"cuda"``; under torchrun ``"cuda"`` means
            this process's ``cuda:LOCAL_RANK``). Batches follow the model; checkpoints are device-free.

    A task with a BPE tokenizer (``task.tokenizer``) gets it written to ``out_dir/tokenizer.json`` and recorded
    under ``"tokenizer"`` in ``config.json`` and the checkpoints (:mod:`ropekit.train.tokenization`).

    Returns:
        :class:`TrainResult`; ``history`` rows are ``{"step", "loss", "lr"}`` and ``{"step", "eval": {...}}``.
    """
    cfg = cfg or TrainConfig()
    if isinstance(model_cfg, dict):
        model_cfg = ModelConfig.from_dict(model_cfg)
    model_cfg = dataclasses.replace(model_cfg, **task.model_overrides())
    torch.set_num_threads(cfg.threads)
    rank, world = _dist_info()
    dev = resolve_device(device)
    if dev.type == "cuda" and dev.index is None:  # set_device needs an index (torch 2.11 refuses a bare "cuda")
        dev = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")) if world > 1 else torch.cuda.current_device())
    if dev.type == "cuda":
        torch.cuda.set_device(dev)  # NCCL and the CUDA caching allocator use the current device
    created_group = _init_distributed(world, dev)
    if cfg.batch_size % world:
        raise ValueError(f"batch_size={cfg.batch_size} must be divisible by the number of processes ({world})")
    torch.manual_seed(cfg.seed)
    model = build_model(model_cfg).to(dev)
    opt = make_optimizer(model, cfg)
    out = Path(out_dir) if out_dir is not None else None
    history: list[dict[str, Any]] = []
    start = 0
    task_tok = getattr(task, "tokenizer", None)  # a TaskTokenizer for the bundled-data tasks, else None
    tok_record = task_tok.record() if task_tok is not None else None
    if resume and out is None:
        raise ValueError("resume=True needs out_dir (the folder of the run to continue)")
    if out is not None and rank == 0:  # under torchrun, rank 0 owns the folder (it writes the checkpoints)
        if resume and not out.is_dir():
            raise CheckpointError(f"nothing to resume: {out} does not exist; run without resume first")
        claim_run_folder(out, resume=resume, overwrite=overwrite)  # new, empty or this run's own folder
    if resume:
        assert out is not None
        where = latest_checkpoint(out)
        if where is None:
            raise CheckpointError(f"nothing to resume in {out}: no latest.json; run without --resume first")
        state, weights, opt_tensors = load_checkpoint(where)
        _check_resume(state, model_cfg, cfg, task, where)
        _check_resume_tokenizer(state, tok_record, where)
        load_state_checked(model, weights, str(where))
        optimizer_from_tensors(opt, opt_tensors, state["optimizer_param_groups"])
        start, history = int(state["step"]), list(state.get("history", []))
    elif out is not None and not overwrite and latest_checkpoint(out) is not None:
        raise CheckpointError(
            f"{out} already holds a training run; pass resume=True (--resume) to continue it, "
            f"overwrite=True (--overwrite) to start afresh there, or choose another out_dir"
        )
    net: nn.Module = model
    if world > 1:
        net = nn.parallel.DistributedDataParallel(model, device_ids=[dev.index] if dev.type == "cuda" else None)
    meta = {"model": model_cfg.to_dict(), "train": dataclasses.asdict(cfg), "task": task.spec(), "world": world}
    if tok_record is not None:
        meta["tokenizer"] = tok_record
    if out is not None and rank == 0:
        out.mkdir(parents=True, exist_ok=True)
        if task_tok is not None:
            write_run_tokenizer(out, task_tok)  # before config.json names it
        atomic_write_bytes(out / "config.json", json.dumps(meta, indent=2).encode())

    def checkpoint(step: int) -> None:
        if out is not None and rank == 0:
            save_checkpoint(out, step, model, opt, {**meta, "history": history})
        if world > 1:
            torch.distributed.barrier()

    end = cfg.steps if stop_after is None else min(cfg.steps, stop_after)
    t0 = time.perf_counter()
    bar = _progress(range(start + 1, end + 1), start, cfg.steps, enabled=progress and rank == 0)
    model.train()
    final_eval: dict[str, float] = {}
    for step in bar:
        torch.manual_seed(step_seed(cfg, step, rank))  # dropout / random positions
        local = shard(task.batch(step, cfg.batch_size, cfg.seed), rank, world)
        loss, lr = train_step(net, opt, _task_loss(task), local, step, cfg, clip_params=model)
        loss_value = _all_reduce_sums([float(loss.detach())], world, dev)[0] / world
        history.append({"step": step, "loss": loss_value, "lr": lr})
        if hasattr(bar, "set_postfix"):
            bar.set_postfix(loss=f"{loss_value:.4f}", lr=f"{lr:.2e}")
        is_eval = cfg.eval_every > 0 and (step % cfg.eval_every == 0 or step == cfg.steps)
        if is_eval:
            final_eval = _evaluate(model, task, rank, world)
            history.append({"step": step, "eval": final_eval})
            line = f"step {step}: " + ", ".join(f"{k} {v:.4f}" for k, v in final_eval.items())
            if hasattr(bar, "write"):
                bar.write(line)
            elif rank == 0 and log_evals:
                print(line, file=sys.stderr, flush=True)
        if (cfg.ckpt_every and step % cfg.ckpt_every == 0) or (not cfg.ckpt_every and is_eval) or step == end:
            checkpoint(step)
    seconds = time.perf_counter() - t0
    if hasattr(bar, "close"):
        bar.close()
    if out is not None and rank == 0 and end == cfg.steps:
        atomic_save_tensors(model.state_dict(), out / "model.safetensors")
        atomic_write_bytes(
            out / "metrics.json",
            json.dumps({"final_eval": final_eval, "steps": end, "seconds": seconds}, indent=2).encode(),
        )
    if created_group:
        # Leave together: a rank that tears gloo down while its peer still writes the final files can abort
        # ("terminate called without an active exception").
        torch.distributed.barrier()
        torch.distributed.destroy_process_group()
    return TrainResult(model, history, final_eval, end, seconds)


def _task_loss(task: Task) -> LossFn:
    return lambda net, batch: task.loss(net, batch)[0]


def _progress(steps: range, start: int, total: int, *, enabled: bool, desc: str | None = None) -> Any:
    if not enabled:
        return steps
    from tqdm.auto import tqdm

    return tqdm(steps, initial=start, total=total, unit="step", dynamic_ncols=True, desc=desc, leave=desc is None)
