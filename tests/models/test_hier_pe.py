"""pe="hierarchical": RoPE at one sentence, relativity per axis, packed positions through the models, bad input."""

from __future__ import annotations

import pytest
import torch

from ropekit.models import TASKS, ModelConfig, build_model, build_position_encoding
from ropekit.models.hier_pe import packed_sentence_positions
from ropekit.models.positions import Dims
from ropekit.nd.hierarchical import PACK_STRIDE, pack_hierarchical, unpack_hierarchical

V = 40
DOT = 7  # the id that ends a sentence in these tests
DIMS = Dims(d_model=32, n_heads=4, head_dim=8, max_len=32)


def _model(task: str, pe: dict, init_std: float = 0.02) -> torch.nn.Module:
    torch.manual_seed(0)  # the encodings compared here hold no parameters: same seed, same weights
    cfg = ModelConfig(
        task=task, vocab_size=V, d_model=32, n_heads=4, n_layers=2, max_len=32, pe=pe, init_std=init_std
    )
    return build_model(cfg).eval()


def _ids(seed: int, B: int = 2, T: int = 14) -> torch.Tensor:
    ids = torch.randint(8, V, (B, T), generator=torch.Generator().manual_seed(seed))
    ids[0, [3, 4, 9]] = DOT  # sentences of 4, 1, 5 and 4 tokens
    ids[1, [0, 12]] = DOT
    return ids


def _forward(model: torch.nn.Module, task: str, ids: torch.Tensor, positions: torch.Tensor | None) -> torch.Tensor:
    if task == "lm":
        return model(ids, positions)
    if task == "classify":
        return model(ids, torch.tensor([ids.shape[1], ids.shape[1] - 4]), positions)
    return model(ids, ids[:, :9], positions=positions)  # seq2seq: positions of the decoder


@pytest.mark.parametrize("task", TASKS)
def test_one_sentence_without_sentence_pairs_is_rope_bit_for_bit(task: str) -> None:
    ids = _ids(1)
    rope = _model(task, {"kind": "rope", "rope_parameters": {"rope_theta": 500.0}})
    hier = _model(task, {"kind": "hierarchical", "sentence_pairs": 0, "rope_theta": 500.0})
    assert torch.equal(_forward(hier, task, ids, None), _forward(rope, task, ids, None))
    T = 9 if task == "seq2seq" else ids.shape[1]
    one_sentence = pack_hierarchical(torch.stack((torch.zeros(T, dtype=torch.long), torch.arange(T)), -1))
    assert torch.equal(one_sentence, torch.arange(T))  # sentence 0 packs to the plain positions
    assert torch.equal(
        _forward(hier, task, ids, one_sentence.expand(2, T)), _forward(rope, task, ids, torch.arange(T).expand(2, T))
    )


def test_restarting_in_sentence_positions_are_rope_given_those_positions() -> None:
    ids = _ids(2)
    packed = packed_sentence_positions(ids, [DOT])
    within = unpack_hierarchical(packed)[..., 1]
    assert int(within.max()) < ids.shape[1] - 1  # the sentences restart
    rope = _model("classify", {"kind": "rope"})
    hier = _model("classify", {"kind": "hierarchical", "sentence_pairs": 0})
    lengths = torch.tensor([14, 10])
    assert torch.equal(hier(ids, lengths, packed), rope(ids, lengths, within))


def _logits(pe: torch.nn.Module, q: torch.Tensor, k: torch.Tensor, packed: torch.Tensor) -> torch.Tensor:
    qr, kr = pe.rotate(q, k, packed)
    return qr @ kr.transpose(-1, -2)  # [B, H, T, T]


def test_scores_are_relative_per_axis() -> None:
    pe = build_position_encoding({"kind": "hierarchical", "sentence_pairs": 2}, DIMS)
    g = torch.Generator().manual_seed(3)
    q, k = torch.randn(1, 2, 6, 8, generator=g), torch.randn(1, 2, 6, 8, generator=g)
    coords = torch.tensor([[[0, 0], [0, 1], [0, 2], [1, 0], [1, 1], [2, 0]]])  # [1, T, 2]
    base = _logits(pe, q, k, pack_hierarchical(coords))
    for shift in ([5, 0], [0, 11], [40, 300]):
        moved = _logits(pe, q, k, pack_hierarchical(coords + torch.tensor(shift)))
        torch.testing.assert_close(moved, base, atol=1e-4, rtol=1e-4)
    # each axis counts: moving one token to another sentence, or along its sentence, changes its scores
    for axis in (0, 1):
        other = coords.clone()
        other[0, 2, axis] += 1
        assert not torch.allclose(_logits(pe, q, k, pack_hierarchical(other))[..., 2, :], base[..., 2, :], atol=1e-3)


def test_packed_positions_reach_the_model() -> None:
    ids = _ids(4)
    packed = packed_sentence_positions(ids, [DOT])
    # the builder's coordinates, row 0: sentences end at the DOTs (a DOT belongs to the sentence it ends)
    assert unpack_hierarchical(packed)[0, :, 0].tolist() == [0, 0, 0, 0, 1, 2, 2, 2, 2, 2, 3, 3, 3, 3]
    model = _model("classify", {"kind": "hierarchical", "sentence_pairs": 2}, init_std=0.3)  # peaked attention
    lengths = torch.tensor([14, 11])
    out = model(ids, lengths, packed)
    # a bidirectional encoder sees relative positions only: moving every sentence (or every in-sentence index)
    # by the same amount leaves its output unchanged
    torch.testing.assert_close(model(ids, lengths, packed + 3 * PACK_STRIDE), out, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(model(ids, lengths, packed + 5), out, atol=1e-5, rtol=1e-5)
    # the sentence structure is used: the same tokens as one sentence give another output
    assert (model(ids, lengths) - out).abs().max() > 1e-2 * out.abs().max()
    # and the KV-cached decoder takes packed positions chunk by chunk like the full forward
    lm = _model("lm", {"kind": "hierarchical", "sentence_pairs": 2})
    full = lm(ids, packed)
    cache = lm.new_cache()
    parts = [lm(ids[:, :6], packed[:, :6], cache=cache), lm(ids[:, 6:], packed[:, 6:], cache=cache)]
    torch.testing.assert_close(torch.cat(parts, dim=1), full, atol=1e-5, rtol=1e-5)


def test_bad_positions_and_options_raise() -> None:
    pe = build_position_encoding({"kind": "hierarchical"}, DIMS)
    q = k = torch.randn(1, 2, 4, 8)
    with pytest.raises(ValueError, match="packed integers"):
        pe.rotate(q, k, torch.zeros(1, 4, 2, dtype=torch.long))  # unpacked coordinates
    with pytest.raises(ValueError, match="packed integers"):
        pe.rotate(q, k, torch.arange(4.0))
    with pytest.raises(ValueError, match="must be >= 0"):
        pe.rotate(q, k, torch.tensor([0, 1, -2, 3]))
    with pytest.raises(TypeError, match="int offset or packed"):
        pe.rotate(q, k, True)
    with pytest.raises(ValueError, match="tokens"):
        pe.rotate(q, k, torch.arange(5))
    with pytest.raises(ValueError, match="within-sentence index"):
        pack_hierarchical(torch.tensor([[0, PACK_STRIDE]]))
    with pytest.raises(ValueError, match="boundary_ids"):
        packed_sentence_positions(torch.zeros(2, 4, dtype=torch.long), [])
    with pytest.raises(ValueError, match="sentence_pairs"):
        build_position_encoding({"kind": "hierarchical", "sentence_pairs": 4}, DIMS)  # 4 pairs: token axis empty
    with pytest.raises(ValueError, match="sentence_base"):
        build_position_encoding({"kind": "hierarchical", "sentence_base": 0.0}, DIMS)
    with pytest.raises(ValueError, match="unknown option"):
        build_position_encoding({"kind": "hierarchical", "token_base": 100.0}, DIMS)


def test_the_order_task_passes_packed_sentence_positions() -> None:
    import torch.nn.functional as F

    from ropekit.data import ByteTokenizer
    from ropekit.experiments import order

    tok = ByteTokenizer()
    g = torch.Generator().manual_seed(5)
    stream = torch.randint(97, 123, (400,), generator=g)
    stream[torch.randint(0, 400, (60,), generator=g)] = ord(".")
    cfg = dict(order.PRESETS["tiny"])
    ends = tok.encode(order.SENTENCE_ENDS)
    assert ends == [ord("."), ord("!"), ord("?")]
    task = order.OrderTask(stream, stream, cfg, tok.vocab_size, tok.bos_id, tok.pad_id, boundary_ids=ends)
    ids, lengths, labels = task.batch(0, 8, 0)
    x = ids[:, : int(lengths.max())]
    packed = task.positions(x)
    assert packed is not None and int(unpack_hierarchical(packed)[..., 0].max()) > 0  # several sentences
    torch.manual_seed(0)
    model = build_model(
        ModelConfig(
            **task.model_overrides(), d_model=32, n_layers=1, max_len=cfg["max_len"] + 1, pe={"kind": "hierarchical"}
        )
    )
    loss, _ = task.loss(model, (ids, lengths, labels))
    assert torch.equal(loss, F.cross_entropy(model(x, lengths, packed_sentence_positions(x, ends)), labels))
    assert not torch.equal(loss, F.cross_entropy(model(x, lengths), labels))  # not the default positions
    plain = order.OrderTask(stream, stream, cfg, tok.vocab_size, tok.bos_id, tok.pad_id)
    assert plain.positions(x) is None and "sentence_end_ids" not in plain.spec()
