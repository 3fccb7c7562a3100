"""The order-blind bag-of-tokens classifier used as the report's baseline."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ropekit.models import BagOfTokensClassifier
from ropekit.train import TrainConfig, run_steps


def _data(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, 2, (n,), generator=g)
    ids = torch.randint(0, 8, (n, 12), generator=g) + 8 * labels.unsqueeze(-1)  # class-specific ids
    lengths = torch.randint(4, 13, (n,), generator=g)
    ids[torch.arange(12) >= lengths.unsqueeze(-1)] = 16  # pad id
    return ids, lengths, labels


def test_order_blind_and_ignores_padding() -> None:
    ids, lengths, _ = _data(32, 0)
    model = BagOfTokensClassifier(17).fit_scaling(ids, lengths)
    torch.nn.init.normal_(model.linear.weight)
    perm = torch.stack([torch.cat((torch.randperm(int(n)), torch.arange(int(n), 12))) for n in lengths])  # [B, T]
    torch.testing.assert_close(model(ids.gather(1, perm), lengths), model(ids, lengths))
    padded = ids.clone()
    padded[torch.arange(12) >= lengths.unsqueeze(-1)] = 3  # other ids in the padding change nothing
    torch.testing.assert_close(model(padded, lengths), model(ids, lengths))


def test_learns_a_topic_split_through_the_step_loop() -> None:
    train, test = _data(128, 1), _data(64, 2)
    model = BagOfTokensClassifier(17).fit_scaling(train[0], train[1])
    cfg = TrainConfig(steps=50, batch_size=128, lr=0.05, warmup=5)
    run_steps(model, lambda m, b: F.cross_entropy(m(b[0], b[1]), b[2]), lambda step: train, cfg)
    with torch.no_grad():
        assert (model(test[0], test[1]).argmax(-1) == test[2]).float().mean() > 0.9
