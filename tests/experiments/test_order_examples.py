"""The order experiment builds every example set (training batches, validation, test, baselines) one way.

A regression test: the test set and the bag-of-tokens training set were once built with the default corruption
(swap the halves) while the models trained on reversed windows, so every encoder scored chance on the test set
while its validation accuracy was 0.85.
"""

from __future__ import annotations

import pytest
import torch

from ropekit.experiments import order


def _stream(n: int = 4096) -> torch.Tensor:
    return torch.randint(0, 200, (n,), generator=torch.Generator().manual_seed(0))


@pytest.mark.parametrize("corruption", ["reverse", "swap_halves"])
def test_examples_apply_the_configured_corruption(corruption):
    stream = _stream()
    cfg = {**order.PRESETS["tiny"], "corruption": corruption}
    task = order.OrderTask(stream, stream, cfg, 256, 254, 255)
    g = torch.Generator().manual_seed(3)
    ids, lengths, labels = task.examples(stream, 64, g)
    g = torch.Generator().manual_seed(3)
    lengths_ = torch.randint(cfg["min_len"], cfg["max_len"] + 1, (64,), generator=g)
    starts = torch.randint(0, stream.numel() - cfg["max_len"], (64,), generator=g)
    assert torch.equal(lengths - 1, lengths_)
    for i in range(64):
        L, s = int(lengths_[i]), int(starts[i])
        win, got = stream[s : s + L], ids[i, 1 : L + 1]
        if labels[i]:
            want = win.flip(0) if corruption == "reverse" else torch.cat((win[L // 2 :], win[: L // 2]))
        else:
            want = win
        assert torch.equal(got, want), (i, corruption)


def test_run_builds_every_set_with_the_task_recipe(tmp_path, monkeypatch):
    seen: list[str] = []
    real = order.make_examples

    def spy(*args, **kwargs):
        seen.append(args[7] if len(args) > 7 else kwargs.get("corruption", "swap_halves"))
        return real(*args, **kwargs)

    monkeypatch.setattr(order, "make_examples", spy)
    monkeypatch.setitem(order.PRESETS, "tiny", {**order.PRESETS["tiny"], "corruption": "reverse"})
    order.run("tiny", tmp_path / "out")
    assert len(seen) >= 4 and set(seen) == {"reverse"}, seen
