"""The step loop shared by ``train()``, the report's experiments and the vision check."""

from __future__ import annotations

import dataclasses

import torch
from _tiny import V, lm_task

from ropekit.models import ModelConfig, build_model
from ropekit.train import TrainConfig, run_steps, train


def _cfg() -> tuple[ModelConfig, TrainConfig]:
    model_cfg = ModelConfig(task="lm", vocab_size=V, d_model=16, n_heads=2, n_layers=1, max_len=16, pe={"kind": "rope"})
    return model_cfg, TrainConfig(steps=6, batch_size=4, lr=3e-3, warmup=2, eval_every=3, seed=3)


def test_run_steps_takes_the_same_steps_as_train() -> None:
    """train() and run_steps() share the step: same seed, task and config give the same loss at every step."""
    model_cfg, train_cfg = _cfg()
    task = lm_task()
    via_train = train(model_cfg, task, train_cfg, progress=False, log_evals=False)
    torch.manual_seed(train_cfg.seed)
    model = build_model(dataclasses.replace(model_cfg, **task.model_overrides()))
    history = run_steps(
        model,
        lambda m, b: task.loss(m, b)[0],
        lambda step: task.batch(step, train_cfg.batch_size, train_cfg.seed),
        train_cfg,
        eval_fn=lambda m: {k: s / n for k, (s, n) in task.evaluate(m, 0, 1).items()},
    )
    losses = [h["loss"] for h in history if "loss" in h]
    assert losses == [h["loss"] for h in via_train.history if "loss" in h]
    evals = [h for h in history if "eval" in h]
    assert [h["step"] for h in evals] == [3, 6]
    assert evals[-1]["eval"]["loss"] == via_train.final_eval["loss"]
    assert not model.training
    for a, b in zip(model.state_dict().values(), via_train.model.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_run_steps_with_the_same_batches_is_paired_and_repeatable() -> None:
    model_cfg, train_cfg = _cfg()
    task = lm_task()
    seen: list[list[torch.Tensor]] = [[], []]

    def run(i: int) -> list[float]:
        torch.manual_seed(0)
        model = build_model(dataclasses.replace(model_cfg, **task.model_overrides()))

        def batch_fn(step: int) -> tuple[torch.Tensor, ...]:
            b = task.batch(step, 4, 7)
            seen[i].append(b[0])
            return b

        return [h["loss"] for h in run_steps(model, lambda m, b: task.loss(m, b)[0], batch_fn, train_cfg)]

    assert run(0) == run(1)
    assert all(torch.equal(a, b) for a, b in zip(*seen, strict=True)) and len(seen[0]) == train_cfg.steps
