"""Model invariances for every position encoding: cached decoding, explicit positions, save/reload."""

from __future__ import annotations

import pytest
import torch

from ropekit.models import (
    POSITION_ENCODINGS,
    TASKS,
    CheckpointError,
    ModelConfig,
    alibi_slopes,
    build_model,
    build_position_encoding,
    load_model,
    random_positions,
    save_model,
)
from ropekit.models.positions import Dims

V = 40
SPECS = [
    *({"kind": k} for k in POSITION_ENCODINGS),
    {"kind": "yarn", "rope_parameters": {"factor": 2.0, "original_max_position_embeddings": 16}},
    {"kind": "rope", "rope_parameters": {"rope_type": "dynamic", "factor": 2.0}, "interleaved": True},
    {"kind": "rope", "rope_parameters": {"rope_type": "default", "rope_theta": 500000.0}},
    {"kind": "rope", "random_max": 64},
]
IDS = [s["kind"] + ("-" + str(i) if i >= len(POSITION_ENCODINGS) else "") for i, s in enumerate(SPECS)]


def tiny(task: str, pe: dict, **kw) -> torch.nn.Module:
    torch.manual_seed(0)
    cfg = ModelConfig(task=task, vocab_size=V, d_model=32, n_heads=4, n_layers=2, max_len=32, pe=pe, **kw)
    return build_model(cfg).eval()


def _perturb(model: torch.nn.Module) -> None:
    """Give learnable frequencies non-initial values so the tests see them."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith(("alpha_logit", "rho", "log_inv_freq")):
                p.add_(0.1)


@pytest.mark.parametrize("pe", SPECS, ids=IDS)
def test_cached_decoding_equals_full_forward(pe):
    model = tiny("lm", pe)
    _perturb(model)
    ids = torch.randint(0, V, (2, 12), generator=torch.Generator().manual_seed(1))
    full = model(ids)  # [B, T, V]
    cache = model.new_cache()
    parts = [model(ids[:, :5], cache=cache)] + [model(ids[:, t : t + 1], cache=cache) for t in range(5, 12)]
    torch.testing.assert_close(torch.cat(parts, dim=1), full, rtol=1e-4, atol=1e-5)
    assert cache.length == 12


@pytest.mark.parametrize("pe", SPECS[:9], ids=IDS[:9])
def test_seq2seq_cached_generation_equals_full_forward(pe):
    model = tiny("seq2seq", pe)
    src = torch.randint(3, V, (2, 9), generator=torch.Generator().manual_seed(2))
    lengths = torch.tensor([9, 5])
    out = model.generate(src, 6, bos_id=1, src_lengths=lengths)  # [B, 7]
    logits = model(src, out[:, :-1], lengths)  # teacher forcing on the generated tokens
    torch.testing.assert_close(logits.argmax(-1), out[:, 1:])


@pytest.mark.parametrize("task", TASKS)
@pytest.mark.parametrize("pe", SPECS[:9], ids=IDS[:9])
def test_explicit_positions_equal_default(task, pe):
    model = tiny(task, pe)
    ids = torch.randint(0, V, (2, 10), generator=torch.Generator().manual_seed(3))
    pos = torch.arange(10)
    if task == "lm":
        a, b, c = model(ids), model(ids, pos), model(ids, pos.expand(2, 10))
    elif task == "classify":
        lengths = torch.tensor([10, 6])
        a, b, c = model(ids, lengths), model(ids, lengths, pos), model(ids, lengths, pos.expand(2, 10))
    else:
        a, b, c = model(ids, ids[:, :4]), model(ids, ids[:, :4], positions=pos[:4]), None
    torch.testing.assert_close(b, a, rtol=1e-5, atol=1e-5)
    if c is not None:
        torch.testing.assert_close(c, a, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("pe", ["rope", "xpos", "alibi", "receptive", "learned_freq", "prope"])
def test_relative_kinds_are_shift_invariant_and_absolute_kinds_are_not(pe):
    model = tiny("lm", {"kind": pe})
    _perturb(model)
    ids = torch.randint(0, V, (1, 8), generator=torch.Generator().manual_seed(4))
    torch.testing.assert_close(model(ids, torch.arange(8) + 7), model(ids), rtol=1e-4, atol=1e-4)
    absolute = tiny("lm", {"kind": "sinusoidal"})
    assert not torch.allclose(absolute(ids, torch.arange(8) + 7), absolute(ids), atol=1e-4)


@pytest.mark.parametrize("task", TASKS)
@pytest.mark.parametrize("pe", ["rope", "learned", "receptive"])
def test_save_and_reload_gives_identical_outputs(tmp_path, task, pe):
    model = tiny(task, {"kind": pe})
    _perturb(model)
    ids = torch.randint(0, V, (2, 7), generator=torch.Generator().manual_seed(5))
    args = (ids,) if task == "lm" else (ids, torch.tensor([7, 3])) if task == "classify" else (ids, ids[:, :3])
    save_model(model, tmp_path / "m")
    again = load_model(tmp_path / "m")
    assert type(again) is type(model) and again.config == model.config
    assert torch.equal(again(*args), model(*args))


def test_corrupt_and_mismatched_checkpoints_give_clear_errors(tmp_path):
    model = tiny("lm", {"kind": "rope"})
    save_model(model, tmp_path / "m")
    blob = (tmp_path / "m" / "model.safetensors").read_bytes()
    (tmp_path / "m" / "model.safetensors").write_bytes(blob[: len(blob) // 2])
    with pytest.raises(CheckpointError, match="corrupt"):
        load_model(tmp_path / "m")
    save_model(tiny("lm", {"kind": "learned"}), tmp_path / "n")
    from ropekit.models.io import load_state_checked, read_tensors

    with pytest.raises(CheckpointError, match="unexpected"):
        load_state_checked(model, read_tensors(tmp_path / "n" / "model.safetensors"), "n")
    with pytest.raises(CheckpointError, match=r"missing is not a folder \(it does not exist\)"):
        load_model(tmp_path / "missing")


def test_generate_is_deterministic_and_greedy_matches_argmax():
    model = tiny("lm", {"kind": "rope"})
    ids = torch.randint(0, V, (2, 4), generator=torch.Generator().manual_seed(6))
    out = model.generate(ids, 5, top_k=1)
    assert out.shape == (2, 9) and torch.equal(out[:, :4], ids)
    assert torch.equal(model(out[:, :-1]).argmax(-1)[:, 3:], out[:, 4:])
    s1 = model.generate(ids, 5, generator=torch.Generator().manual_seed(7))
    s2 = model.generate(ids, 5, generator=torch.Generator().manual_seed(7))
    assert torch.equal(s1, s2)


def test_randomized_positions_only_while_training():
    model = tiny("lm", {"kind": "rope", "random_max": 64})
    ids = torch.randint(0, V, (2, 8), generator=torch.Generator().manual_seed(8))
    assert torch.equal(model(ids), model(ids, torch.arange(8)))  # eval: default positions
    model.train()
    torch.manual_seed(0)
    a = model(ids)
    torch.manual_seed(1)
    assert not torch.allclose(a, model(ids))
    pos = random_positions(3, 10, 20, torch.Generator().manual_seed(0))
    assert pos.shape == (3, 10) and bool((pos.diff(dim=-1) > 0).all()) and int(pos.max()) < 20
    with pytest.raises(ValueError, match="random_max"):
        random_positions(1, 30, 20)


def test_alibi_slopes_and_bias():
    torch.testing.assert_close(alibi_slopes(8), 2.0 ** (-torch.arange(1, 9, dtype=torch.float32)))
    assert alibi_slopes(6).shape == (6,)
    pe = build_position_encoding("alibi", Dims(32, 4, 8, 16))
    bias = pe.bias(torch.arange(3), torch.arange(5))  # [1, H, 3, 5]
    assert bias.shape == (1, 4, 3, 5) and float(bias[0, 0, 2, 0]) == -2 * float(alibi_slopes(4)[0])


def test_prope_keeps_the_highest_frequencies():
    pe = build_position_encoding({"kind": "prope", "p": 0.5}, Dims(32, 4, 16, 16))
    assert (pe.inv_freq[:4] > 0).all() and (pe.inv_freq[4:] == 0).all()


def test_learnable_frequencies_get_gradients():
    for kind, names in [("receptive", ("alpha_logit", "rho")), ("learned_freq", ("log_inv_freq",))]:
        model = tiny("lm", {"kind": kind}).train()
        model(torch.randint(0, V, (2, 6))).logsumexp(-1).sum().backward()
        grads = {n.rsplit(".", 1)[-1]: p.grad for n, p in model.named_parameters()}
        for n in names:
            assert grads[n] is not None and float(grads[n].abs().sum()) > 0, (kind, n)


@pytest.mark.parametrize(
    ("spec", "match"),
    [
        ({"kind": "ropee"}, "did you mean 'rope'"),
        ({"kind": "prope", "q": 1}, "valid options"),
        ({"kind": "yarn", "rope_parameters": {"factr": 2}}, "factr"),
        ({"kind": "prope", "p": 2.0}, "0 < p <= 1"),
        ({"kind": "prope", "p": 0.0}, "pe=.none."),
    ],
)
def test_bad_position_specs_raise_clear_errors(spec, match):
    with pytest.raises(ValueError, match=match):
        ModelConfig(pe=spec) and build_position_encoding(spec, Dims(32, 4, 8, 16))


def test_learned_positions_beyond_max_len_raise():
    model = tiny("lm", {"kind": "learned"})
    with pytest.raises(ValueError, match="max_len"):
        model(torch.zeros(1, 40, dtype=torch.int64))


def test_config_round_trip_and_unknown_keys():
    cfg = ModelConfig(task="seq2seq", pe="yarn")
    assert ModelConfig.from_dict(cfg.to_dict()) == cfg and cfg.pe["kind"] == "rope"
    with pytest.raises(ValueError, match="did you mean 'd_model'"):
        ModelConfig.from_dict({"d_modle": 3})


def test_a_new_kind_is_one_registered_class():
    from ropekit.models import POSITION_ENCODINGS, PositionEncoding, register_position_encoding

    @register_position_encoding("test_bias")
    class TestBias(PositionEncoding):
        def __init__(self, dims, scale: float = 0.1):
            super().__init__()
            self.scale = scale

        def bias(self, q_positions, k_positions):
            return -self.scale * (q_positions[..., :, None] - k_positions[..., None, :]).abs().float()[:, None]

    try:
        model = tiny("lm", {"kind": "test_bias", "scale": 0.5})
        ids = torch.randint(0, V, (2, 6))
        cache = model.new_cache()
        steps = [model(ids[:, :3], cache=cache), model(ids[:, 3:], cache=cache)]
        torch.testing.assert_close(torch.cat(steps, 1), model(ids), rtol=1e-4, atol=1e-5)
        with pytest.raises(ValueError, match="already registered"):
            register_position_encoding("test_bias")(TestBias)
    finally:
        POSITION_ENCODINGS.pop("test_bias", None)
