"""The word-counting task of the CoPE experiment: text normalisation, word starts and the labels, checked against
answers recomputed from the text as a Python string."""

from __future__ import annotations

import pytest
import torch

from ropekit.experiments.cope import BOS, QUERY0, SPACE, WordCountTask, make_examples, word_starts, word_stream

TEXT = "We hold these truths, to be self-evident: that all men (1776) are created equal. The end"


def _decode(ids: torch.Tensor) -> str:
    return "".join(" " if t == SPACE else chr(ord("a") + int(t)) for t in ids)


def test_word_stream_is_lower_case_words_and_single_spaces() -> None:
    stream = word_stream([TEXT, "  Second   text!  "])
    assert _decode(stream) == (
        "we hold these truths to be self evident that all men are created equal the end second text"
    )
    starts = word_starts(stream)
    words = _decode(stream).split(" ")
    assert starts.numel() == len(words)
    assert [_decode(stream[int(s) : int(s) + 1]) for s in starts] == [w[0] for w in words]
    with pytest.raises(ValueError, match="at least one ASCII letter"):
        word_stream(["1776 -- !"])


def test_labels_are_the_first_letter_of_the_kth_word_back() -> None:
    stream = word_stream([TEXT] * 3)
    starts = word_starts(stream)
    ids, query_at, targets, n_words = make_examples(stream, starts, 64, 3, 6, 3, torch.Generator().manual_seed(0))
    assert ids.shape[0] == query_at.shape[0] == targets.shape[0] == 64 and query_at.shape[1] == 3
    for b in range(64):
        row = ids[b]
        assert int(row[0]) == BOS
        q0 = int(query_at[b, 0])
        words = _decode(row[1:q0]).split(" ")
        assert len(words) == int(n_words[b]) and all(words)
        ks = (row[query_at[b]] - QUERY0 + 1).tolist()
        assert sorted(ks) == [1, 2, 3]  # every k once, in a random order, right after the text
        assert query_at[b].tolist() == list(range(q0, q0 + 3))
        for m, k in enumerate(ks):
            assert chr(ord("a") + int(targets[b, m])) == words[-k][0]
        assert (row[q0 + 3 :] == BOS).all()  # padding after the last query


def test_queries_do_not_all_come_in_the_same_order_and_bad_sizes_raise() -> None:
    stream = word_stream([TEXT] * 3)
    starts = word_starts(stream)
    ids, query_at, _, _ = make_examples(stream, starts, 32, 3, 4, 3, torch.Generator().manual_seed(1))
    orders = {tuple(ids[b, query_at[b]].tolist()) for b in range(32)}
    assert len(orders) > 1
    with pytest.raises(ValueError, match="k_max <= min_words"):
        make_examples(stream, starts, 4, 2, 4, 3, torch.Generator())
    with pytest.raises(ValueError, match="need more"):
        make_examples(stream, starts[:5], 4, 3, 6, 3, torch.Generator())


def test_task_batches_are_a_function_of_seed_and_step_and_longer_tests_are_longer() -> None:
    stream = word_stream([TEXT] * 5)
    cfg = {"k_max": 2, "min_words": 2, "max_words": 4, "n_test": 16}
    task = WordCountTask(stream, stream, cfg)
    a, b = task.batch(3, 8, 0), task.batch(3, 8, 0)
    assert all(torch.equal(x, y) for x, y in zip(a, b, strict=True))
    assert not torch.equal(task.batch(4, 8, 0)[0][:, :5], a[0][:, :5])
    longer = task.examples("validation", 16, torch.Generator().manual_seed(2), longer=True)
    assert int(longer[3].min()) == 5 and int(longer[3].max()) <= 8
    assert task.model_overrides() == {"task": "lm", "vocab_size": QUERY0 + 2}


def test_gate_rows_measure_cope_gates_per_layer_and_head() -> None:
    from ropekit.experiments.cope import gate_rows
    from ropekit.models import ModelConfig, build_model

    stream = word_stream([TEXT] * 3)
    test = make_examples(stream, word_starts(stream), 8, 3, 5, 3, torch.Generator().manual_seed(3))
    torch.manual_seed(0)
    cfg = ModelConfig(task="lm", vocab_size=QUERY0 + 3, d_model=32, n_heads=2, n_layers=2, max_len=64, pe="cope")
    model = build_model(cfg).eval()
    rows = gate_rows(model, test)
    assert [(r["layer"], r["head"]) for r in rows] == [(0, 0), (0, 1), (1, 0), (1, 1)]
    # layer 0 by hand: its input is norm1(embeddings), gates sigmoid(q.k / sqrt(D)) from the first query
    block = model.decoder.blocks[0]
    ids, query_at = test[0], test[1]
    with torch.no_grad():
        gates = torch.sigmoid(block.attn.logits(block.norm1(model.embed(ids))))  # [B, H, T, T]
    spaces, counts = [], []
    for e in range(8):
        text = ids[e, : int(query_at[e, 0])] == SPACE  # [q0]: the spaces of BOS + text
        for j in range(3):
            spaces.append(float(gates[e, 0, int(query_at[e, j]), : text.numel()][text].mean()))
            counts.append(int(text.sum()))
    pooled = sum(s * c for s, c in zip(spaces, counts, strict=True)) / sum(counts)  # mean over all (query, space)
    assert abs(rows[0]["gate_on_spaces"] - pooled) < 1e-5
